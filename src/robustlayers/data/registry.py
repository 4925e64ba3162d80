"""Dataset registry: one frozen :class:`DatasetInfo` per supported dataset.

Each entry fixes the facts a study needs before touching a file: tensor shape (C, H, W), class
names, the per-channel mean/std the model's ``normalize`` module uses, the default ℓ∞ budget and
PGD step size in input units (RAT uses α = 1/255 on SVHN), the default augmentation,
and where the publisher's files live and how they are laid out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


from robustlayers.errors import DataError  # noqa: E402,F401 (defined with the other errors)


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset.

    ``files`` are the publisher's file names (relative to the dataset folder) for the train and
    test splits; ``subdir`` is the folder name the publisher's archive unpacks to, so that a
    ``data_dir`` may be either that folder or its parent. ``default_dir`` may start with ``~``.
    ``url`` is the publisher's download location (a base URL for per-file datasets, the archive
    itself for ``archive`` datasets); ``mirrors`` are tried after it on ``download=True``.
    """

    name: str
    shape: tuple[int, int, int]
    num_classes: int
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    default_eps: float
    default_alpha: float
    augment: str
    default_model: str
    default_dir: str
    files: tuple[tuple[str, tuple[str, ...]], ...]
    url: str
    subdir: str = ""
    archive: bool = False
    mirrors: tuple[str, ...] = ()
    format: str = ""

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits this dataset has ("train", "test"; CIFAR-10-C only "test")."""
        return tuple(split for split, _ in self.files)

    def files_for(self, split: str) -> tuple[str, ...]:
        """The publisher's file names that make up ``split``."""
        for name, files in self.files:
            if name == split:
                return files
        raise DataError(f"{self.name} has no split {split!r}; valid choices: "
                        f"{', '.join(self.splits)}")


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DIGIT_CLASSES = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = tuple("""
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower
leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid
otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray
road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar
sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle
wardrobe whale willow_tree wolf woman worm""".split())

# The 19 corruptions of SPECTRUM §9: the 15 standard ones of Hendrycks & Dietterich + 4 extra.
CIFAR10C_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)

_IDX_FILES = (
    ("train", ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")),
    ("test", ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")),
)
_CIFAR10_MEAN, _CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


_CACHE_ROOT = Path("~/.cache/robustlayers/data")


def _cache(name: str) -> str:
    return f"{_CACHE_ROOT}/{name}"


_REGISTRY: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="fashion-mnist", shape=(1, 28, 28), num_classes=10, classes=FASHION_CLASSES,
            mean=(0.2860,), std=(0.3530,), default_eps=0.1, default_alpha=0.01,
            augment="crop_flip", default_model="smallcnn",
            default_dir="/usr/share/datasets/fashion-mnist", files=_IDX_FILES,
            url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            subdir="fashion-mnist", format="IDX (gzip or raw)",
        ),
        DatasetInfo(
            name="mnist", shape=(1, 28, 28), num_classes=10, classes=DIGIT_CLASSES,
            mean=(0.1307,), std=(0.3081,), default_eps=0.3, default_alpha=0.01,
            augment="crop", default_model="smallcnn", default_dir=_cache("mnist"),
            files=_IDX_FILES, url="https://yann.lecun.com/exdb/mnist/",
            mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",),
            subdir="mnist", format="IDX (gzip or raw)",
        ),
        DatasetInfo(
            name="cifar10", shape=(3, 32, 32), num_classes=10, classes=CIFAR10_CLASSES,
            mean=_CIFAR10_MEAN, std=_CIFAR10_STD, default_eps=8 / 255, default_alpha=2 / 255,
            augment="crop_flip", default_model="resnet18",
            default_dir=_cache("cifar-10-batches-py"),
            files=(("train", tuple(f"data_batch_{i}" for i in range(1, 6))),
                   ("test", ("test_batch",))),
            url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", archive=True,
            subdir="cifar-10-batches-py", format="CIFAR python pickle batches",
        ),
        DatasetInfo(
            name="cifar100", shape=(3, 32, 32), num_classes=100, classes=CIFAR100_CLASSES,
            mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
            default_eps=8 / 255, default_alpha=2 / 255, augment="crop_flip",
            default_model="resnet18", default_dir=_cache("cifar-100-python"),
            files=(("train", ("train",)), ("test", ("test",))),
            url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", archive=True,
            subdir="cifar-100-python", format="CIFAR python pickle (fine labels)",
        ),
        DatasetInfo(
            name="svhn", shape=(3, 32, 32), num_classes=10, classes=DIGIT_CLASSES,
            mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970),
            default_eps=8 / 255, default_alpha=1 / 255, augment="crop",
            default_model="resnet18", default_dir=_cache("svhn"),
            files=(("train", ("train_32x32.mat",)), ("test", ("test_32x32.mat",))),
            url="http://ufldl.stanford.edu/housenumbers/",
            subdir="svhn", format="MATLAB .mat (X: HxWxCxN, y: Nx1, 10 = digit 0)",
        ),
        DatasetInfo(
            name="cifar10-c", shape=(3, 32, 32), num_classes=10, classes=CIFAR10_CLASSES,
            mean=_CIFAR10_MEAN, std=_CIFAR10_STD, default_eps=8 / 255, default_alpha=2 / 255,
            augment="crop_flip", default_model="resnet18", default_dir=_cache("CIFAR-10-C"),
            files=(("test", ("labels.npy",) + tuple(f"{c}.npy" for c in CIFAR10C_CORRUPTIONS)),),
            url="https://zenodo.org/records/2535967/files/CIFAR-10-C.tar", archive=True,
            subdir="CIFAR-10-C",
            format=".npy per corruption, (50000,32,32,3) uint8, severities 1-5 in blocks of 10000",
        ),
    )
}

SPLITS = ("train", "test")
DATA_DIR_ENV = "ROBUSTLAYERS_DATA_DIR"


def list_datasets() -> list[str]:
    """Names of the registered datasets, default (fashion-mnist) first."""
    return list(_REGISTRY)


def get_dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; an unknown name raises :class:`DataError`."""
    key = str(name).strip().lower()
    aliases = {"fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist",
               "cifar-10": "cifar10", "cifar-100": "cifar100", "cifar10c": "cifar10-c",
               "cifar-10-c": "cifar10-c"}
    key = aliases.get(key, key)
    if key not in _REGISTRY:
        raise DataError(f"unknown dataset {name!r}; valid choices: {', '.join(_REGISTRY)}")
    return _REGISTRY[key]


def user_data_root() -> Path:
    """Root for downloads when no data_dir is given: $ROBUSTLAYERS_DATA_DIR or ~/.cache/..."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else _CACHE_ROOT.expanduser()


def candidate_dirs(info: DatasetInfo, data_dir: str | os.PathLike | None) -> list[Path]:
    """Folders searched, in order.

    With ``data_dir``: ``data_dir`` itself, then ``data_dir/<subdir>`` (the folder name the
    publisher's archive unpacks to). Without: ``$ROBUSTLAYERS_DATA_DIR/<subdir>`` when that variable
    is set, the dataset's ``default_dir``, then ``~/.cache/robustlayers/data/<subdir>``.
    """
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        cands = [root, root / info.subdir] if info.subdir else [root]
    else:
        cands = [Path(info.default_dir).expanduser(), _CACHE_ROOT.expanduser() / info.subdir]
        if os.environ.get(DATA_DIR_ENV):
            cands.insert(0, user_data_root() / info.subdir)
    out: list[Path] = []
    for cand in cands:
        if cand not in out:
            out.append(cand)
    return out


def how_to_get(info: DatasetInfo) -> str:
    """One sentence on how to obtain the data for ``info``."""
    names = [f for _, split_files in info.files for f in split_files]
    files = ", ".join(names[:6])
    more = ", ..." if len(names) > 6 else ""
    text = ""
    if info.name == "fashion-mnist":
        text = "install it as root with `apt-get install -y dataset-fashion-mnist`, or "
    return (text + f"pass --data-dir DIR (data_dir=DIR) with DIR the folder holding {files}{more} "
            f"[{info.format}] or its parent (the folder would then be DIR/{info.subdir}), "
            f"as published at {info.url}; or use --download (download=True) to fetch it "
            f"from there")
