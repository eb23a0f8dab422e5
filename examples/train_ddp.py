#!/usr/bin/env python3
"""Trains the multi-task student of examples/train_student.py with
DistributedDataParallel, one process per device, launched by torchrun:

    must-ds demo must-demo
    torchrun --nproc_per_node 2 examples/train_ddp.py must-demo 200
    torchrun --nproc_per_node 3 examples/train_ddp.py must-demo 400 --resume ddp-ckpt.pt

* torch.distributed is initialised from torchrun's environment (`env://`):
  NCCL when CUDA is there (each process on the GPU of its LOCAL_RANK), else
  gloo on the CPU; `--backend` overrides.
* `must_ds.Loader` is built without `rank` or `world_size`: it takes them
  from torch.distributed, so each rank reads its own share of every epoch
  (disjoint samples, the same number of batches on every rank, as DDP
  needs). `balance="pad"` (the default here, `--balance drop` otherwise)
  gives every rank as many batches as the largest share, with padding
  slots that hold no sample: they are absent for every task, so the losses,
  masked by `<task>.present` (and `.valid`, `ignore_index`), skip them.
* Every `--save-every` steps and at the end, rank 0 saves the model, the
  optimizer, the step and `loader.state_dict()` to `--save` (torch.save,
  written to a temporary file and renamed). The loader's state is the same
  on every rank at a step boundary. `--resume FILE` restores them all and
  goes on from that step, with any number of processes: the loader resumes
  in the middle of the epoch, with the rest of the epoch split between the
  new ranks, nothing repeated and nothing lost.

The student and its losses are imported from examples/train_student.py
(next to this file); images come as u8 at 128x128 (`--size`), masks and
depth at the feature map's resolution (label_stride 8).
"""
import argparse
import gc
import importlib.util
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import must_ds


def _train_student():
    """examples/train_student.py as a module (Student, losses, SIZE, STRIDE)."""
    path = Path(__file__).resolve().with_name("train_student.py")
    spec = importlib.util.spec_from_file_location("train_student", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ts = _train_student()


def parse():
    intro, _, rest = __doc__.partition("\n\n")
    p = argparse.ArgumentParser(description=intro, epilog=rest,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="the dataset (a folder or an s3://, gs://, az:// URL)")
    p.add_argument("steps", nargs="?", type=int, default=100, help="total optimizer steps (default 100)")
    p.add_argument("--resume", metavar="FILE", help="a checkpoint saved by this script")
    p.add_argument("--save", metavar="FILE", default="ddp-ckpt.pt", help="checkpoint file (default ddp-ckpt.pt)")
    p.add_argument("--save-every", type=int, default=50, metavar="N", help="save every N steps (0: only at the end)")
    p.add_argument("--batch-size", type=int, default=16, help="per rank (default 16)")
    p.add_argument("--size", type=int, default=ts.SIZE, help=f"input side (default {ts.SIZE})")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=1, help="the loader's shuffle seed")
    p.add_argument("--workers", type=int, default=None, help="loader decode workers per rank")
    p.add_argument("--balance", choices=["pad", "drop"], default="pad")
    p.add_argument("--backend", choices=["nccl", "gloo"], default=None,
                   help="default: nccl with CUDA, else gloo")
    p.add_argument("--report-every", type=int, default=10)
    a = p.parse_args()
    if a.steps < 1:
        p.error("STEPS must be at least 1")
    return a


def save(path, state):
    """torch.save through a temporary file, so a crash never leaves half a checkpoint."""
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)


def main():
    a = parse()
    if "RANK" not in os.environ:
        sys.exit("train_ddp.py: run me with torchrun, e.g. `torchrun --nproc_per_node 2 "
                 "examples/train_ddp.py must-demo 200` (one process per device)")
    cuda = torch.cuda.is_available()
    backend = a.backend or ("nccl" if cuda else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        train(a, rank, world, device, cuda)
        gc.collect()  # DDP's reducer and its hooks (cycles) go before the process group
        dist.barrier()
    finally:
        dist.destroy_process_group()


def train(a, rank, world, device, cuda):
    tasks = dict(sorted(must_ds.Dataset(a.root).tasks.items()))
    ckpt = torch.load(a.resume, map_location="cpu", weights_only=False) if a.resume else None
    # The same version on every rank: the checkpoint's, else rank 0's newest.
    version = [ckpt["loader"]["version"] if ckpt else must_ds.Dataset(a.root).version]
    dist.broadcast_object_list(version, src=0)

    torch.manual_seed(0)  # the same initial weights on every rank (DDP broadcasts rank 0's anyway)
    model = ts.Student(tasks).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    step = 0
    if ckpt:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step = int(ckpt["step"])
    ddp = DDP(model, device_ids=[device.index] if cuda else None)

    # No rank or world_size: the loader reads them from torch.distributed.
    loader = must_ds.Loader(a.root, list(tasks), batch_size=a.batch_size, size=a.size, seed=a.seed,
                            label_stride=ts.STRIDE, image_output="u8", balance=a.balance,
                            workers=a.workers, version=version[0],
                            state=ckpt["loader"] if ckpt else None)
    assert (loader.rank, loader.world_size) == (rank, world), (loader.rank, loader.world_size)
    if rank == 0:
        where = f", resumed at step {step} from {a.resume}" if ckpt else ""
        print(f"{world} ranks ({dist.get_backend()}, {device.type}), {len(tasks)} tasks, dataset version "
              f"{version[0]}, {len(loader)} batches of {a.batch_size} per rank and epoch{where}", flush=True)

    def checkpoint():
        state = loader.state_dict()  # every rank's is the same at a step boundary
        if rank == 0:
            save(a.save, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                          "loader": state, "world_size": world})
            print(f"step {step}: saved {a.save} (epoch {state['epoch']})", flush=True)
        dist.barrier()

    t0, first = time.perf_counter(), step
    while step < a.steps:
        batches = 0
        for batch in loader:  # one epoch (or the rest of a resumed one)
            batches += 1
            t = must_ds.to_device(batch, device, normalize="imagenet")
            del batch
            parts = ts.losses(ddp, t, tasks)
            total = sum(parts.values())
            opt.zero_grad(set_to_none=True)
            total.backward()  # DDP averages the gradients over the ranks
            opt.step()
            step += 1
            if step % a.report_every == 0 or step == a.steps:
                mean = total.detach().clone()
                dist.all_reduce(mean)
                if rank == 0:
                    print(f"step {step:5}  loss {mean.item() / world:.3f} (mean over ranks)", flush=True)
            if a.save_every and step % a.save_every == 0 and step < a.steps:
                checkpoint()
            if step >= a.steps:
                break
        if batches == 0 and step < a.steps:
            sys.exit(f"rank {rank}: the loader gave no batch (fewer images than ranks x batch size?)")
    checkpoint()
    if rank == 0:
        print(f"{step - first} steps in {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
