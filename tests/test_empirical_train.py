"""Tests of empirical/train.py and empirical/checkpoint.py on tiny CPU runs.

Determinism: every run seeds its own generators (network init, batch order, per-step
augmentation), so two runs of one config in one process give identical numbers; the
tests also switch on torch's deterministic algorithms while they run.
"""

import math
from collections import Counter

import numpy as np
import pytest
import torch

from empirical import checkpoint as ckpt
from empirical import data, evaluation, train
from empirical.host_sync import count_host_syncs
from simulate import losses, metrics
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
    settings = dict(
        dataset="fixture",
        data_dir=str(root),
        imbalance=2,
        model="small_cnn",
        width=4,
        dim=12,
        epochs=2,
        batch_size=8,
        lr=0.05,
        warmup_epochs=1,
        n_proto=10,
    )
    return train.TrainConfig(**{**settings, **changes})


def without_timing(log):
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in log]


# --- configuration and schedule ------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("imbalance", 0.5),
        ("tau", 0.0),
        ("alpha", 1.5),
        ("n_proto", -1),
        ("epochs", 0),
        ("batch_size", 1),
        ("loss", "ce"),
        ("geometry", "cube"),
        ("device", "tpu"),
        ("momentum", 1.0),
        ("spread", 2.0),
    ],
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
    for geometry, gram in [
        ("etf", simplex.etf_gram(10)),
        ("orthogonal", np.eye(10)),
        ("minority_spread", simplex.minority_spread_gram(10, 0.3)),
    ]:
        protos = train.prototypes(train.TrainConfig(geometry=geometry, spread=0.3, dim=16), 10)
        assert protos.shape == (10, 16)
        np.testing.assert_allclose(protos @ protos.T, gram, atol=1e-10)


# --- metrics wiring -------------------------------------------------------------------


def test_geometry_metrics_on_an_ssem_construction_are_exact():
    m, n, p, beta = 4, 3, 2, 0.6
    z = torch.as_tensor(ssem.embeddings(m, n, p, dim=16, beta=beta, seed=1).reshape(m * n * p, 16))
    labels = torch.arange(m).repeat_interleave(n * p)
    target = torch.as_tensor(simplex.etf_gram(m))
    record, gram = evaluation.geometry_metrics(z.float(), labels, z.float(), labels, target, m, minority=[2, 3])
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
    expected = {
        "epoch",
        "loss",
        "lr",
        "images_per_s",
        "train_seconds",
        "delta_g",
        "total_var",
        "within_var",
        "between_var",
        "nc1",
    } | {f"{s}_acc_{g}" for s in ("train", "test") for g in ("overall", "majority", "minority")}
    assert set(record) == expected | {"eval_precision"} and record["eval_precision"] == "float32"
    assert all(math.isfinite(record[k]) for k in expected)
    assert record["total_var"] == pytest.approx(record["within_var"] + record["between_var"])
    assert result["class_sizes"] == [4] * 5 + [2] * 5 and result["test_class_sizes"] == [2] * 10
    assert (result["batch_size"], result["steps_per_epoch"]) == (8, 3)
    # The final Gram is the class-mean Gram of the trained network's train embeddings.
    assert np.asarray(result["gram"]).shape == (10, 10)
    G = torch.as_tensor(result["gram"])
    assert record["delta_g"] == pytest.approx(float(metrics.delta_g(G, torch.as_tensor(result["target_gram"]))))


def test_training_lowers_the_loss(fixture_root, deterministic):
    # Batch 12 > 10 classes: the combined loss needs a same-class pair in every batch.
    result = train.run(
        tiny_config(fixture_root, epochs=4, warmup_epochs=0, lr=0.1, loss="combined", alpha=0.5, batch_size=12)
    )
    losses = [record["loss"] for record in result["log"]]
    assert losses[-1] < losses[0]


def test_same_config_gives_identical_runs(fixture_root, deterministic):
    config = tiny_config(fixture_root, epochs=1)
    a, b = train.run(config), train.run(config)
    assert without_timing(a["log"]) == without_timing(b["log"])
    c = train.run(config.replace(seed=1))
    assert without_timing(c["log"]) != without_timing(a["log"])


def test_every_n_proto_takes_effect(fixture_root, deterministic):
    # A training that capped n_w (say at 10) would give identical runs at n_w = 10 and 100.
    ten, hundred = (train.run(tiny_config(fixture_root, epochs=1, n_proto=n)) for n in (10, 100))
    assert ten["log"][0]["loss"] != hundred["log"][0]["loss"]
    assert ten["final"]["delta_g"] != hundred["final"]["delta_g"]


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
        ckpt.save_checkpoint(
            path, {"config": {}, "epoch": 0, "step": 0, "model": {"w": torch.zeros(1000)}, "optimizer": {}, "log": []}
        )
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


# --- no host synchronisation in the training step ---------------------------------------


def test_the_sync_counter_sees_every_kind_of_host_read():
    x = torch.randn(6)
    with count_host_syncs() as syncs:
        x.sum().item()
        bool(x[0] > 0)
        x.tolist()
        x[x > 0]
        torch.tensor([1.0, 2.0])
    assert syncs == Counter(
        {"item/bool/int/float": 2, "Tensor.tolist": 1, "boolean indexing": 1, "tensor from Python data": 1}
    )
    with count_host_syncs() as syncs:
        (x * 2 / 0.5).exp().sum()
    assert sum(syncs.values()) == 0


def test_public_losses_synchronise_and_the_fast_path_does_not():
    # What the fast path is for: the public functions check their inputs on the host every call.
    labels, instances = losses.balanced_layout(4, 3, 2)
    z = torch.nn.functional.normalize(torch.randn(24, 8), dim=-1)
    w = torch.as_tensor(simplex.etf(4, 8), dtype=torch.float32)
    with count_host_syncs() as public:
        expected = (
            losses.prototype_supcon_loss(z, labels, w, 10, 0.1),
            losses.combined_loss(z, labels, instances, 0.5, 0.1),
        )
    prototype_loss = losses.prototype_supcon_training_loss(w, 10, 0.1)
    combined = losses.combined_training_loss(0.5, 0.1)
    with count_host_syncs() as fast:
        values = (prototype_loss(z, labels), combined(z, labels, instances))
    assert sum(public.values()) >= 4 and sum(fast.values()) == 0, (public, fast)
    for value, reference in zip(values, expected):
        torch.testing.assert_close(value, reference, rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "changes",
    [
        dict(n_proto=10),
        dict(n_proto=10, anchors="all"),
        dict(n_proto=0),
        dict(augmentation="crop_flip"),
        dict(loss="combined", alpha=0.5, batch_size=12),
        dict(loss="combined", alpha=0.5, variant="supcon", batch_size=12),
    ],
    ids=["prototype", "prototype-all", "supcon", "crop_flip", "combined", "combined-supcon"],
)
def test_training_step_has_no_host_sync(fixture_root, monkeypatch, changes):
    """Augmentation, forward, loss, backward and SGD update of every step: zero host reads."""
    counts, steps = Counter(), []
    original = train.train_step

    def counted(*args, **kwargs):
        with count_host_syncs() as syncs:
            loss = original(*args, **kwargs)
        counts.update(syncs)
        steps.append(loss)
        return loss

    monkeypatch.setattr(train, "train_step", counted)
    config = tiny_config(fixture_root, epochs=1, **changes)
    result = train.run(config)
    assert len(steps) == result["steps_per_epoch"] * config.epochs >= 2
    assert sum(counts.values()) == 0, counts
    assert result["log"][0]["loss"] == pytest.approx(float(sum(steps)) / len(steps))


# --- evaluation and checkpoints ------------------------------------------------------------------


def test_final_geometry_is_float32_of_projector_and_backbone(fixture_root, tmp_path):
    config = tiny_config(fixture_root, epochs=1)
    result = train.run(config, checkpoint=tmp_path / "run.pt")
    assert result["final"]["eval_precision"] == result["final_backbone"]["eval_precision"] == "float32"
    # A float64 reference from the saved network, computed without evaluation.embed.
    network = train.make_network(config, 3, torch.device("cpu")).double()
    network.load_state_dict(ckpt.load_checkpoint(tmp_path / "run.pt")["model"])
    network.eval()
    prepared = train.prepare_data(config, "cpu")
    mean, std = prepared.mean.double()[:, None, None], prepared.std.double()[:, None, None]

    def heads(images):
        with torch.no_grad():
            h = network.backbone((images.double() / 255 - mean) / std)
            return {
                "projector": torch.nn.functional.normalize(network.projector(h), dim=-1),
                "backbone": torch.nn.functional.normalize(h, dim=-1),
            }

    train_z, test_z = heads(prepared.train.images), heads(prepared.test.images)
    target = torch.as_tensor(simplex.etf_gram(10))
    for head, measured in [("projector", result["final"]), ("backbone", result["final_backbone"])]:
        reference, gram = evaluation.geometry_metrics(
            train_z[head],
            prepared.train.labels,
            test_z[head],
            prepared.test.labels,
            target,
            10,
            simplex.minority_classes(10).tolist(),
        )
        for key in ("delta_g", "total_var", "within_var", "between_var"):
            assert measured[key] == pytest.approx(reference[key], abs=1e-5), (head, key)
        stored = result["gram" if head == "projector" else "gram_backbone"]
        np.testing.assert_allclose(stored, gram.numpy(), atol=1e-5)
    assert result["final"]["delta_g"] != result["final_backbone"]["delta_g"]


def test_checkpoints_follow_the_wall_clock_interval(fixture_root, tmp_path, monkeypatch):
    written = []
    monkeypatch.setattr(train, "save_checkpoint", lambda path, state: written.append((state["epoch"], state["step"])))
    config = tiny_config(fixture_root, epochs=3, eval_every=3)
    train.run(config, checkpoint=tmp_path / "run.pt", checkpoint_every=3600)
    assert written == [(3, 0)]  # an hour never passed: only the final checkpoint
    written.clear()
    train.run(config, checkpoint=tmp_path / "run.pt", checkpoint_every=0)
    assert written == [(1, 0), (2, 0), (3, 0)]
    written.clear()
    calls = iter(range(100))
    train.run(config, checkpoint=tmp_path / "run.pt", checkpoint_every=3600, should_stop=lambda: next(calls) == 4)
    assert written == [(1, 1)]  # on a stop request, mid-epoch


def test_combined_loss_needs_more_images_per_batch_than_classes():
    with pytest.raises(ValueError, match="batch_size must exceed the number of classes"):
        train.TrainConfig(loss="combined", batch_size=10)
    with pytest.raises(ValueError, match="dim must be >= n_classes - 1 = 9"):
        train.TrainConfig(n_proto=1, dim=5)
    assert train.TrainConfig(n_proto=0, dim=5).dim == 5  # no prototypes, any dim
