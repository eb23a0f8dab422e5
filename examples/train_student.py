#!/usr/bin/env python3
"""Trains a small multi-task student on a must-ds dataset with PyTorch, the
twin of examples/train_student.rs: one shared convolutional backbone, one
1x1 head per task (classification, detection, segmentation, depth),
per-task losses masked by `<task>.present`, fed by `must_ds.Loader`. It
prints the losses as they fall.

A control run then trains the same student from the same weights on the
same batches with each sample's labels taken from the next sample in its
batch, so that only label priors can be learned. It exits with 1 unless the
loss fell by at least 40 % (mean of the last tenth of the steps against the
first tenth) and the control ended with summed task losses over the last
quarter at least 1.5 times the real run's (misaligned labels would make the
two runs alike). CUDA is used when it is there, else the CPU.

    must-ds demo must-demo
    python3 examples/train_student.py must-demo 300 [--device cpu|cuda] [--threads N]

One process, one device: torchrun is not needed. Images come as u8 at
128x128 in batches of 16 and are normalized on the device; masks and depth
come at the feature map's resolution (label_stride 8).
"""
import argparse
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import must_ds

SIZE = 128
STRIDE = 8
FALL = 0.6  # the mean loss of the last tenth must be at most this share of the first tenth's
CONTROL = 1.5  # the control's summed task losses over the last quarter, at least this many times the real run's


def head_outputs(task):
    return 1 if task["kind"] == "depth" else int(task["num_classes"])


class Student(nn.Module):
    def __init__(self, tasks):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(64, 96, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(96, 96, 3, 1, 1), nn.ReLU(),
        )
        self.heads = nn.ModuleDict({name: nn.Conv2d(96, head_outputs(t), 1) for name, t in tasks.items()})

    def forward(self, x):
        feat = self.backbone(x)  # B x 96 x H/8 x W/8
        return {name: head(feat) for name, head in self.heads.items()}


def centre_heatmap(t, task, classes, g):
    """Box centres as a per-class heatmap at stride 8, (B, classes, g, g)."""
    boxes, cls, valid = t[f"{task}.boxes"], t[f"{task}.classes"], t[f"{task}.valid"]
    b, n = cls.shape
    heat = torch.zeros(b, classes, g, g, device=boxes.device)
    cx = ((boxes[..., 0] + boxes[..., 2]) / 2).long().div(STRIDE, rounding_mode="floor").clamp(0, g - 1)
    cy = ((boxes[..., 1] + boxes[..., 3]) / 2).long().div(STRIDE, rounding_mode="floor").clamp(0, g - 1)
    i = torch.arange(b, device=boxes.device).unsqueeze(1).expand(b, n)
    heat[i[valid], cls[valid], cy[valid], cx[valid]] = 1.0
    return heat


def losses(model, t, tasks, perm=None):
    """Per-task losses of a batch, each averaged over the samples that have the task."""
    out = model(t["images"])
    if perm is not None:  # the control run: sample i is scored against the labels of sample perm[i]
        t = {k: (v[perm] if isinstance(v, torch.Tensor) and k != "images" else v) for k, v in t.items()}
    result = {}
    for name, task in tasks.items():
        present = t[f"{name}.present"].float()
        n = present.sum().clamp_min(1.0)
        y, kind = out[name], task["kind"]
        if kind == "classification":  # soft cross-entropy against the teacher's probabilities
            ce = -(t[f"{name}.probs"] * y.mean(dim=(2, 3)).log_softmax(1)).sum(1)
            loss = (ce * present).sum() / n
        elif kind == "detection":
            target = centre_heatmap(t, name, int(task["num_classes"]), y.shape[-1])
            bce = F.binary_cross_entropy_with_logits(y, target, reduction="none")
            loss = (bce.mean(dim=(1, 2, 3)) * present).sum() / n
        elif kind == "segmentation":
            # Masks come at the feature map's resolution; absent samples are all ignore_index.
            mask, ignore = t[f"{name}.mask"], int(task["ignore_index"])
            labeled = (mask != ignore).sum().float().clamp_min(1.0)
            loss = F.cross_entropy(y, mask, ignore_index=ignore, reduction="sum") / labeled
        elif kind == "depth":
            valid = t[f"{name}.valid"].float()
            loss = ((y - t[f"{name}.depth"]).abs() * valid).sum() / valid.sum().clamp_min(1.0)
        else:
            raise ValueError(f"task {name}: unknown kind {kind}")
        result[name] = loss
    return result


def endless(loader):
    """Epochs one after the other (each iter(loader) is the next epoch)."""
    while True:
        yield from loader


def train(root, tasks, steps, device, permute, report_every, workers):
    """Trains a fresh student (the same initial weights and batches every run)."""
    torch.manual_seed(0)
    model = Student(tasks).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loader = must_ds.Loader(root, list(tasks), batch_size=16, size=SIZE, seed=1,
                            label_stride=STRIDE, image_output="u8", workers=workers)
    total_hist, task_hist = [], {name: [] for name in tasks}
    t0 = time.perf_counter()
    for step, batch in enumerate(endless(loader)):
        if step >= steps:
            break
        t = must_ds.to_device(batch, device, normalize="imagenet")
        del batch
        bs = t["images"].shape[0]
        perm = (torch.arange(bs, device=device) + 1) % bs if permute else None
        parts = losses(model, t, tasks, perm)
        total = sum(parts.values())
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        values = {k: v.item() for k, v in parts.items()}
        total_hist.append(total.item())
        for k, v in values.items():
            task_hist[k].append(v)
        if step % report_every == 0:
            detail = ", ".join(f"{k} {v:.3f}" for k, v in values.items())
            print(f"step {step:4}  loss {total_hist[-1]:.3f}  ({detail})", flush=True)
        del t
    if len(total_hist) < steps:
        sys.exit(f"error: the loader stopped after {len(total_hist)} steps")
    return total_hist, task_hist, time.perf_counter() - t0


def mean(v):
    return sum(v) / len(v)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", nargs="?", default="must-demo")
    p.add_argument("steps", nargs="?", type=int, default=300)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: the CPU count, at least 1)")
    p.add_argument("--workers", type=int, default=None, help="loader decode workers (default: the loader's)")
    a = p.parse_args()
    if a.steps < 1:
        p.error("STEPS must be at least 1")
    # On the CPU the model gets every core: the loader's decoding of 128x128
    # images is small next to the convolutions and overlaps them.
    torch.set_num_threads(a.threads or max(1, os.cpu_count() or 1))
    device = torch.device(a.device)
    try:
        ds = must_ds.Dataset(a.root)
    except must_ds.MustError as e:
        sys.stderr.write(f"error: {e} (build one with `must-ds demo {a.root}`)\n")
        sys.exit(2)
    tasks = dict(sorted(ds.tasks.items()))
    rows = sum(s["rows"] for s in ds.shards)
    print(f"training a {len(tasks)}-task student on {a.root} ({rows} images) on {device} "
          f"({torch.get_num_threads()} threads)", flush=True)
    total, real, seconds = train(a.root, tasks, a.steps, device, False, 25, a.workers)
    w = max(a.steps // 10, 1)
    first, last = mean(total[:w]), mean(total[-w:])
    print(f"{a.steps} steps in {seconds:.1f} s: mean loss of the first {w} steps {first:.3f}, "
          f"of the last {w} {last:.3f}")
    print("control: the same run with each sample's labels taken from the next sample in its batch")
    _, control, _ = train(a.root, tasks, a.steps, device, True, 50, a.workers)
    q = max(a.steps // 4, 1)  # over the last quarter of the steps: less noise than one batch
    failed = []
    if last > FALL * first:
        failed.append(f"the loss fell by {100 * (1 - last / first):.0f} %, "
                      f"less than the required {100 * (1 - FALL):.0f} %")
    else:
        print(f"the loss fell by {100 * (1 - last / first):.0f} %")
    sum_real = sum_control = 0.0
    for name in tasks:
        r, c = mean(real[name][-q:]), mean(control[name][-q:])
        sum_real, sum_control = sum_real + r, sum_control + c
        print(f"{name}: mean loss of the last {q} steps {r:.3f}, control {c:.3f} ({100 * (c / r - 1):+.0f} %)")
    print(f"all tasks: {sum_real:.3f}, control {sum_control:.3f} ({100 * (sum_control / sum_real - 1):+.0f} %)")
    if sum_control < CONTROL * sum_real:
        failed.append(f"the control with permuted labels ended within {100 * (CONTROL - 1):.0f} % "
                      f"of the real run ({sum_control:.3f} against {sum_real:.3f})")
    for f in failed:
        print(f"FAILED: {f}")
    if failed:
        sys.exit(1)
    print("labels are learned, not only their priors")


if __name__ == "__main__":
    main()
