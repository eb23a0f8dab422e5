#!/usr/bin/env python3
"""A teacher that lives in Python: runs a PyTorch classification model over
every image shard of a must-ds dataset that has no labels for the task yet,
writes each shard's aligned label file with the reference writer
(label_writer.py, pyarrow only) and hands it to `must-ds add-labels`.

The model is any torchvision architecture with random weights (nothing is
downloaded); put your own model in `make_model`. Preprocessing follows the
task's teacher params as `must-ds label` does (input_size, mean, std,
temperature, top_k; stretch resize).

    must-ds task define corpus --name py-cls --kind classification --num-classes 10 --teacher resnet18
    python3 tools/python_teacher.py corpus --task py-cls [--arch resnet18] [--must must-ds]
"""
import argparse
import io
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pyarrow.parquet as pq
import torch
import torchvision
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from label_writer import read_log, read_shard_layout, write_labels  # noqa: E402


def make_model(arch, num_classes):
    torch.manual_seed(0)
    return getattr(torchvision.models, arch)(weights=None, num_classes=num_classes).eval()


def preprocess(jpeg, size, mean, std):
    img = Image.open(io.BytesIO(jpeg)).convert("RGB").resize((size, size), Image.BILINEAR)
    x = np.asarray(img, np.float32) / 255.0
    return torch.from_numpy(((x - mean) / std).transpose(2, 0, 1).copy())


def to_label(task, probs, top_k):
    if task.get("encoding") == "dense":
        return {"probs": probs.tolist()}
    order = np.argsort(-probs, kind="stable")[:top_k]
    return {"classes": [int(c) for c in order], "probs": [float(probs[c]) for c in order]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root")
    ap.add_argument("--task", required=True)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--must", default="must-ds", help="the must-ds command")
    a = ap.parse_args()
    tasks, images, labels = read_log(a.root)
    task = tasks[a.task]
    if task["kind"] != "classification":
        sys.exit(f"this example labels classification tasks; {a.task} is {task['kind']}")
    teacher = task.get("teacher")
    params = teacher.get("params", {}) if isinstance(teacher, dict) else {}
    size = int(params.get("input_size", 224))
    mean = np.array(params.get("mean", [0.485, 0.456, 0.406]), np.float32)
    std = np.array(params.get("std", [0.229, 0.224, 0.225]), np.float32)
    temperature, top_k = float(params.get("temperature", 1.0)), int(params.get("top_k", 5))
    model = make_model(a.arch, task["num_classes"])
    done = []
    for shard in sorted(images):
        if (a.task, shard) in labels:
            continue
        path = os.path.join(a.root, images[shard]["path"])
        ids, groups = read_shard_layout(path)
        jpegs = pq.read_table(path, columns=["image"]).column("image").to_pylist()
        out = []
        with torch.no_grad():
            for i in range(0, len(jpegs), a.batch):
                x = torch.stack([preprocess(j, size, mean, std) for j in jpegs[i:i + a.batch]])
                probs = torch.softmax(model(x) / temperature, 1).numpy()
                out += [to_label(task, p, top_k) for p in probs]
        with tempfile.TemporaryDirectory() as tmp:
            f = os.path.join(tmp, f"{a.task}-{shard}.parquet")
            write_labels(task, ids, groups, out, f)
            subprocess.run([a.must, "add-labels", a.root, "--task", a.task, "--shard", str(shard), f], check=True, stdout=subprocess.DEVNULL)
        done.append(shard)
    print(json.dumps({"task": a.task, "labeled_shards": done}))


if __name__ == "__main__":
    main()
