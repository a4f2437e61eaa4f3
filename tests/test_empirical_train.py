"""Tests of empirical/train.py and empirical/checkpoint.py on tiny CPU runs.

Determinism: every run seeds its own generators (network init, batch order, per-step
augmentation), so two runs of one config in one process give identical numbers; the
tests also switch on torch's deterministic algorithms while they run.
"""

import math

import numpy as np
import pytest
import torch

from empirical import checkpoint as ckpt
from empirical import data, train
from simulate import metrics
from theory import simplex, ssem

TIMING_KEYS = {"images_per_s", "train_seconds"}



@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar_fixture")
    data.write_cifar_fixture(root, n_train_per_class=4, n_test_per_class=2, seed=0)
    return root


@pytest.fixture
def deterministic():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


def tiny_config(root, **changes):
    # 5 x 4 + 5 x 2 = 30 training images, batch 8: 3 steps per epoch.
    settings = dict(dataset="fixture", data_dir=str(root), imbalance=2, model="small_cnn", width=4, dim=12,
                    epochs=2, batch_size=8, lr=0.05, warmup_epochs=1, n_proto=10)
    return train.TrainConfig(**{**settings, **changes})


def without_timing(log):
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in log]


# --- configuration and schedule ------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [("imbalance", 0.5), ("tau", 0.0), ("alpha", 1.5), ("n_proto", -1), ("epochs", 0), ("batch_size", 1),
     ("loss", "ce"), ("geometry", "cube"), ("device", "tpu"), ("momentum", 1.0), ("spread", 2.0)],
)
def test_bad_config_values_are_rejected_by_name(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        train.TrainConfig(**{field: value})


def test_learning_rate_warms_up_linearly_then_follows_a_cosine():
    config = train.TrainConfig(lr=0.4, epochs=10, warmup_epochs=2)
    steps = 5
    assert train.learning_rate(config, 0, steps) == pytest.approx(0.4 / 10)
    assert train.learning_rate(config, 9, steps) == pytest.approx(0.4)
    for step in (10, 25, 49):
        expected = 0.2 * (1 + math.cos(math.pi * (step - 10) / 40))
        assert train.learning_rate(config, step, steps) == pytest.approx(expected)
    no_warmup = train.TrainConfig(lr=0.4, epochs=10, warmup_epochs=0)
    assert train.learning_rate(no_warmup, 0, steps) == pytest.approx(0.4)


def test_global_batch_fits_the_data_and_the_processes():
    assert train.global_batch_size(512, 10_000, 4) == 512
    assert train.global_batch_size(512, 55, 1) == 55
    assert train.global_batch_size(512, 55, 2) == 54
    assert train.global_batch_size(7, 100, 2) == 6


def test_prototype_geometries_have_the_theory_grams():
    for geometry, gram in [("etf", simplex.etf_gram(10)), ("orthogonal", np.eye(10)),
                           ("minority_spread", simplex.minority_spread_gram(10, 0.3))]:
        protos = train.prototypes(train.TrainConfig(geometry=geometry, spread=0.3, dim=16), 10)
        assert protos.shape == (10, 16)
        np.testing.assert_allclose(protos @ protos.T, gram, atol=1e-10)


# --- metrics wiring -------------------------------------------------------------------


def test_geometry_metrics_on_an_ssem_construction_are_exact():
    m, n, p, beta = 4, 3, 2, 0.6
    z = torch.as_tensor(ssem.embeddings(m, n, p, dim=16, beta=beta, seed=1).reshape(m * n * p, 16))
    labels = torch.arange(m).repeat_interleave(n * p)
    target = torch.as_tensor(simplex.etf_gram(m))
    record, gram = train.geometry_metrics(z.float(), labels, z.float(), labels, target, m, minority=[2, 3])
    # SSEM(beta): T = 1, B = beta, W = 1 - beta; class means sqrt(beta) c_i, so G = beta G_etf.
    assert record["total_var"] == pytest.approx(1, abs=1e-6)
    assert record["between_var"] == pytest.approx(beta, abs=1e-6)
    assert record["within_var"] == pytest.approx(1 - beta, abs=1e-6)
    assert record["delta_g"] == pytest.approx(0, abs=1e-6)
    np.testing.assert_allclose(gram.numpy(), beta * simplex.etf_gram(m), atol=1e-6)
    assert record["train_acc_overall"] == record["test_acc_minority"] == 1.0


# --- training runs ---------------------------------------------------------------------


def test_one_epoch_logs_every_metric(fixture_root, deterministic):
    result = train.run(tiny_config(fixture_root, epochs=1))
    assert result["status"] == "finished" and len(result["log"]) == 1
    record = result["log"][0]
    expected = {"epoch", "loss", "lr", "images_per_s", "train_seconds", "delta_g", "total_var", "within_var",
                "between_var", "nc1"} | {f"{s}_acc_{g}" for s in ("train", "test") for g in ("overall", "majority", "minority")}
    assert set(record) == expected
    assert all(math.isfinite(record[k]) for k in expected)
    assert record["total_var"] == pytest.approx(record["within_var"] + record["between_var"])
    assert result["class_sizes"] == [4] * 5 + [2] * 5 and result["test_class_sizes"] == [2] * 10
    assert (result["batch_size"], result["steps_per_epoch"]) == (8, 3)
    # The final Gram is the class-mean Gram of the trained network's train embeddings.
    assert np.asarray(result["gram"]).shape == (10, 10)
    G = torch.as_tensor(result["gram"])
    assert record["delta_g"] == pytest.approx(float(metrics.delta_g(G, torch.as_tensor(result["target_gram"]))))


def test_training_lowers_the_loss(fixture_root, deterministic):
    result = train.run(tiny_config(fixture_root, epochs=4, warmup_epochs=0, lr=0.1, loss="combined", alpha=0.5))
    losses = [record["loss"] for record in result["log"]]
    assert losses[-1] < losses[0]


def test_same_config_gives_identical_runs(fixture_root, deterministic):
    config = tiny_config(fixture_root, epochs=1)
    a, b = train.run(config), train.run(config)
    assert without_timing(a["log"]) == without_timing(b["log"])
    c = train.run(config.replace(seed=1))
    assert without_timing(c["log"]) != without_timing(a["log"])


def test_interrupt_and_resume_matches_an_uninterrupted_run(fixture_root, tmp_path, deterministic):
    config = tiny_config(fixture_root)
    reference = train.run(config)
    # Stop before the 5th step: epoch 1 (0-based) at step 1, mid-epoch.
    calls = iter(range(100))
    path = tmp_path / "run.pt"
    stopped = train.run(config, checkpoint=path, should_stop=lambda: next(calls) == 4)
    assert (stopped["status"], stopped["epoch"], stopped["step"]) == ("interrupted", 1, 1)
    assert len(stopped["log"]) == 1
    saved = ckpt.load_checkpoint(path)
    assert (saved["epoch"], saved["step"]) == (1, 1)
    resumed = train.run(config, checkpoint=path, resume=True)
    assert resumed["status"] == "finished"
    assert without_timing(resumed["log"]) == without_timing(reference["log"])
    assert resumed["final"]["delta_g"] == reference["final"]["delta_g"]
    np.testing.assert_array_equal(resumed["gram"], reference["gram"])


def test_resume_refuses_a_checkpoint_of_another_run(fixture_root, tmp_path):
    path = tmp_path / "run.pt"
    config = tiny_config(fixture_root, epochs=1)
    train.run(config, checkpoint=path)
    with pytest.raises(ckpt.CheckpointError, match="n_proto"):
        train.run(config.replace(n_proto=5), checkpoint=path, resume=True)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign"])
def test_corrupt_checkpoint_gives_a_clear_error(fixture_root, tmp_path, damage):
    path = tmp_path / "run.pt"
    if damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)
    else:
        ckpt.save_checkpoint(path, {"config": {}, "epoch": 0, "step": 0, "model": {"w": torch.zeros(1000)},
                                    "optimizer": {}, "log": []})
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"not a checkpoint" * 10)
    with pytest.raises(ckpt.CheckpointError, match=str(path)) as caught:
        train.run(tiny_config(fixture_root), checkpoint=path, resume=True)
    assert "\n" not in str(caught.value)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    state = {"config": {}, "epoch": 1, "step": 0, "model": {}, "optimizer": {}, "log": []}
    ckpt.save_checkpoint(path, state)
    before = path.read_bytes()

    def failing_save(obj, stream):
        stream.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(path, {**state, "epoch": 2})
    assert path.read_bytes() == before  # the old checkpoint survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporary file left behind
