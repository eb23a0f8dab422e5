"""must_ds.Loader under a real torchrun (`python -m torch.distributed.run
--standalone`, CPU, gloo): rank and world size come from torch.distributed
(RANK and WORLD_SIZE are removed from the environment once the process
group is up), the ranks of a run read disjoint samples, and a state saved by
rank 0 of a 4-process run, resumed by a 3-process run, finishes the epoch
with every image exactly once. Then examples/train_ddp.py trains a few
steps with 2 processes, saves its checkpoint and resumes from it.
"""
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import must_ds
from conftest import REPO

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():  # pragma: no cover
    pytest.skip("torch.distributed is not available", allow_module_level=True)

TIMEOUT = 180
BATCH = 4

# One rank: iterates the loader, writes the ids it saw (padding left out);
# in the first run, rank 0 also writes the loader's state after STEPS batches.
RANK_SCRIPT = r'''
import json, os, sys
import torch.distributed as dist
import must_ds

root, out, phase, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
dist.init_process_group("gloo")
for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
    os.environ.pop(k, None)  # the loader must take them from torch.distributed
rank, world = dist.get_rank(), dist.get_world_size()
tasks = sorted(must_ds.Dataset(root).tasks)
state = None
if phase == "resume":
    with open(os.path.join(out, "state.json")) as f:
        state = json.load(f)
loader = must_ds.Loader(root, tasks, batch_size=%(batch)d, size=32, seed=5, workers=1, balance="pad", state=state)
seen, batches, planned = [], 0, len(loader)
for b in loader:
    seen += [i for i, p in zip(b["image_ids"], b["padding"].tolist()) if not p]
    batches += 1
    if phase == "first" and batches == steps:
        state = loader.state_dict()  # at a step boundary
        if rank == 0:
            with open(os.path.join(out, "state.json"), "w") as f:
                json.dump(state, f)
        break
with open(os.path.join(out, f"{phase}-{rank}.json"), "w") as f:
    json.dump({"rank": loader.rank, "world_size": loader.world_size, "batches": batches,
               "len": planned, "seen": seen}, f)
dist.barrier()
dist.destroy_process_group()
''' % {"batch": BATCH}


def torchrun(nproc, *args, cwd=None):
    env = dict(os.environ)
    # The workers import must_ds from where this process does.
    pkg = str(Path(must_ds.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([pkg] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           *map(str, args)]
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0, f"{cmd} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-6000:]}"
    return p.stdout


def test_resume_from_4_to_3_processes_sees_every_image_once(demo, tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(RANK_SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    ds = must_ds.Dataset(demo)
    every = set()
    for s in ds.shards:
        for g in range(len(s["row_groups"])):
            every.update(ds.read_row_group(s["shard"], g).column("image_id").to_pylist())
    assert len(every) == sum(s["rows"] for s in ds.shards) > 4 * 2 * BATCH

    steps = 2
    torchrun(4, script, demo, out, "first", steps)
    state = json.loads((out / "state.json").read_text())
    assert state["segments"] == [{"world_size": 4, "batches": steps}], state
    first = [json.loads((out / f"first-{r}.json").read_text()) for r in range(4)]
    torchrun(3, script, demo, out, "resume", 0)
    second = [json.loads((out / f"resume-{r}.json").read_text()) for r in range(3)]

    for run, world in ((first, 4), (second, 3)):
        assert [(r["rank"], r["world_size"]) for r in run] == [(i, world) for i in range(world)]
        sets = [set(r["seen"]) for r in run]
        for i in range(world):
            assert len(sets[i]) == len(run[i]["seen"]), f"rank {i} saw a sample twice"
            for j in range(i):
                assert not sets[i] & sets[j], f"ranks {j} and {i} of a {world}-process run share samples"
    # Every rank of a run as many batches (what DDP needs). The loader hands
    # out whole row groups (32, 32, 32 and 2 rows in the demo): the rank
    # holding the small one gets padding slots ("pad").
    assert all(r["batches"] == steps and len(r["seen"]) <= steps * BATCH for r in first)
    assert sum(len(r["seen"]) for r in first) > (4 - 1) * steps * BATCH - BATCH
    assert len({r["batches"] for r in second}) == 1 and second[0]["batches"] == second[0]["len"] > 0
    counts = Counter(i for r in first + second for i in r["seen"])
    repeated = sorted(i for i, n in counts.items() if n > 1)
    assert not repeated, f"seen twice: {repeated[:5]}"
    assert set(counts) == every, f"lost: {sorted(every - set(counts))[:5]}"


def test_train_ddp_example_runs_saves_and_resumes(demo, tmp_path):
    example = REPO / "examples" / "train_ddp.py"
    ckpt = tmp_path / "ckpt.pt"
    common = ["--save", ckpt, "--size", "64", "--batch-size", "8", "--workers", "1", "--report-every", "1"]
    out = torchrun(2, example, demo, 4, "--save-every", 2, *common)
    assert "2 ranks (gloo, cpu)" in out and "step     4  loss" in out, out
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert saved["step"] == 4 and saved["world_size"] == 2
    assert saved["loader"]["segments"] == [{"world_size": 2, "batches": 4}], saved["loader"]
    out = torchrun(2, example, demo, 6, "--resume", ckpt, *common)
    assert "resumed at step 4" in out and "step     6  loss" in out and "step     5  loss" in out, out
    assert "step     4  loss" not in out
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["step"] == 6
