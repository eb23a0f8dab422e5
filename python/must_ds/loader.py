"""The loader of one rank, over `must_ds._native.Loader`, and `to_device`."""
import json
import os

from . import _native

try:  # torch tensors when torch is installed, else numpy arrays
    import torch as _torch

    _from_dlpack = _torch.from_dlpack
except ImportError:  # pragma: no cover - exercised where torch is absent
    _torch = None
    import numpy as _np

    _from_dlpack = _np.from_dlpack


def _rank_world(rank, world_size):
    if rank is not None and world_size is not None:
        return rank, world_size
    r, w = 0, 1
    dist = getattr(_torch, "distributed", None) if _torch is not None else None
    if dist is not None and dist.is_available() and dist.is_initialized():
        r, w = dist.get_rank(), dist.get_world_size()
    elif "RANK" in os.environ or "WORLD_SIZE" in os.environ:
        r, w = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    return (r if rank is None else rank), (w if world_size is None else world_size)


class Loader:
    """Mixed-task batches of one rank, deterministic and resumable.

    `tasks`: a list of task names, or a dict from name to required (a sample
    without a required task's label is left out). `size`: an int or
    (width, height). Rank and world size default to `torch.distributed` when
    it is initialised, else the `RANK` and `WORLD_SIZE` environment, else 0
    and 1. Every other option of the Rust `LoaderBuilder` is a keyword with
    the same name: `label_stride`, `max_image_pixels`, `crop` ("resize",
    "random_resized", {"random_resized": {"scale": .., "ratio": ..}},
    {"scale_jitter": [lo, hi]}), `flip`, `augment`, `prefetch_bytes`,
    `prefetch_batches`, `shuffle_row_groups`, `requests_in_flight`,
    `image_output` ("u8", "imagenet" or {"mean": .., "std": ..}),
    `min_score`, `min_confidence`, `missing_mass` ("spread", "renormalize"),
    `max_boxes`, `min_box_size` (output pixels), `on_corrupt` ("fail", "skip"), `balance` ("drop", "pad"),
    `weights` ({source: weight}), `epoch_size`.

    Each `iter(loader)` is one epoch (the next one after a finished or
    abandoned iteration). Batches are dicts keyed as FORMAT.md section 5:
    `images`, `padding`, `image_ids`, `sources`, `<task>.present`, ... Their
    tensors share the loader's buffers (no copy); a batch's buffers go back
    to the loader when its tensors are freed. `state_dict()` and
    `load_state_dict()` follow torchdata's `StatefulDataLoader`; `state=`
    takes the same dict. Errors are `must_ds.MustError`s with `file`,
    `row_group` and `image_id`.
    """

    def __init__(self, root, tasks, batch_size=32, size=384, seed=0, epoch=0, rank=None,
                 world_size=None, workers=None, *, storage_options=None, version=None,
                 state=None, **options):
        if isinstance(tasks, str):
            tasks = [tasks]
        pairs = ([(str(t), bool(r)) for t, r in tasks.items()] if isinstance(tasks, dict)
                 else [(str(t), False) for t in tasks])
        rank, world_size = _rank_world(rank, world_size)
        size = list(size) if isinstance(size, (tuple, list)) else size
        opts = dict(batch_size=batch_size, size=size, seed=seed, epoch=epoch, rank=rank,
                    world_size=world_size, **options)
        if workers is not None:
            opts["workers"] = workers
        self.rank, self.world_size = rank, world_size
        self._native = _native.Loader(str(root), pairs, json.dumps(opts), storage_options,
                                      version, None if state is None else json.dumps(state))
        self._last_addresses = {}

    def __iter__(self):
        self._native.begin_epoch()
        return _Epoch(self)

    def _batch(self, raw):
        fields, ids, sources, epoch, index = raw
        self._last_addresses = {k: b.address for k, b in fields}
        out = {k: _from_dlpack(b) for k, b in fields}
        out["image_ids"] = ids
        out["sources"] = sources
        return out

    def __len__(self):
        """Batches per epoch (of the epoch under way, or the next one)."""
        return self._native.batches_per_epoch()

    def state_dict(self):
        """Where the loader stands: a dict of plain values (JSON- and
        torch.save-able). Between epochs it is the next epoch's start."""
        return json.loads(self._native.state_json())

    def load_state_dict(self, state_dict):
        """The next iteration resumes from `state_dict` (same dataset
        version, seed and plan options; any world size)."""
        self._native.load_state_json(json.dumps(state_dict))

    def metrics(self):
        """Time and volume counters (those of `must-ds bench`)."""
        return json.loads(self._native.metrics_json())

    def skipped(self):
        """What `on_corrupt="skip"` left out in this epoch."""
        return [dict(file=f, row_group=g, image_id=i, reason=r) for f, g, i, r in self._native.skipped()]


class _Epoch:
    """One epoch's iterator. It keeps no reference to a batch it returned,
    so that the batch's buffers go back to the loader as soon as the
    trainer drops it."""

    __slots__ = ("_loader",)

    def __init__(self, loader):
        self._loader = loader

    def __iter__(self):
        return self

    def __next__(self):
        raw = self._loader._native.next_batch()
        if raw is None:
            raise StopIteration
        return self._loader._batch(raw)


_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def to_device(batch, device="cuda", *, normalize=None, widen=True):
    """Moves a batch to `device` (through pinned memory and non-blocking
    copies on CUDA) and widens there: masks to int64, depth to float32 (0
    where invalid) plus `<task>.valid`, and u8 images to float32
    `(x / 255 - mean) / std` when `normalize` is "imagenet" or (mean, std)."""
    import torch

    dev = torch.device(device)
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            if dev.type == "cuda":
                v = v.pin_memory().to(dev, non_blocking=True)
            elif v.device != dev:
                v = v.to(dev)
        out[k] = v
    if widen:
        for k in [k for k in out if isinstance(out[k], torch.Tensor)]:
            v = out[k]
            if k.endswith(".mask"):
                out[k] = v.to(torch.int64)
            elif k.endswith(".depth"):
                out[k[: -len(".depth")] + ".valid"] = torch.isfinite(v)
                out[k] = torch.nan_to_num(v.float(), nan=0.0, posinf=0.0, neginf=0.0)
    if normalize is not None and out["images"].dtype == torch.uint8:
        mean, std = _IMAGENET if normalize == "imagenet" else normalize
        m = torch.tensor(mean, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
        s = torch.tensor(std, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
        out["images"] = (out["images"].float() / 255.0 - m) / s
    return out
