"""Datasets for robustlayers: registry, readers of the publishers' formats, in-memory batches.

Images are float32 NCHW tensors in [0, 1]; labels int64 (architecture.md, "data"). Default
dataset: Fashion-MNIST from the Debian package ``dataset-fashion-mnist``.
"""

from .batches import AUGMENTS, augment_batch, epoch_generator, iter_batches, num_batches
from .batches import random_crop, random_flip
from .dataset import (TensorData, available_corruptions, find_files, load_corruption,
                      load_dataset, locate, read_split)
from .download import download_dataset
from .readers import (read_cifar10c, read_cifar_batch, read_idx, read_idx_pair, read_npy,
                      read_svhn_mat, safe_unpickle)
from .registry import (CIFAR10C_CORRUPTIONS, SPLITS, DataError, DatasetInfo, get_dataset_info,
                       list_datasets)

DEFAULT_DATASET = "fashion-mnist"

__all__ = [
    "AUGMENTS", "CIFAR10C_CORRUPTIONS", "DEFAULT_DATASET", "SPLITS", "DataError", "DatasetInfo",
    "TensorData", "augment_batch", "available_corruptions", "download_dataset",
    "epoch_generator", "find_files", "get_dataset_info", "iter_batches", "list_datasets",
    "load_corruption", "load_dataset", "locate", "num_batches", "random_crop", "random_flip",
    "read_cifar10c", "read_cifar_batch", "read_idx", "read_idx_pair", "read_npy", "read_split",
    "read_svhn_mat", "safe_unpickle",
]
