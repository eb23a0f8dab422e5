#!/usr/bin/env python3
"""A teacher that lives in Python: runs a PyTorch classification model over
every image shard of a must-ds dataset that has no labels for the task yet,
and writes each shard's labels with the checked writer of the must_ds
package (`Dataset.label_writer`, every value checked against the task as the
Rust writer checks it), committing them with `Dataset.add_labels`, one
commit per shard, so that an interrupted run resumes where it stopped.

Images are read row group by row group through `Dataset.read_row_group`, so
the dataset may be a local folder or an object store URL (s3://, gs://,
az://; credentials from the environment). Only embedded images are read: a
row that references its image by `uri` stops the run, naming it.

The model is any torchvision architecture with random weights (nothing is
downloaded); put your own model in `make_model`. Preprocessing follows the
task's teacher params as `must-ds label` does (input_size, mean, std,
temperature, top_k; stretch resize). Prints {"task": ..., "labeled_shards": [...]}.

    must-ds task define corpus --name py-cls --kind classification --num-classes 10 --teacher resnet18
    python3 tools/reference/python_teacher.py corpus --task py-cls [--arch resnet18] [--batch 16]

`--must` (the must-ds command) is still accepted for older callers and
ignored: nothing here runs the must-ds binary any more. For the same labels
written by an independent implementation of the format (pyarrow only) and
handed to `must-ds add-labels`, see tools/reference/label_writer.py.
"""
import argparse
import io
import json
import sys

import numpy as np
import torch
import torchvision
from PIL import Image

import must_ds


def make_model(arch, num_classes):
    torch.manual_seed(0)
    return getattr(torchvision.models, arch)(weights=None, num_classes=num_classes).eval()


def preprocess(jpeg, size, mean, std):
    img = Image.open(io.BytesIO(jpeg)).convert("RGB").resize((size, size), Image.BILINEAR)
    x = np.asarray(img, np.float32) / 255.0
    return torch.from_numpy(((x - mean) / std).transpose(2, 0, 1).copy())


def to_label(task, probs, top_k):
    """Fields for LabelWriter.set: all C probabilities for a dense task, else
    the top_k classes by probability (descending, ties by class) and theirs."""
    if task.get("encoding") == "dense":
        return {"probs": probs}
    order = np.argsort(-probs, kind="stable")[:top_k]
    return {"classes": order.astype(np.int64), "probs": probs[order]}


def images(ds, shard):
    """(image_id, encoded image) of every row of an image shard, in order,
    one row group in memory at a time."""
    for g in range(len(shard["row_groups"])):  # row_groups: rows per row group
        cols = ds.read_row_group(shard["shard"], g).to_pydict()
        for image_id, data, uri in zip(cols["image_id"], cols["image"], cols["uri"]):
            if data is None:
                sys.exit(f"python_teacher: {image_id} (shard {shard['shard']}) is not embedded "
                         f"(uri {uri}); this example reads embedded images only")
            yield image_id, data


def batches(items, n):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", help="the dataset: a folder or an s3://, gs://, az:// URL")
    ap.add_argument("--task", required=True)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--must", default=None, help="ignored (kept for older callers; labels are committed "
                    "through the must_ds package, not the must-ds command)")
    a = ap.parse_args()
    ds = must_ds.Dataset(a.root)
    tasks = ds.tasks
    if a.task not in tasks:
        sys.exit(f"python_teacher: no task {a.task!r} in {ds.url} (tasks: {', '.join(sorted(tasks)) or 'none'})")
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
    labeled = ds.labeled(a.task)
    done = []
    for shard in sorted(ds.shards, key=lambda s: s["shard"]):
        k = shard["shard"]
        if k in labeled:
            continue
        writer = ds.label_writer(a.task, k)
        with torch.no_grad():
            for batch in batches(images(ds, shard), a.batch):
                x = torch.stack([preprocess(j, size, mean, std) for _, j in batch])
                probs = torch.softmax(model(x) / temperature, 1).numpy()
                for (image_id, _), p in zip(batch, probs):
                    writer.set(image_id, **to_label(task, p, top_k))
        ds.add_labels(a.task, k, writer)
        done.append(k)
    print(json.dumps({"task": a.task, "labeled_shards": done}))


if __name__ == "__main__":
    main()
