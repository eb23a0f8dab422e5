#!/usr/bin/env python3
"""A real offline teacher: labels the faces in a must-ds dataset as a
detection task with MTCNN (facenet-pytorch), through the must_ds package.

It defines the task (1 class, "face"; a no-op when the same definition is
there), then for every image shard that has no labels for it yet reads each
row group, decodes the images with Pillow, runs MTCNN, and writes per image
the faces scored at least --min-prob: boxes x0, y0, x1, y1 in pixels of the
stored image (clipped to it; boxes empty after clipping are dropped),
class 0, score = MTCNN's probability. An image without a face (or smaller than
MTCNN's min_face_size, 20 px, on its shorter side) gets an empty list, so it
counts as labeled; one that is not embedded (a `uri` row), does not decode,
or does not decode to its recorded size is left unlabeled (null row). Each shard is committed with add_labels, so an
interrupted run resumes where it stopped. Prints a JSON summary.

MTCNN's weights (pnet.pt, rnet.pt, onet.pt) ship inside the facenet-pytorch
wheel: nothing is downloaded. Its metadata pins torch<2.3, numpy<2 and
Pillow<10.3, but 2.6.0 runs unchanged with torch 2.11 / torchvision 0.26,
numpy 2 and Pillow 13; install it without its pins, plus tqdm, which its
package __init__ imports (only InceptionResnetV1's download uses it):

    python3 -m pip install --no-deps facenet-pytorch==2.6.0 tqdm

    python3 examples/face_teacher.py ROOT [--task faces] [--min-prob 0.9] [--device cpu|cuda]
    must-ds render ROOT --task faces --grid 16 --out faces.png
    must-ds render ROOT --task faces --image-id demo/astronaut_000.jpg --out face.png
    must-ds inspect ROOT --stats --task faces

A different --min-prob is a different task definition: give it another --task.
"""
import argparse
import io
import json
import sys
import time

import numpy as np
import torch
from PIL import Image

import must_ds

try:
    from facenet_pytorch import MTCNN
except ImportError as e:  # tqdm, most often: see the install line above
    sys.exit(f"face_teacher: cannot import facenet_pytorch ({e}); "
             "install: python3 -m pip install --no-deps facenet-pytorch==2.6.0 tqdm")

# MTCNN's own defaults, recorded in the task so the labels say how they were made.
MIN_FACE_SIZE, THRESHOLDS, FACTOR = 20, [0.6, 0.7, 0.7], 0.709
BATCH = 16  # images of one size per MTCNN call (it batches equal sizes only)


def task_definition(name, min_prob):
    return {
        "name": name,
        "kind": "detection",
        "num_classes": 1,
        "class_names": ["face"],
        "min_score_written": min_prob,
        "teacher": {
            "name": "mtcnn",
            "params": {"package": "facenet-pytorch==2.6.0", "min_prob": min_prob,
                       "min_face_size": MIN_FACE_SIZE, "thresholds": THRESHOLDS, "factor": FACTOR},
        },
    }


def faces(boxes, probs, width, height, min_prob):
    """MTCNN's output for one image (None when no face) -> clipped (N,4), (N,)."""
    if boxes is None:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    b = np.asarray(boxes, np.float32).reshape(-1, 4)  # MTCNN returns object arrays
    p = np.asarray(probs, np.float32).reshape(-1)
    b[:, 0::2] = b[:, 0::2].clip(0, width)
    b[:, 1::2] = b[:, 1::2].clip(0, height)
    # compared in f64, so that no written f32 score falls below min_score_written
    keep = (p.astype(np.float64) >= min_prob) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return b[keep], p[keep]


def label_row_group(mtcnn, rb, writer, min_prob):
    """Detects and sets the faces of one row group; returns counts for the summary."""
    cols = rb.to_pydict()
    by_size, bad = {}, 0
    for image_id, data, uri, w, h in zip(cols["image_id"], cols["image"], cols["uri"], cols["width"], cols["height"]):
        if data is None:
            print(f"face_teacher: {image_id}: not embedded (uri {uri}); left unlabeled", file=sys.stderr)
            bad += 1
            continue
        try:
            img = Image.open(io.BytesIO(data)).convert("RGB")
        except Exception as e:  # noqa: BLE001 - any decoder error leaves the row unlabeled
            print(f"face_teacher: {image_id}: not decoded ({e}); left unlabeled", file=sys.stderr)
            bad += 1
            continue
        if img.size != (w, h):
            print(f"face_teacher: {image_id}: decodes to {img.size}, recorded {w}x{h}; left unlabeled",
                  file=sys.stderr)
            bad += 1
            continue
        by_size.setdefault(img.size, []).append((image_id, img))
    n = {"images": 0, "images_with_faces": 0, "faces": 0, "undecodable": bad}
    for (w, h), items in by_size.items():
        if min(w, h) < MIN_FACE_SIZE:
            # No face of MIN_FACE_SIZE fits, and MTCNN's scale pyramid is empty
            # (detect raises on such an image): labeled "no face" without it.
            for image_id, _ in items:
                writer.set(image_id, boxes=np.zeros((0, 4), np.float32), classes=np.zeros(0, np.int64),
                           scores=np.zeros(0, np.float32))
            n["images"] += len(items)
            continue
        for i in range(0, len(items), BATCH):
            chunk = items[i:i + BATCH]
            with torch.no_grad():
                boxes, probs = mtcnn.detect([img for _, img in chunk])
            for (image_id, _), bx, pr in zip(chunk, boxes, probs):
                b, p = faces(bx, pr, w, h, min_prob)
                writer.set(image_id, boxes=b, classes=np.zeros(len(p), np.int64), scores=p)
                n["images"] += 1
                n["images_with_faces"] += len(p) > 0
                n["faces"] += len(p)
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root")
    ap.add_argument("--task", default="faces")
    ap.add_argument("--min-prob", type=float, default=0.9)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    a = ap.parse_args()
    device = a.device
    if device == "cuda" and not torch.cuda.is_available():
        print("face_teacher: CUDA is not available; running on the CPU", file=sys.stderr)
        device = "cpu"

    start = time.time()
    ds = must_ds.Dataset(a.root)
    ds.define_task(task_definition(a.task, a.min_prob))
    mtcnn = MTCNN(keep_all=True, device=device, min_face_size=MIN_FACE_SIZE,
                  thresholds=THRESHOLDS, factor=FACTOR)
    done = ds.labeled(a.task)
    summary = {"task": a.task, "device": device, "shards_labeled": [], "shards_skipped": [],
               "images": 0, "images_with_faces": 0, "faces": 0, "undecodable": 0}
    for shard in ds.shards:
        k = shard["shard"]
        if k in done:
            summary["shards_skipped"].append(k)
            continue
        writer = ds.label_writer(a.task, k)
        for g in range(len(shard["row_groups"])):  # row_groups: rows per row group
            rb = ds.read_row_group(k, g, tasks=[])
            for key, v in label_row_group(mtcnn, rb, writer, a.min_prob).items():
                summary[key] += v
        summary["last_commit"] = ds.add_labels(a.task, k, writer)
        summary["shards_labeled"].append(k)
        print(f"face_teacher: shard {k} labeled ({shard['rows']} rows)", file=sys.stderr)
    summary["version"] = ds.version
    summary["seconds"] = round(time.time() - start, 1)
    print(json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
