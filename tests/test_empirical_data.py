"""Tests of empirical/data.py: loading (CIFAR layout fixture, digits), imbalance, augmentation."""

import math
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from empirical import data


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    data.write_cifar_fixture(root, n_train_per_class=6, n_test_per_class=3, seed=1)
    return root


# --- loading -----------------------------------------------------------------


def test_fixture_is_read_by_the_cifar_reader_with_the_right_pixels(fixture_root):
    train, test = data.load_cifar("fixture", fixture_root)
    assert train.images.shape == (60, 3, 32, 32) and test.images.shape == (30, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.class_sizes() == [6] * 10 and test.class_sizes() == [3] * 10
    # Independent reading of the pickled layout: row i of data_batch_1 holds the
    # channel-major planes of image i, so it must equal the loaded (3, 32, 32) tensor.
    with open(fixture_root / "cifar-10-fixture-batches-py" / "data_batch_1", "rb") as handle:
        batch = pickle.load(handle, encoding="latin1")
    first = torch.from_numpy(batch["data"][0].reshape(3, 32, 32))
    assert torch.equal(train.images[0], first)
    assert train.labels[: len(batch["labels"])].tolist() == batch["labels"]


def test_fixture_classes_differ_in_colour(fixture_root):
    # The fixture must be learnable: class mean colours are distinct.
    train, _ = data.load_cifar("fixture", fixture_root)
    means = torch.stack([train.images[train.labels == c].float().mean(dim=(0, 2, 3)) for c in range(10)])
    distances = torch.cdist(means, means) + torch.eye(10) * 1e3
    assert distances.min() > 5


def test_missing_cifar_raises_one_line_naming_both_options(tmp_path):
    with pytest.raises(data.DatasetNotFoundError) as caught:
        data.load_cifar("cifar10", tmp_path)
    message = str(caught.value)
    assert "--data-dir" in message and "--download" in message and "\n" not in message
    with pytest.raises(data.DatasetNotFoundError):
        data.load_dataset("cifar100", tmp_path)


def test_unknown_dataset_is_a_value_error():
    with pytest.raises(ValueError, match="dataset"):
        data.load_dataset("mnist")


def test_digits_split_is_stratified_and_complete():
    train, test = data.load_digits_split()
    assert len(train) + len(test) == 1797
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == torch.uint8
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    for size_train, size_test in zip(train.class_sizes(), test.class_sizes()):
        assert abs(size_test / (size_train + size_test) - data.DIGITS_TEST_FRACTION) < 0.01


# --- imbalance ------------------------------------------------------------------


def test_step_imbalance_follows_paper_a():
    assert data.kept_class_sizes([5000] * 10, 100) == [5000] * 5 + [50] * 5
    assert data.kept_class_sizes([5000] * 10, 10) == [5000] * 5 + [500] * 5
    assert data.kept_class_sizes([7] * 5, 1) == [7] * 5
    # Odd m: the majority is the first ceil(m/2) classes; never fewer than one image.
    assert data.kept_class_sizes([30] * 5, 100) == [30, 30, 30, 1, 1]


def test_exponential_imbalance_runs_from_n_to_n_over_r():
    kept = data.kept_class_sizes([1000] * 6, 10, "exp")
    assert kept[0] == 1000 and kept[-1] == 100
    assert all(a >= b for a, b in zip(kept, kept[1:]))
    assert kept[3] == math.floor(1000 * 10 ** (-3 / 5))


@pytest.mark.parametrize("bad", [0.5, 0, -3, float("nan"), float("inf")])
def test_bad_imbalance_is_rejected_by_name(bad):
    with pytest.raises(ValueError, match="imbalance"):
        data.kept_class_sizes([10, 10], bad)


def test_imbalanced_subset_is_seeded_and_drawn_from_the_data():
    train, _ = data.load_digits_split()
    a = data.imbalanced(train, 10, seed=3)
    b = data.imbalanced(train, 10, seed=3)
    c = data.imbalanced(train, 10, seed=4)
    assert a.class_sizes() == data.kept_class_sizes(train.class_sizes(), 10)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    # Every kept image is an image of the same class in the full set.
    full = {(bytes(img.numpy()), int(y)) for img, y in zip(train.images, train.labels)}
    assert all((bytes(img.numpy()), int(y)) in full for img, y in zip(a.images, a.labels))
    assert data.imbalanced(train, 1).class_sizes() == train.class_sizes()


# --- augmentation ------------------------------------------------------------------


def _identity_params(n):
    return torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]]).repeat(n, 1)


@pytest.fixture(scope="module")
def batch(fixture_root):
    train, _ = data.load_cifar("fixture", fixture_root)
    mean, std = data.channel_stats(train.images)
    return train.images[:8], mean, std


def test_channel_stats_match_a_direct_computation(batch):
    images = batch[0]
    mean, std = data.channel_stats(images, chunk=3)  # chunks of 3 images: 3 + 3 + 2
    x = images.double() / 255
    assert torch.allclose(mean.double(), x.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(std.double(), x.permute(1, 0, 2, 3).flatten(1).std(1, correction=0), atol=1e-6)


def test_identity_parameters_give_the_normalised_image(batch):
    images, mean, std = batch
    out = data.augment(images, _identity_params(len(images)), mean, std)
    assert torch.allclose(out, data.standardise(images, mean, std), atol=1e-5)


def test_flip_parameter_mirrors_the_image(batch):
    images, mean, std = batch
    params = _identity_params(len(images))
    params[:, 4] = -1
    out = data.augment(images, params, mean, std)
    assert torch.allclose(out, data.standardise(images, mean, std).flip(-1), atol=1e-5)


def test_centre_crop_is_a_bilinear_zoom(batch):
    images, mean, std = batch
    params = _identity_params(len(images))
    params[:, :2] = 0.5  # the central 16x16 pixels, enlarged to 32x32
    out = data.augment(images, params, mean, std)
    x = images.float() / 255
    zoom = F.interpolate(x[:, :, 8:24, 8:24], scale_factor=2, mode="bilinear", align_corners=False)
    expected = (zoom - mean[:, None, None]) / std[:, None, None]
    # Border pixels of the zoom read one pixel outside the crop (still inside the image).
    assert torch.allclose(out[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-5)


def test_brightness_and_grayscale(batch):
    images, mean, std = batch
    params = _identity_params(len(images))
    params[:, 5] = 0.5
    out = data.augment(images, params, mean, std) * std[:, None, None] + mean[:, None, None]
    assert torch.allclose(out, images.float() / 255 * 0.5, atol=1e-5)
    params = _identity_params(len(images))
    params[:, 8] = 1
    out = data.augment(images, params, mean, std) * std[:, None, None] + mean[:, None, None]
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-5) and torch.allclose(out[:, 1], out[:, 2], atol=1e-5)


def test_sampled_parameters_respect_their_ranges():
    augmentation = data.AUGMENTATIONS["supcon"]
    params = data.sample_augmentation(20000, augmentation, torch.Generator().manual_seed(0))
    width, height, cx, cy, flip, b, c, s, gray = params.T
    assert bool(((width > 0) & (width <= 1) & (height > 0) & (height <= 1)).all())
    assert bool(((cx.abs() <= 1 - width + 1e-6) & (cy.abs() <= 1 - height + 1e-6)).all())  # crop inside the image
    area = width * height
    assert area.min() >= 0.2 - 1e-6 and area.max() <= 1 + 1e-6
    ratio = width / height
    assert ratio.min() >= 3 / 4 - 1e-5 and ratio.max() <= 4 / 3 + 1e-5
    factors = torch.stack([b, c, s])
    assert factors.min() >= 0.6 - 1e-6 and factors.max() <= 1.4 + 1e-6
    jittered = (factors != 1).any(0).float().mean()
    assert abs(float(jittered) - augmentation.jitter_prob) < 0.02
    assert abs(float((flip < 0).float().mean()) - 0.5) < 0.02
    assert abs(float(gray.mean()) - augmentation.grayscale_prob) < 0.02
    no_flip = data.sample_augmentation(500, data.AUGMENTATIONS["digits"], torch.Generator().manual_seed(0))
    assert bool((no_flip[:, 4] == 1).all()) and bool((no_flip[:, 8] == 0).all())


def test_sampling_is_reproducible_per_generator_seed():
    a = data.sample_augmentation(64, data.AUGMENTATIONS["supcon"], torch.Generator().manual_seed(5))
    b = data.sample_augmentation(64, data.AUGMENTATIONS["supcon"], torch.Generator().manual_seed(5))
    c = data.sample_augmentation(64, data.AUGMENTATIONS["supcon"], torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_digit_augmentation_keeps_shape_and_finite_values():
    train, _ = data.load_digits_split()
    mean, std = data.channel_stats(train.images)
    params = data.sample_augmentation(32, data.AUGMENTATIONS["digits"], torch.Generator().manual_seed(0))
    out = data.augment(train.images[:32], params, mean, std)
    assert out.shape == (32, 1, 8, 8) and out.dtype == torch.float32 and bool(torch.isfinite(out).all())
    assert not torch.allclose(out, data.standardise(train.images[:32], mean, std))


def test_resized_crop_follows_torchvision_random_resized_crop():
    # torchvision's RandomResizedCrop.get_params is an independent implementation (integer
    # pixels, one sample at a time): the area and aspect-ratio distributions must agree.
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(0)
    image = torch.zeros(3, 32, 32)
    reference = torch.tensor([RandomResizedCrop.get_params(image, [0.2, 1.0], [3 / 4, 4 / 3])[2:] for _ in range(4000)])
    ref_area = (reference[:, 0] * reference[:, 1]).float() / 32**2
    ref_log_ratio = (reference[:, 1].float() / reference[:, 0].float()).log()  # width / height
    params = data.sample_augmentation(20000, data.AUGMENTATIONS["supcon"], torch.Generator().manual_seed(1))
    area, log_ratio = params[:, 0] * params[:, 1], (params[:, 0] / params[:, 1]).log()
    # Uniform area in [0.2, 1] with oversized draws redrawn: mean area about 0.57 (a log-uniform
    # draw would give 0.50); 4000 reference draws give a standard error of about 0.0037.
    assert abs(float(area.mean()) - float(ref_area.mean())) < 0.015
    for q in (0.1, 0.5, 0.9):
        assert abs(float(area.quantile(q)) - float(ref_area.quantile(q))) < 0.03
    assert abs(float(log_ratio.std()) - float(ref_log_ratio.std())) < 0.02


def test_crop_flip_is_a_zero_padded_crop_and_a_flip(batch):
    images, mean, std = batch
    augmentation = data.AUGMENTATIONS["crop_flip"]
    params = data.sample_augmentation(len(images), augmentation, torch.Generator().manual_seed(3), size=32)
    out = data.augment(images, params, mean, std, padding_mode=augmentation.padding_mode)
    padded = F.pad(images.float() / 255, (4, 4, 4, 4))  # black border of 4 pixels, (N, C, 40, 40)
    shifts = (params[:, 2:4] * 16).round().long()  # grid units -> pixels
    assert bool((shifts.abs() <= 4).all()) and bool((params[:, 5:8] == 1).all()) and bool((params[:, 8] == 0).all())
    for i in range(len(images)):
        dx, dy = shifts[i].tolist()
        crop = padded[i, :, 4 + dy : 36 + dy, 4 + dx : 36 + dx]
        if params[i, 4] < 0:
            crop = crop.flip(-1)
        assert torch.allclose(out[i], (crop - mean[:, None, None]) / std[:, None, None], atol=1e-4), i


def test_digits_file_in_the_data_folder_replaces_scikit_learn(tmp_path, monkeypatch):
    import shutil

    import sklearn

    shutil.copy(Path(sklearn.__file__).parent / "datasets" / "data" / data.DIGITS_FILE, tmp_path)
    reference = data.load_digits_split()
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # as on a machine without scikit-learn
    from_file = data.load_dataset("digits", tmp_path)
    for a, b in zip(reference, from_file):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    with pytest.raises(data.DatasetNotFoundError, match="scikit-learn"):
        data.load_dataset("digits", tmp_path / "empty")


def test_digits32_are_the_digits_upsampled():
    from PIL import Image

    (small, _), (large, large_test) = data.load_dataset("digits"), data.load_dataset("digits32")
    assert large.images.shape[1:] == (1, 32, 32) and large.images.dtype == torch.uint8
    assert torch.equal(small.labels, large.labels) and len(large_test) == len(data.load_digits_split()[1])
    # Pillow's bilinear resize is an independent implementation of the same upsampling.
    for i in range(0, len(small), 97):
        reference = Image.fromarray(small.images[i, 0].numpy()).resize((32, 32), Image.BILINEAR)
        difference = large.images[i, 0].int() - torch.from_numpy(np.array(reference)).int()
        assert int(difference.abs().max()) <= 1, i


def test_download_without_network_is_one_line(tmp_path, monkeypatch):
    import urllib.error

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data.CIFAR10, "download", offline)
    with pytest.raises(data.DatasetNotFoundError) as caught:
        data.ensure_available("cifar10", tmp_path, download=True)
    message = str(caught.value)
    assert "could not download cifar10" in message and "name resolution" in message and "\n" not in message
