"""must-ds for Python: the multi-task loader, the dataset and the checked
label writer of must-ds, a Parquet pseudo-label store for multi-task
self-training.

    import must_ds
    loader = must_ds.Loader("corpus", ["cls", "det", "seg", "depth"], batch_size=32, size=384)
    for epoch in range(10):
        for batch in loader:                      # dicts of zero-copy torch tensors
            batch = must_ds.to_device(batch, "cuda", normalize="imagenet")
            ...
        torch.save(loader.state_dict(), "loader.pt")

Everything runs in the Rust crate (`must_ds._native`); these modules only
shape arguments and results. Batches follow FORMAT.md section 5.
"""
from ._native import (
    ConflictError,
    CorruptDataError,
    InvalidDataError,
    MustError,
    NotFoundError,
    __version__,
)
from .dataset import Dataset, LabelWriter
from .loader import Loader, to_device

__all__ = [
    "Loader",
    "Dataset",
    "LabelWriter",
    "to_device",
    "MustError",
    "CorruptDataError",
    "InvalidDataError",
    "ConflictError",
    "NotFoundError",
    "__version__",
]
