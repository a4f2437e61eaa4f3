"""Image data for the empirical route (docs/commands.md#empirical-cifar): CIFAR, digits, a CIFAR-format fixture.

Every dataset becomes a `LabelledImages`: uint8 images (N, C, H, W) and int64 labels (N,),
kept as tensors so that a training loop can hold the whole set on its device. Class
imbalance follows Paper A (`imbalanced`): the majority classes are the first ceil(m/2)
class ids and keep all their images; the minority classes keep size/R (at least 1),
subsampled with a fixed seed. Test sets stay balanced.

Augmentation works on a whole batch on the device (`sample_augmentation`, `augment`):
random parameters are drawn per sample from an explicit generator, then one affine
resampling and a few elementwise operations transform the batch. `AUGMENTATIONS` names
the recipes: "supcon" (SupCon's CIFAR recipe: torchvision's RandomResizedCrop, flip,
colour jitter, grayscale), "crop_flip" (pad 4, random crop, flip: the recipe of Paper A's
predecessor code) and "digits" (mild crops and intensity jitter).

`PreparedData` holds a run's splits on its device with the standardisation statistics and the
recipe; `two_view_batch` makes one process's two augmented views of a global training batch.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from numbers import Real
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.datasets import CIFAR10, CIFAR100

from empirical.distributed import Processes
from theory.arguments import require_choice, require_int
from theory.compositions import minority_size
from theory.simplex import majority_classes, minority_classes

DATASETS = ("cifar10", "cifar100", "digits", "digits32", "fixture")
#: Number of classes of each dataset, known before any file is read (validation uses it).
N_CLASSES = {"cifar10": 10, "cifar100": 100, "digits": 10, "digits32": 10, "fixture": 10}
PROFILES = ("step", "exp")

#: Fraction of each digit class held out (stratified, fixed seed) as the balanced test set.
DIGITS_TEST_FRACTION = 1 / 3


class DatasetNotFoundError(FileNotFoundError):
    """The image files of a dataset are not under the data directory."""


@dataclass(frozen=True)
class LabelledImages:
    """A labelled image set: images uint8 (N, C, H, W), labels int64 (N,) in [0, n_classes)."""

    images: Tensor
    labels: Tensor
    n_classes: int

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be a uint8 tensor (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must have shape ({self.images.shape[0]},), got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def class_sizes(self) -> list[int]:
        """Number of images of each class, (m,)."""
        return torch.bincount(self.labels, minlength=self.n_classes).tolist()

    def to(self, device) -> LabelledImages:
        return LabelledImages(self.images.to(device), self.labels.to(device), self.n_classes)


# ---------------------------------------------------------------------------
# CIFAR through torchvision, and a fixture in CIFAR-10's pickled batch layout
# ---------------------------------------------------------------------------


class _CIFAR10Fixture(CIFAR10):
    """torchvision's CIFAR-10 reader pointed at a fixture folder, without the md5 checks.

    The fixture is written in the real layout (five pickled training batches, one test
    batch, ``batches.meta``), so loading it runs the same reading code as CIFAR-10; only
    the checksums, which pin the real files, are switched off (md5 None = existence check).
    """

    base_folder = "cifar-10-fixture-batches-py"
    url = ""
    train_list = [[f"data_batch_{i}", None] for i in range(1, 6)]
    test_list = [["test_batch", None]]
    meta = {"filename": "batches.meta", "key": "label_names", "md5": None}

    def download(self) -> None:
        raise DatasetNotFoundError("the CIFAR fixture cannot be downloaded: write it with write_cifar_fixture")


_READERS = {"cifar10": CIFAR10, "cifar100": CIFAR100, "fixture": _CIFAR10Fixture}


def _missing_message(name: str, root: Path) -> str:
    folder = _READERS[name].base_folder
    return (
        f"{name} files not found (or corrupted) in {root / folder}/: "
        f"set --data-dir to the folder that contains {folder}/, or add --download to fetch it there"
    )


def ensure_available(name: str, data_dir, download: bool = False) -> None:
    """Fail fast, before any training, when a dataset's files are absent; download them if asked.

    Digits ship with scikit-learn and are always available. For CIFAR and the fixture
    this checks that the batch files exist (their checksums are verified when loaded),
    or, with ``download``, fetches and verifies them. Raises DatasetNotFoundError.
    """
    require_choice("dataset", name, DATASETS)
    if name == "digits":
        return
    reader, root = _READERS[name], Path(data_dir)
    if download:
        try:
            reader(str(root), train=True, download=True)
        except (OSError, RuntimeError) as error:  # URLError is an OSError; a bad archive a RuntimeError
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DatasetNotFoundError(
                f"could not download {name} into {root}/ ({reason}): without network, copy {reader.base_folder}/ "
                "there yourself and run without --download"
            ) from None
        return
    names = [f for f, _ in reader.train_list + reader.test_list] + [reader.meta["filename"]]
    if not all((root / reader.base_folder / f).is_file() for f in names):
        raise DatasetNotFoundError(_missing_message(name, root))


def load_cifar(name: str, data_dir, download: bool = False) -> tuple[LabelledImages, LabelledImages]:
    """The (train, test) split of CIFAR-10, CIFAR-100 or the fixture, read by torchvision.

    Raises DatasetNotFoundError (one line, naming --data-dir and --download) when the
    files are missing or fail their checksum and ``download`` is False.
    """
    require_choice("name", name, tuple(_READERS))
    reader = _READERS[name]
    root = Path(data_dir)
    splits = []
    for train in (True, False):
        try:
            dataset = reader(str(root), train=train, download=download)
        except RuntimeError as error:
            if "not found or corrupted" not in str(error):
                raise
            raise DatasetNotFoundError(_missing_message(name, root)) from None
        images = torch.from_numpy(np.ascontiguousarray(dataset.data.transpose(0, 3, 1, 2)))  # HWC -> (N, 3, 32, 32)
        labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
        splits.append(LabelledImages(images, labels, N_CLASSES[name]))
    return splits[0], splits[1]


def _fixture_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Learnable 32x32 RGB images: a class colour and a class grating, plus noise; (N, 3072) uint8.

    Class c has hue angle 2 pi c / 10 and a grating at angle pi c / 10, so a network can
    separate the classes in a few steps; the noise keeps the images of a class distinct.
    """
    y, x = np.mgrid[0:32, 0:32] / 32.0
    angle = np.pi * labels / 10.0  # (N,)
    grating = np.sin(2 * np.pi * 3 * (np.cos(angle)[:, None, None] * x + np.sin(angle)[:, None, None] * y))
    hue = 2 * np.pi * labels / 10.0
    colour = 0.5 + 0.35 * np.cos(hue[:, None] - np.array([0.0, 2.0, 4.0]) * np.pi / 3)  # (N, 3)
    images = colour[:, :, None, None] + 0.2 * grating[:, None] + 0.15 * rng.standard_normal((len(labels), 3, 32, 32))
    return np.clip(np.round(255 * images), 0, 255).astype(np.uint8).reshape(len(labels), 3 * 32 * 32)


def _write_pickle(path: Path, obj) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)


def write_cifar_fixture(root, n_train_per_class: int = 20, n_test_per_class: int = 10, seed: int = 0) -> Path:
    """Write a tiny 10-class dataset in CIFAR-10's pickled batch layout under ``root``.

    Layout (as in cifar-10-python.tar.gz): ``data_batch_1`` .. ``data_batch_5`` and
    ``test_batch``, each a pickled dict with ``data`` (n, 3072) uint8 rows (channel-major
    32x32 planes), ``labels`` (list of int), ``batch_label`` and ``filenames``; and
    ``batches.meta`` with ``label_names``. The training images are spread over the five
    batches. Returns the folder written (root / "cifar-10-fixture-batches-py").
    """
    n_train = require_int("n_train_per_class", n_train_per_class, 1)
    n_test = require_int("n_test_per_class", n_test_per_class, 1)
    rng = np.random.default_rng(require_int("seed", seed, 0))
    folder = Path(root) / _CIFAR10Fixture.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    train_labels = rng.permutation(np.repeat(np.arange(10), n_train))
    test_labels = np.repeat(np.arange(10), n_test)
    batches = [(f"data_batch_{i + 1}", part) for i, part in enumerate(np.array_split(train_labels, 5))]
    for name, labels in batches + [("test_batch", test_labels)]:
        entry = {
            "batch_label": f"fixture {name}",
            "labels": labels.tolist(),
            "data": _fixture_images(labels, rng),
            "filenames": [f"{name}_{i}.png" for i in range(len(labels))],
        }
        _write_pickle(folder / name, entry)
    _write_pickle(folder / "batches.meta", {"label_names": [f"class{c}" for c in range(10)], "num_vis": 3072})
    return folder


# ---------------------------------------------------------------------------
# Digits (scikit-learn): real 8x8 images that ship inside the package
# ---------------------------------------------------------------------------


#: scikit-learn's own digits file (1797 rows: 64 pixel values in 0..16, then the label). Placed in
#: the data folder it replaces scikit-learn, e.g. on a GPU machine that has torch but not scikit-learn.
DIGITS_FILE = "digits.csv.gz"


def _digits_arrays(data_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) with values 0..16, labels (1797,) int64) from data_dir/DIGITS_FILE or scikit-learn."""
    path = Path(data_dir) / DIGITS_FILE if data_dir is not None else None
    if path is not None and path.is_file():
        table = np.loadtxt(path, delimiter=",")
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    try:
        from sklearn.datasets import load_digits  # deferred: scikit-learn is slow to import
    except ImportError:
        raise DatasetNotFoundError(
            f"digits need scikit-learn, or its file {DIGITS_FILE} (in sklearn/datasets/data/) "
            f"copied into the data folder {data_dir}"
        ) from None
    digits = load_digits()
    return digits.images, digits.target.astype(np.int64)


def load_digits_split(seed: int = 0, data_dir=None) -> tuple[LabelledImages, LabelledImages]:
    """scikit-learn's 8x8 digits as (train, test), a stratified split with a fixed seed.

    Pixel values 0..16 are rescaled to 0..255 (uint8, shape (N, 1, 8, 8));
    `DIGITS_TEST_FRACTION` of every class goes to the (balanced) test set. Read from
    data_dir/`DIGITS_FILE` when that file exists, else from scikit-learn.
    """
    pixels, labels = _digits_arrays(data_dir)
    images = np.round(pixels * (255 / 16)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    rng = np.random.default_rng(require_int("seed", seed, 0))
    test = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        members = rng.permutation(np.flatnonzero(labels == c))
        test[members[: round(len(members) * DIGITS_TEST_FRACTION)]] = True
    train = LabelledImages(torch.from_numpy(images[~test]), torch.from_numpy(labels[~test]), 10)
    return train, LabelledImages(torch.from_numpy(images[test]), torch.from_numpy(labels[test]), 10)


def upsample(data: LabelledImages, size: int) -> LabelledImages:
    """Images resized to size x size (bilinear, antialiased, rounded back to uint8)."""
    size = require_int("size", size, 1)
    x = F.interpolate(data.images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return LabelledImages(x.round().clamp(0, 255).to(torch.uint8), data.labels, data.n_classes)


def load_dataset(name: str, data_dir="data", download: bool = False) -> tuple[LabelledImages, LabelledImages]:
    """(train, test) of one of `DATASETS`; the fixture must have been written under data_dir.

    "digits32" is digits upsampled to 32x32: real images at CIFAR's size, to run the
    CIFAR network on a machine without CIFAR.
    """
    require_choice("dataset", name, DATASETS)
    if name == "digits":
        return load_digits_split(data_dir=data_dir)
    if name == "digits32":
        return tuple(upsample(split, 32) for split in load_digits_split(data_dir=data_dir))
    return load_cifar(name, data_dir, download)


# ---------------------------------------------------------------------------
# Class imbalance (Paper A)
# ---------------------------------------------------------------------------


def require_imbalance(imbalance) -> float:
    """The imbalance ratio R as a float; a finite real >= 1 (1 = balanced)."""
    if isinstance(imbalance, bool) or not isinstance(imbalance, Real) or not math.isfinite(imbalance) or imbalance < 1:
        raise ValueError(f"imbalance must be a finite real number >= 1 (1 = balanced), got {imbalance!r}")
    return float(imbalance)


def kept_class_sizes(sizes, imbalance: float, profile: str = "step") -> list[int]:
    """How many images of each class an imbalanced subset keeps; (m,) -> (m,).

    step (Paper A): the majority classes (first ceil(m/2) ids) keep n_c, the minority
    classes keep max(1, floor(n_c / R)). exp: class c keeps max(1, floor(n_c R^(-c/(m-1)))),
    from n_0 down to n_{m-1}/R. R = 1 keeps everything.
    """
    sizes = [require_int("class size", size, 1) for size in sizes]
    m = require_int("number of classes", len(sizes), 2)
    R = require_imbalance(imbalance)
    require_choice("profile", profile, PROFILES)
    if profile == "step":  # the one minority rule of theory.compositions
        minority = set(minority_classes(m).tolist())
        return [minority_size(size, R) if c in minority else size for c, size in enumerate(sizes)]
    factors = R ** (-np.arange(m) / (m - 1))
    # The small relative slack keeps exact quotients (R^(-1) * n_0 at the last class) from rounding down.
    return [max(1, math.floor(size * factor * (1 + 1e-12))) for size, factor in zip(sizes, factors)]


def imbalanced(data: LabelledImages, imbalance: float, profile: str = "step", seed: int = 0) -> LabelledImages:
    """A class-imbalanced subset of ``data`` (sizes from `kept_class_sizes`), drawn with a fixed seed.

    Each class keeps a uniformly random subset of its images; the kept images stay in
    their original order. R = 1 returns all of ``data``.
    """
    keep = kept_class_sizes(data.class_sizes(), imbalance, profile)
    rng = np.random.default_rng(require_int("seed", seed, 0))
    labels = data.labels.cpu().numpy()
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in enumerate(keep)]
    index = torch.from_numpy(np.sort(np.concatenate(chosen))).to(data.labels.device)
    return LabelledImages(data.images[index], data.labels[index], data.n_classes)


def class_groups(n_classes: int) -> dict[str, list[int]]:
    """The majority and minority class ids of the imbalance convention."""
    return {"majority": majority_classes(n_classes).tolist(), "minority": minority_classes(n_classes).tolist()}


# ---------------------------------------------------------------------------
# Batched augmentation on the device
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Augmentation:
    """A crop (+ optional horizontal flip), colour jitter, random grayscale.

    crop "resized": torchvision's RandomResizedCrop: area fraction uniform in crop_scale,
    aspect ratio log-uniform in crop_ratio, a draw that does not fit in the image redrawn
    (10 attempts, then the whole image), position uniform; resized back to the image size.
    crop "padded": the image padded with `pad` black pixels on every side and a crop of the
    original size at a uniform integer offset (torchvision's RandomCrop(size, padding)).
    flip: horizontal flip with probability 1/2. jitter: strength j of brightness, contrast
    and saturation factors drawn from U(1 - j, 1 + j), applied together with probability
    jitter_prob. Hue jitter is left out (a per-pixel colour-space round trip for little
    effect at 32x32).
    """

    crop: str = "resized"
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    pad: int = 4
    flip: bool = True
    jitter: float = 0.4
    jitter_prob: float = 0.8
    grayscale_prob: float = 0.2

    def __post_init__(self):
        require_choice("crop", self.crop, ("resized", "padded"))

    @property
    def padding_mode(self) -> str:
        """Outside the image: black for the padded crop, a reflection otherwise (bilinear samples near the border)."""
        return "zeros" if self.crop == "padded" else "reflection"


#: Recipes by name. "supcon": SupCon's CIFAR recipe (RandomResizedCrop(32, (0.2, 1)), flip,
#: ColorJitter(0.4, 0.4, 0.4) with p = 0.8, grayscale p = 0.2; no hue). "crop_flip": Paper A's
#: predecessor code (RandomCrop(32, padding=4), flip). "digits": digits are not mirror-symmetric
#: and have one channel: mild crops and intensity jitter only.
AUGMENTATIONS = {
    "supcon": Augmentation(),
    "crop_flip": Augmentation(crop="padded", pad=4, flip=True, jitter=0.0, jitter_prob=0.0, grayscale_prob=0.0),
    "digits": Augmentation(crop_scale=(0.6, 1.0), crop_ratio=(0.8, 1.25), flip=False, jitter=0.3, grayscale_prob=0.0),
}
CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 draws before falling back


def _resized_crop(u: Tensor, augmentation: Augmentation) -> tuple[Tensor, Tensor]:
    """Crop width and height (fractions of a square image) from uniforms u (n, CROP_ATTEMPTS, 2).

    Attempt k: area a ~ U(crop_scale), ratio r = exp(U(log crop_ratio)), w = sqrt(a r),
    h = sqrt(a / r); the first attempt with w <= 1 and h <= 1 is kept (torchvision's
    rejection, done for all attempts at once). If none fits: the whole image, or the
    largest centred crop of the nearest allowed ratio when 1 is outside crop_ratio.
    """
    low, high = augmentation.crop_scale
    area = low + (high - low) * u[..., 0]
    log_low, log_high = (math.log(v) for v in augmentation.crop_ratio)
    ratio = torch.exp(log_low + (log_high - log_low) * u[..., 1])
    width, height = torch.sqrt(area * ratio), torch.sqrt(area / ratio)  # (n, attempts)
    fits = (width <= 1) & (height <= 1)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # index of the first fitting attempt (0 if none)
    r_min, r_max = augmentation.crop_ratio
    fallback = (1.0, 1 / r_min) if r_min > 1 else (r_max, 1.0) if r_max < 1 else (1.0, 1.0)
    found = fits.any(dim=1)
    width = torch.where(found, width.gather(1, first)[:, 0], fallback[0])
    height = torch.where(found, height.gather(1, first)[:, 0], fallback[1])
    return width, height


def sample_augmentation(n: int, augmentation: Augmentation, generator: torch.Generator, size: int = 32) -> Tensor:
    """Per-sample random parameters (n, 9) on the generator's device, for square images of side ``size``.

    Columns: crop width, crop height (fractions of the image), centre x, centre y (in
    [-1, 1] grid units), flip sign, brightness, contrast, saturation, grayscale flag.
    The "resized" crop places its centre uniformly with the crop inside the image (a
    continuous version of torchvision's integer offsets); the "padded" crop keeps the
    image size and shifts it by a whole number of pixels in [-pad, pad].
    """
    device = generator.device
    u = torch.rand(n, 7, generator=generator, device=device)
    if augmentation.crop == "resized":
        width, height = _resized_crop(torch.rand(n, CROP_ATTEMPTS, 2, generator=generator, device=device), augmentation)
        centre_x = (1 - width) * (2 * u[:, 2] - 1)
        centre_y = (1 - height) * (2 * u[:, 3] - 1)
    else:
        width = height = torch.ones(n, device=device)
        shifts = torch.randint(-augmentation.pad, augmentation.pad + 1, (n, 2), generator=generator, device=device)
        centre_x, centre_y = (2 / require_int("size", size, 1) * shifts.float()).unbind(1)
    flip = torch.where((u[:, 4] < 0.5) & augmentation.flip, -1.0, 1.0)
    apply_jitter = u[:, 5] < augmentation.jitter_prob
    factors = 1 + augmentation.jitter * (2 * torch.rand(n, 3, generator=generator, device=device) - 1)
    factors = torch.where(apply_jitter[:, None], factors, 1.0)
    gray = (u[:, 6] < augmentation.grayscale_prob).float()
    return torch.stack([width, height, centre_x, centre_y, flip, *factors.unbind(1), gray], dim=1)


def _gray(x: Tensor) -> Tensor:
    """Luma (N, 1, H, W) of (N, C, H, W) images in [0, 1]; a one-channel image is its own luma."""
    if x.shape[1] == 1:
        return x
    # Python-scalar weights: a weight tensor built from a list would be a host-to-device copy per call.
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def augment(images: Tensor, params: Tensor, mean: Tensor, std: Tensor, padding_mode: str = "reflection") -> Tensor:
    """Augment and standardise a batch: uint8 (N, C, H, W), params (N, 9) -> float (N, C, H, W).

    The crop, resize and flip are one bilinear affine resampling (``padding_mode``
    "reflection" or "zeros" outside the image: `Augmentation.padding_mode`); then brightness
    x b, contrast (x - mean luma) c + mean luma, saturation luma + (x - luma) s, grayscale,
    clamp to [0, 1], and (x - mean) / std per channel.
    """
    x = images.float() / 255
    width, height, centre_x, centre_y, flip, brightness, contrast, saturation, gray = params.T[..., None, None, None]
    zero = torch.zeros_like(params[:, 0])
    theta = torch.stack(  # (N, 2, 3): output grid -> input grid, x' = w f x + c_x, y' = h y + c_y
        [params[:, 0] * params[:, 4], zero, params[:, 2], zero, params[:, 1], params[:, 3]], dim=1
    ).view(-1, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    x = (x * brightness).clamp(0, 1)
    luma_mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - luma_mean) * contrast + luma_mean).clamp(0, 1)
    luma = _gray(x)
    x = (luma + (x - luma) * saturation).clamp(0, 1)
    x = torch.where(gray > 0.5, luma.expand_as(x), x)
    return (x - mean[:, None, None]) / std[:, None, None]


def standardise(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 (N, C, H, W) -> float (x / 255 - mean) / std per channel, without augmentation."""
    return (images.float() / 255 - mean[:, None, None]) / std[:, None, None]


def channel_stats(images: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation of uint8 images scaled to [0, 1]; (C,), (C,) float32.

    Accumulated in float64 over chunks, so CIFAR (50000 images) never exists as one float copy.
    """
    total = torch.zeros(images.shape[1], dtype=torch.float64, device=images.device)
    squares = torch.zeros_like(total)
    for part in images.split(chunk):
        x = part.to(torch.float64).div(255).transpose(0, 1).flatten(1)  # (C, n H W)
        total += x.sum(1)
        squares += x.square().sum(1)
    count = images.numel() // images.shape[1]
    mean = total / count
    variance = (squares / count - mean.square()).clamp(min=0)
    if bool((variance == 0).any()):
        raise ValueError("images have a constant channel: per-channel standardisation is undefined")
    return mean.float(), variance.sqrt().float()


# ---------------------------------------------------------------------------
# Training batches on the device
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedData:
    """The training subset and the test set on the device, with their standardisation and augmentation."""

    train: LabelledImages
    test: LabelledImages
    mean: Tensor  # (C,)
    std: Tensor  # (C,)
    augmentation: Augmentation


def two_view_batch(
    data: PreparedData, index: Tensor, generator: torch.Generator, processes: Processes
) -> tuple[Tensor, Tensor, Tensor]:
    """This process's two augmented views of its slice of the global batch, and the gathered labels.

    Augmentation parameters are drawn for the whole global batch (2, B, 9) and sliced,
    so an image gets the same views whatever the number of processes.

    Args:
        index: (B,) training-set indices of the global batch.
    Returns:
        views (2 b, C, H, W) float, b = B / world, ordered [view 1 of the slice; view 2];
        labels and instances (2 B,) of the all-gathered embeddings, whose order is
        rank-major, then view, then image (instance = position in the global batch).
    """
    batch, world = index.shape[0], processes.world
    local = batch // world
    size = data.train.images.shape[-1]
    params = sample_augmentation(2 * batch, data.augmentation, generator, size).view(2, batch, -1)
    mine = slice(processes.rank * local, (processes.rank + 1) * local)
    images = data.train.images[index[mine]]
    views = augment(
        torch.cat([images, images]),
        params[:, mine].reshape(2 * local, -1),
        data.mean,
        data.std,
        padding_mode=data.augmentation.padding_mode,
    )
    positions = torch.arange(batch, device=index.device).view(world, 1, local).expand(-1, 2, -1).reshape(-1)
    return views, data.train.labels[index][positions], positions
