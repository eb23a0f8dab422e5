#!/usr/bin/env python3
"""Reference must-ds label writer in Python, with pyarrow only.

A teacher that lives in Python writes its labels for one image shard with
`write_labels`, then hands the file to `must-ds add-labels`:

    from label_writer import read_shard_layout, write_labels
    ids, row_groups = read_shard_layout("corpus/images/part-....parquet")
    labels = [{"classes": [3, 1], "probs": [0.7, 0.2]} for _ in ids]  # or None
    write_labels(task, ids, row_groups, labels, "cls-0.parquet")

    must-ds add-labels corpus --task cls --shard 0 cls-0.parquet

Label dicts per task kind (FORMAT.md section 4); None means "no label":
  classification topk : {"classes": [int], "probs": [float]}  (sorted by prob, descending)
  classification dense: {"probs": [float] * num_classes}
  detection           : {"boxes": [[x0, y0, x1, y1]], "classes": [int], "scores": [float]}
  segmentation        : {"mask": bytes, "height": int, "width": int, "confidence": bytes or None}
  depth               : {"depth": bytes (little-endian float16), "height": int, "width": int}

Run as a script, `example` writes deterministic labels of any task for a
shard (used by the tests and as a worked example).
"""
import argparse
import json
import struct
import sys

import pyarrow as pa
import pyarrow.parquet as pq

BLOB_COLUMNS = ("mask", "depth", "confidence")


def read_log(root):
    """Tasks, image shards and label files of a local dataset's latest
    version, from its commit log: ({name: task}, {shard: add_images},
    {(task, shard): add_labels})."""
    import glob
    import os

    tasks, images, labels = {}, {}, {}
    for f in sorted(glob.glob(os.path.join(root, "_must/log/*.json"))):
        for a in json.load(open(f))["actions"]:
            if "task" in a:
                tasks[a["task"]["name"]] = a["task"]
            elif "add_images" in a:
                images[a["add_images"]["shard"]] = a["add_images"]
            elif "add_labels" in a:
                labels[(a["add_labels"]["task"], a["add_labels"]["shard"])] = a["add_labels"]
            elif "remove" in a:
                p = a["remove"]["path"]
                images = {k: v for k, v in images.items() if v["path"] != p}
                labels = {k: v for k, v in labels.items() if v["path"] != p}
    return tasks, images, labels


def read_shard_layout(path):
    """Image ids in order and rows per row group of an image shard."""
    f = pq.ParquetFile(path)
    ids = f.read(columns=["image_id"]).column("image_id").to_pylist()
    groups = [f.metadata.row_group(i).num_rows for i in range(f.metadata.num_row_groups)]
    return ids, groups


def label_schema(task, with_confidence=False):
    """The Arrow schema FORMAT.md gives for a task's label file."""
    kind = task["kind"]
    fields = [pa.field("image_id", pa.string(), nullable=False)]
    if kind == "classification" and task.get("encoding", "topk") == "topk":
        fields += [pa.field("classes", pa.list_(pa.uint32())), pa.field("probs", pa.list_(pa.float32()))]
    elif kind == "classification":
        fields += [pa.field("probs", pa.list_(pa.float32(), task["num_classes"]))]
    elif kind == "detection":
        fields += [
            pa.field("boxes", pa.list_(pa.list_(pa.float32(), 4))),
            pa.field("classes", pa.list_(pa.uint32())),
            pa.field("scores", pa.list_(pa.float32())),
        ]
    elif kind == "segmentation":
        fields += [pa.field("mask", pa.binary()), pa.field("mask_height", pa.uint32()), pa.field("mask_width", pa.uint32())]
        if with_confidence:
            fields.append(pa.field("confidence", pa.binary()))
    elif kind == "depth":
        fields += [pa.field("depth", pa.binary()), pa.field("depth_height", pa.uint32()), pa.field("depth_width", pa.uint32())]
    else:
        raise ValueError(f"unknown task kind {kind!r}")
    meta = {"must.format_version": "1", "must.table": "labels", "must.task": json.dumps(task)}
    return pa.schema(fields, metadata=meta)


def _columns(task, labels, with_confidence):
    kind = task["kind"]
    get = lambda key: [None if l is None else l[key] for l in labels]
    if kind == "classification" and task.get("encoding", "topk") == "topk":
        return {"classes": get("classes"), "probs": get("probs")}
    if kind == "classification":
        return {"probs": get("probs")}
    if kind == "detection":
        return {"boxes": get("boxes"), "classes": get("classes"), "scores": get("scores")}
    if kind == "segmentation":
        cols = {"mask": get("mask"), "mask_height": get("height"), "mask_width": get("width")}
        if with_confidence:
            cols["confidence"] = [None if l is None else l.get("confidence") for l in labels]
        return cols
    return {"depth": get("depth"), "depth_height": get("height"), "depth_width": get("width")}


def write_labels(task, ids, row_groups, labels, out_path):
    """Writes the label file of `task` aligned with a shard: same ids, same
    order, same row groups. Blob columns use ZSTD without dictionary or
    statistics, as FORMAT.md asks."""
    if len(labels) != len(ids) or sum(row_groups) != len(ids):
        raise ValueError("labels, ids and row groups must describe the same rows")
    with_conf = task["kind"] == "segmentation" and any(l is not None and l.get("confidence") for l in labels)
    schema = label_schema(task, with_conf)
    arrays = {"image_id": ids, **_columns(task, labels, with_conf)}
    table = pa.table({f.name: pa.array(arrays[f.name], type=f.type) for f in schema}, schema=schema)
    blobs = [c for c in BLOB_COLUMNS if c in schema.names]
    others = [c for c in schema.names if c not in blobs]
    with pq.ParquetWriter(
        out_path, schema, compression="zstd", use_dictionary=others, write_statistics=others
    ) as w:
        start = 0
        for n in row_groups:
            w.write_table(table.slice(start, n), row_group_size=max(n, 1))
            start += n


def example_labels(task, ids, sizes):
    """Deterministic labels from image sizes; every 5th row is left unlabeled."""
    kind, out = task["kind"], []
    n = task.get("num_classes", 1)
    for i, (image_id, (w, h)) in enumerate(zip(ids, sizes)):
        if i % 5 == 4:
            out.append(None)
            continue
        if kind == "classification" and task.get("encoding", "topk") == "topk":
            c = [(w + i) % n, ((w + i) % n + 1 + h % (n - 1)) % n] if n > 1 else [0]
            p = [0.6, 0.3][: len(c)]
            out.append({"classes": c, "probs": p})
        elif kind == "classification":
            p = [0.0] * n
            p[(w + i) % n] = 1.0
            out.append({"probs": p})
        elif kind == "detection":
            out.append({"boxes": [[0.0, 0.0, w / 2, h / 2], [w / 4, h / 4, w - 1.0, h - 1.0]], "classes": [0, (i % n)], "scores": [0.9, 0.5]})
        elif kind == "segmentation":
            mh, mw = max(h // 8, 1), max(w // 8, 1)
            values = [(x + y) % n for y in range(mh) for x in range(mw)]
            if task.get("dtype") == "u16":
                mask = struct.pack(f"<{len(values)}H", *values)
            else:
                mask = bytes(values)
            out.append({"mask": mask, "height": mh, "width": mw, "confidence": bytes([200]) * (mh * mw)})
        else:
            dh, dw = max(h // 16, 1), max(w // 16, 1)
            depth = b"".join(struct.pack("<e", 1.0 + y / dh) for y in range(dh) for _ in range(dw))
            out.append({"depth": depth, "height": dh, "width": dw})
    return out


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("example", help="write deterministic example labels of a task for one image shard")
    ex.add_argument("--shard-file", required=True, help="the image shard (images/part-....parquet)")
    ex.add_argument("--task", required=True, help="task definition: JSON text or a path to a JSON file")
    ex.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    text = args.task if args.task.lstrip().startswith("{") else open(args.task).read()
    task = json.loads(text)
    ids, groups = read_shard_layout(args.shard_file)
    sizes = pq.read_table(args.shard_file, columns=["width", "height"]).to_pydict()
    labels = example_labels(task, ids, list(zip(sizes["width"], sizes["height"])))
    write_labels(task, ids, groups, labels, args.out)
    print(json.dumps({"rows": len(ids), "labeled": sum(l is not None for l in labels), "row_groups": groups}))


if __name__ == "__main__":
    main(sys.argv[1:])
