"""PyTorch DataLoader baselines for the must-ds loader, same output.

Both read a must-ds dataset's Parquet files with pyarrow and yield batches
with the fields of FORMAT.md section 5 (images B×3×H×W u8, top-k densified
class probabilities, padded boxes with classes/scores/valid, segmentation
B×H×W int64 with ignore_index, depth B×1×H×W float32 with valid), with the
same augmentation (random resized crop scale 0.08–1, ratio 3/4–4/3, flip
0.5) applied to image, boxes, masks and depth together.

  plain: what a PyTorch user writes first: a map-style Dataset over tables
         read with pyarrow, Pillow decode, torchvision.transforms.v2 on
         image + BoundingBoxes + Mask.
  tuned: what a performance-minded user writes: an IterableDataset reading
         each row group once per epoch, simplejpeg decode, OpenCV resize.

Usage: python3 tools/bench/baselines.py ROOT {plain,tuned} [--workers 2]
       [--batch-size 32] [--size 384] [--epochs 1]
"""
import argparse
import io
import json
import math
import os
import random
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from label_writer import read_log  # noqa: E402


def densify(task, row):
    c = task["num_classes"]
    out = np.zeros(c, np.float32)
    if task.get("encoding") == "dense":
        out[:] = row["probs"]
        return out
    out[row["classes"]] = row["probs"]
    rest = 1.0 - float(np.sum(row["probs"]))
    if rest > 0 and c > len(row["classes"]) and not task.get("multi_label"):
        mask = np.ones(c, bool)
        mask[row["classes"]] = False
        out[mask] = rest / mask.sum()
    return out


def rrc_params(w, h, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    area = w * h
    for _ in range(10):
        t = area * rng.uniform(*scale)
        ar = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = int(round(math.sqrt(t * ar))), int(round(math.sqrt(t / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            return rng.randint(0, w - cw), rng.randint(0, h - ch), cw, ch
    r = w / h
    if r < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif r > ratio[1]:
        cw, ch = int(round(h * ratio[1])), h
    else:
        cw, ch = w, h
    return (w - cw) // 2, (h - ch) // 2, cw, ch


def collate(samples, tasks, max_boxes=None):
    out = {
        "images": torch.from_numpy(np.stack([s["image"] for s in samples])),
        "image_ids": [s["image_id"] for s in samples],
    }
    b = len(samples)
    for name, t in tasks.items():
        present = torch.tensor([s[name] is not None for s in samples])
        out[name + ".present"] = present
        kind = t["kind"]
        if kind == "classification":
            z = np.zeros(t["num_classes"], np.float32)
            out[name + ".probs"] = torch.from_numpy(np.stack([s[name] if s[name] is not None else z for s in samples]))
        elif kind == "detection":
            n = max([len(s[name][0]) for s in samples if s[name] is not None] + [0])
            boxes = np.zeros((b, n, 4), np.float32)
            classes = np.full((b, n), -1, np.int64)
            scores = np.zeros((b, n), np.float32)
            valid = np.zeros((b, n), bool)
            for i, s in enumerate(samples):
                if s[name] is not None:
                    bx, c, sc = s[name]
                    k = len(bx)
                    boxes[i, :k], classes[i, :k], scores[i, :k], valid[i, :k] = bx, c, sc, True
            out[name + ".boxes"] = torch.from_numpy(boxes)
            out[name + ".classes"] = torch.from_numpy(classes)
            out[name + ".scores"] = torch.from_numpy(scores)
            out[name + ".valid"] = torch.from_numpy(valid)
        elif kind == "segmentation":
            out[name + ".mask"] = torch.from_numpy(np.stack([s[name] for s in samples]))
        else:
            out[name + ".depth"] = torch.from_numpy(np.stack([s[name][0] for s in samples])[:, None])
            out[name + ".valid"] = torch.from_numpy(np.stack([s[name][1] for s in samples])[:, None])
    return out


def label_rows(path, row_group=None):
    f = pq.ParquetFile(path)
    t = f.read() if row_group is None else f.read_row_group(row_group)
    return t.to_pylist()


class Plain(Dataset):
    """Map-style: whole tables read at start, Pillow + torchvision.transforms.v2 per item."""

    def __init__(self, root, size):
        from torchvision.transforms import v2

        self.tasks, images, labels = read_log(root)
        self.rows, self.labels = [], {t: [] for t in self.tasks}
        for shard in sorted(images):
            self.rows += pq.read_table(os.path.join(root, images[shard]["path"])).to_pylist()
            for t in self.tasks:
                l = labels.get((t, shard))
                n = images[shard]["rows"]
                self.labels[t] += label_rows(os.path.join(root, l["path"])) if l else [None] * n
        self.tf = v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()])
        self.size = size

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        from PIL import Image
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import functional as F

        r = self.rows[i]
        img = Image.open(io.BytesIO(r["image"])).convert("RGB")
        w, h = img.size
        inp = {"image": tv_tensors.Image(F.pil_to_tensor(img))}
        for name, t in self.tasks.items():
            row = self.labels[name][i]
            k = t["kind"]
            if row is None or (k == "classification" and row.get("probs") is None):
                continue
            if k == "detection":
                if row["boxes"] is None:
                    continue
                inp[name] = tv_tensors.BoundingBoxes(torch.tensor(row["boxes"], dtype=torch.float32).reshape(-1, 4), format="XYXY", canvas_size=(h, w))
                inp[name + "/meta"] = torch.tensor(row["classes"], dtype=torch.int64), torch.tensor(row["scores"], dtype=torch.float32)
            elif k == "segmentation":
                m = np.frombuffer(row["mask"], np.uint8 if t["dtype"] == "u8" else "<u2").reshape(row["mask_height"], row["mask_width"])
                m = Image.fromarray(m).resize((w, h), Image.NEAREST)
                inp[name] = tv_tensors.Mask(torch.from_numpy(np.asarray(m).astype(np.int64)))
            elif k == "depth":
                d = np.frombuffer(row["depth"], "<f2").reshape(row["depth_height"], row["depth_width"]).astype(np.float32)
                d = Image.fromarray(d).resize((w, h), Image.NEAREST)
                inp[name] = tv_tensors.Mask(torch.from_numpy(np.asarray(d).copy()))
            elif k == "classification":
                inp[name] = densify(t, row)
        out = self.tf(inp)
        s = {"image_id": r["image_id"], "image": out["image"].numpy()}
        for name, t in self.tasks.items():
            k = t["kind"]
            v = out.get(name)
            if v is None:
                s[name] = None
                if k == "segmentation":
                    s[name] = np.full((self.size, self.size), t.get("ignore_index", 255), np.int64)
                elif k == "depth":
                    s[name] = (np.zeros((self.size, self.size), np.float32), np.zeros((self.size, self.size), bool))
                continue
            if k == "detection":
                bx = v
                cls, sc = out[name + "/meta"]
                keep = ((bx[:, 2] - bx[:, 0]) >= 1) & ((bx[:, 3] - bx[:, 1]) >= 1)
                s[name] = (bx[keep].numpy(), cls[keep].numpy(), sc[keep].numpy())
            elif k == "segmentation":
                s[name] = v.numpy()
            elif k == "depth":
                d = v.numpy()
                ok = np.isfinite(d)
                s[name] = (np.where(ok, d, 0).astype(np.float32), ok)
            else:
                s[name] = v
        return s


class Tuned(IterableDataset):
    """Each row group read once per epoch; simplejpeg decode; OpenCV resize."""

    def __init__(self, root, size, seed=0):
        self.root, self.size, self.seed = root, size, seed
        self.tasks, self.images, self.labels = read_log(root)
        self.units = [(s, g) for s in sorted(self.images) for g in range(len(self.images[s]["row_groups"]))]

    def __iter__(self):
        import cv2
        import simplejpeg

        cv2.setNumThreads(1)
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        rng = random.Random(self.seed * 1000 + wid)
        units = list(self.units)
        random.Random(self.seed).shuffle(units)
        S = self.size
        for shard, g in units[wid::nw]:
            rows = pq.ParquetFile(os.path.join(self.root, self.images[shard]["path"])).read_row_group(g, columns=["image_id", "image"]).to_pydict()
            lab = {}
            for t in self.tasks:
                l = self.labels.get((t, shard))
                lab[t] = label_rows(os.path.join(self.root, l["path"]), g) if l else [None] * len(rows["image_id"])
            order = list(range(len(rows["image_id"])))
            rng.shuffle(order)
            for i in order:
                img = simplejpeg.decode_jpeg(rows["image"][i], colorspace="RGB")
                h, w = img.shape[:2]
                x0, y0, cw, ch = rrc_params(w, h, rng)
                flip = rng.random() < 0.5
                out = cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (S, S), interpolation=cv2.INTER_LINEAR)
                if flip:
                    out = out[:, ::-1]
                s = {"image_id": rows["image_id"][i], "image": np.ascontiguousarray(out.transpose(2, 0, 1))}
                for name, t in self.tasks.items():
                    row = lab[name][i]
                    k = t["kind"]
                    if k == "classification":
                        s[name] = densify(t, row) if row and row.get("probs") is not None else None
                    elif k == "detection":
                        if not row or row["boxes"] is None:
                            s[name] = None
                            continue
                        bx = np.asarray(row["boxes"], np.float32).reshape(-1, 4)
                        bx = (bx - [x0, y0, x0, y0]) * [S / cw, S / ch, S / cw, S / ch]
                        bx = np.clip(bx, 0, S)
                        if flip:
                            bx = np.stack([S - bx[:, 2], bx[:, 1], S - bx[:, 0], bx[:, 3]], 1)
                        keep = ((bx[:, 2] - bx[:, 0]) >= 1) & ((bx[:, 3] - bx[:, 1]) >= 1)
                        s[name] = (bx[keep], np.asarray(row["classes"], np.int64)[keep], np.asarray(row["scores"], np.float32)[keep])
                    else:
                        key = "mask" if k == "segmentation" else "depth"
                        if not row or row[key] is None:
                            s[name] = np.full((S, S), t.get("ignore_index", 255), np.int64) if k == "segmentation" else (np.zeros((S, S), np.float32), np.zeros((S, S), bool))
                            continue
                        mh, mw = row[key + "_height"], row[key + "_width"]
                        dt = "<f2" if k == "depth" else (np.uint8 if t["dtype"] == "u8" else "<u2")
                        m = np.frombuffer(row[key], dt).reshape(mh, mw)
                        fx, fy = mw / w, mh / h
                        a0, b0 = int(x0 * fx), int(y0 * fy)
                        a1, b1 = max(a0 + 1, int(math.ceil((x0 + cw) * fx))), max(b0 + 1, int(math.ceil((y0 + ch) * fy)))
                        m = m[b0:b1, a0:a1]
                        m = cv2.resize(m.astype(np.float32) if k == "depth" else m, (S, S), interpolation=cv2.INTER_NEAREST)
                        if flip:
                            m = m[:, ::-1]
                        if k == "segmentation":
                            s[name] = m.astype(np.int64)
                        else:
                            ok = np.isfinite(m)
                            s[name] = (np.where(ok, m, 0).astype(np.float32), ok)
                yield s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("variant", choices=["plain", "tuned"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--epochs", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if a.variant == "plain":
        ds = Plain(a.root, a.size)
        tasks = ds.tasks
        mk = lambda: DataLoader(ds, batch_size=a.batch_size, shuffle=True, num_workers=a.workers, drop_last=True, collate_fn=lambda s: collate(s, tasks))
    else:
        ds = Tuned(a.root, a.size)
        tasks = ds.tasks
        mk = lambda: DataLoader(ds, batch_size=a.batch_size, num_workers=a.workers, drop_last=True, collate_fn=lambda s: collate(s, tasks))
    n = 0
    for _ in range(a.epochs):
        for b in mk():
            n += b["images"].shape[0]
    dt = time.perf_counter() - t0
    print(json.dumps({"variant": a.variant, "samples": n, "seconds": dt, "samples_per_s": n / dt, "workers": a.workers}))


if __name__ == "__main__":
    main()
