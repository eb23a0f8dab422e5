"""The Python loader against the Rust loader: same batches, zero copy,
exact resume, equal ranks, flat memory, errors with their location."""
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import must_ds
from conftest import REPO, run

def ids_of(batch):
    return [i for i, p in zip(batch["image_ids"], batch["padding"].tolist()) if not p]


def epoch_ids(loader):
    return [ids_of(b) for b in loader]


@pytest.mark.parametrize(
    "py_opts,rust_args",
    [
        (dict(batch_size=8, size=(96, 64), seed=3, epoch=1, workers=2, label_stride=2),
         ["--batch-size", "8", "--size", "96x64", "--seed", "3", "--epoch", "1", "--workers", "2", "--label-stride", "2"]),
        (dict(batch_size=5, size=80, seed=0, epoch=0, rank=1, world_size=2, workers=1, image_output="imagenet"),
         ["--batch-size", "5", "--size", "80", "--rank", "1", "--world-size", "2", "--workers", "1", "--image-output", "imagenet"]),
    ],
)
def test_every_field_equals_the_rust_loaders(demo, demo_tasks, dump_bin, tmp_path, py_opts, rust_args):
    out = tmp_path / "rust"
    run([dump_bin, demo, out, "--tasks", ",".join(demo_tasks), *rust_args])
    index = json.loads((out / "index.json").read_text())
    batches = list(must_ds.Loader(demo, demo_tasks, **py_opts))
    assert len(batches) == len(index) > 0
    for n, (b, ref) in enumerate(zip(batches, index)):
        assert b["image_ids"] == ref["image_ids"], n
        assert b["sources"] == ref["sources"], n
        tensors = {k for k, v in b.items() if isinstance(v, torch.Tensor)}
        assert tensors == {f["name"] for f in ref["fields"]}, n
        for f in ref["fields"]:
            t = b[f["name"]]
            assert list(t.shape) == f["shape"], (n, f)
            assert str(t.dtype) == "torch." + f["dtype"], (n, f)
            raw = (out / f"{n:05}" / f"{f['name']}.bin").read_bytes()
            assert t.numpy().tobytes() == raw, (n, f["name"])


def test_tensors_share_the_loaders_buffers_and_go_back_to_its_pool(demo, demo_tasks):
    loader = must_ds.Loader(demo, demo_tasks, batch_size=8, size=64, workers=2)
    n = 0
    for b in loader:
        addresses = loader._last_addresses
        for k, v in b.items():
            if isinstance(v, torch.Tensor):
                assert v.data_ptr() == addresses[k], k
        n += 1
        del b
    assert n == len(loader) == sum(s["rows"] for s in must_ds.Dataset(demo).shards) // 8
    # Freed tensors handed their batch back: later batches reuse its arrays.
    for _ in loader:
        pass
    m = loader.metrics()
    assert m["recycled_batches"] > 0, m
    # A batch kept alive is not reused.
    kept = next(iter(loader))
    before = kept["images"].clone()
    rest = [b["images"].data_ptr() for b in loader]
    assert kept["images"].data_ptr() not in rest
    assert torch.equal(kept["images"], before)


def test_resume_gives_exactly_the_rest_of_the_epoch(demo, demo_tasks):
    opts = dict(batch_size=8, size=64, seed=7, epoch=2, workers=2)
    full = epoch_ids(must_ds.Loader(demo, demo_tasks, **opts))
    for stop in [0, 1, 5, len(full) - 1, len(full)]:
        loader = must_ds.Loader(demo, demo_tasks, **opts)
        it = iter(loader)
        head = [ids_of(next(it)) for _ in range(stop)]
        state = loader.state_dict()
        state = json.loads(json.dumps(state))  # plain values
        del it, loader
        resumed = must_ds.Loader(demo, demo_tasks, **opts, state=state)
        rest = epoch_ids(resumed)
        if stop == len(full):
            # Saved at the end of an epoch: the next iteration is the next epoch.
            assert state["epoch"] == 3
            assert rest == epoch_ids(must_ds.Loader(demo, demo_tasks, **{**opts, "epoch": 3}))
        else:
            assert head + rest == full, stop
    # load_state_dict on a running loader, as torchdata's StatefulDataLoader.
    loader = must_ds.Loader(demo, demo_tasks, **opts)
    it = iter(loader)
    next(it), next(it)
    sd = loader.state_dict()
    other = must_ds.Loader(demo, demo_tasks, **opts)
    next(iter(other))
    other.load_state_dict(sd)
    assert epoch_ids(other) == full[2:]
    # The state is torch.save-able, and the dataset version stays fixed.
    assert {"version", "seed", "epoch", "plan", "segments"} <= set(sd)


def test_resume_with_another_world_size_loses_and_repeats_nothing(demo, demo_tasks):
    opts = dict(batch_size=4, size=48, seed=1, workers=1, balance="pad")
    seen, state = [], None
    for r in range(4):
        loader = must_ds.Loader(demo, demo_tasks, rank=r, world_size=4, **opts)
        it = iter(loader)
        for _ in range(2):
            seen += ids_of(next(it))
        state = loader.state_dict()
    assert state["segments"] == [{"world_size": 4, "batches": 2}]
    for r in range(3):
        loader = must_ds.Loader(demo, demo_tasks, rank=r, world_size=3, state=state, **opts)
        for b in loader:
            seen += ids_of(b)
    assert len(seen) == len(set(seen)), "no sample twice"
    assert len(seen) == sum(s["rows"] for s in must_ds.Dataset(demo).shards), "no sample lost"


def test_ranks_get_equal_batch_counts(demo, demo_tasks):
    for balance in ["drop", "pad"]:
        counts = []
        for r in range(3):
            loader = must_ds.Loader(demo, demo_tasks, batch_size=7, size=32, rank=r, world_size=3,
                                    workers=1, balance=balance)
            counts.append((len(loader), sum(1 for _ in loader)))
        assert len(set(counts)) == 1, (balance, counts)
        assert counts[0][0] == counts[0][1] > 0


def test_rank_and_world_size_come_from_the_environment(demo, demo_tasks, monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    loader = must_ds.Loader(demo, demo_tasks, batch_size=8, size=32, workers=1)
    assert (loader.rank, loader.world_size) == (2, 3)
    explicit = must_ds.Loader(demo, demo_tasks, batch_size=8, size=32, workers=1, rank=2, world_size=3)
    assert epoch_ids(loader) == epoch_ids(explicit)


def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def test_memory_stays_flat_over_ten_epochs(demo, demo_tasks):
    loader = must_ds.Loader(demo, demo_tasks, batch_size=8, size=96, workers=2)
    after = []
    for epoch in range(10):
        for b in loader:
            x = b["images"].float().mean()  # the trainer's use of it
        del b, x
        gc.collect()
        after.append(rss())
    growth = after[-1] - after[1]
    assert growth < 24 << 20, f"RSS grew by {growth >> 20} MiB from epoch 2 to 10: {[a >> 20 for a in after]}"


def test_bad_data_raises_with_file_row_group_and_image_id(tmp_path, must_bin):
    photos = tmp_path / "photos"
    photos.mkdir()
    good = (REPO / "data/photos/chelsea.jpg").read_bytes()
    (photos / "a.jpg").write_bytes(good)
    (photos / "b.jpg").write_bytes(good[: len(good) * 2 // 5])  # header intact, data cut
    root = tmp_path / "ds"
    run([must_bin, "init", root, "--name", "bad"])
    run([must_bin, "ingest", root, "--from", photos, "--source", "web"])
    ds = must_ds.Dataset(root)
    ds.define_task({"name": "cls", "kind": "classification", "num_classes": 3, "teacher": {"name": "t"}})
    loader = must_ds.Loader(root, ["cls"], batch_size=2, size=32, workers=1, augment=False)
    with pytest.raises(must_ds.CorruptDataError) as e:
        list(loader)
    err = e.value
    assert err.image_id == "web/b.jpg", err
    assert err.row_group == 0 and err.file.startswith("images/part-"), (err.file, err.row_group)
    assert "web/b.jpg" in str(err)
    skipping = must_ds.Loader(root, ["cls"], batch_size=2, size=32, workers=1, on_corrupt="skip")
    batches = list(skipping)
    assert sum(len(ids_of(b)) for b in batches) == 1
    assert [s["image_id"] for s in skipping.skipped()] == ["web/b.jpg"]
    # Options are checked by name and type.
    with pytest.raises(TypeError, match="unexpected option"):
        must_ds.Loader(root, ["cls"], batch_sise=2)
    with pytest.raises(TypeError, match="on_corrupt"):
        must_ds.Loader(root, ["cls"], on_corrupt="ignore")
    with pytest.raises(must_ds.NotFoundError, match="nope"):
        must_ds.Loader(root, ["nope"])
    with pytest.raises(must_ds.NotFoundError):
        must_ds.Loader(tmp_path / "nothing-here", ["cls"])


def test_numpy_arrays_without_torch(demo, demo_tasks):
    code = f"""
import sys
sys.modules["torch"] = None  # as if torch were not installed
import numpy as np, must_ds
b = next(iter(must_ds.Loader({demo!r}, {demo_tasks!r}, batch_size=4, size=32, workers=1)))
print(type(b["images"]).__name__, b["images"].dtype, b["padding"].dtype, b["images"].shape)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["ndarray", "uint8", "bool", "(4,", "3,", "32,", "32)"], out


def test_to_device_widens_as_the_rust_conversion(demo, demo_tasks):
    b = next(iter(must_ds.Loader(demo, demo_tasks, batch_size=4, size=64, workers=1)))
    d = must_ds.to_device(b, "cpu", normalize="imagenet")
    kinds = must_ds.Dataset(demo).tasks
    for t, task in kinds.items():
        if task["kind"] == "segmentation":
            assert d[f"{t}.mask"].dtype == torch.int64
            assert torch.equal(d[f"{t}.mask"], b[f"{t}.mask"].to(torch.int64))
        if task["kind"] == "depth":
            raw = b[f"{t}.depth"]
            assert d[f"{t}.depth"].dtype == torch.float32
            assert torch.equal(d[f"{t}.valid"], torch.isfinite(raw))
            assert torch.equal(d[f"{t}.depth"][d[f"{t}.valid"]], raw[torch.isfinite(raw)].float())
            assert (d[f"{t}.depth"][~d[f"{t}.valid"]] == 0).all()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(d["images"], (b["images"].float() / 255 - mean) / std)
    if torch.cuda.is_available():
        g = must_ds.to_device(b, "cuda", normalize="imagenet")
        torch.cuda.synchronize()
        assert g["images"].is_cuda and torch.allclose(g["images"].cpu(), d["images"], atol=1e-6)


def test_stateful_protocol_of_torchdata(demo, demo_tasks):
    sdl = pytest.importorskip("torchdata.stateful_dataloader", reason="torchdata is not installed")
    loader = must_ds.Loader(demo, demo_tasks, batch_size=8, size=32, workers=1)
    assert isinstance(loader, sdl.Stateful)
