#!/usr/bin/env python3
"""Reads a must-ds dataset with pyarrow and DuckDB only, checks the column
types FORMAT.md names, and joins images with each task's labels on image_id.
Prints a JSON summary; exits non-zero on any mismatch. Used by the tests."""
import glob
import json
import os
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

IMAGE_TYPES = {"image_id": pa.string(), "image": pa.binary(), "uri": pa.string(), "width": pa.uint32(), "height": pa.uint32()}
LABEL_TYPES = {
    "classes": pa.list_(pa.uint32()),
    "probs": pa.list_(pa.float32()),
    "scores": pa.list_(pa.float32()),
    "boxes": pa.list_(pa.list_(pa.float32(), 4)),
    "mask": pa.binary(),
    "mask_height": pa.uint32(),
    "mask_width": pa.uint32(),
    "confidence": pa.binary(),
    "depth": pa.binary(),
    "depth_height": pa.uint32(),
    "depth_width": pa.uint32(),
}


def same(a, b):
    # List child names differ between writers (item vs element).
    if pa.types.is_list(a) and pa.types.is_list(b):
        return same(a.value_type, b.value_type)
    if pa.types.is_fixed_size_list(a) and pa.types.is_fixed_size_list(b):
        return a.list_size == b.list_size and same(a.value_type, b.value_type)
    return a == b


def main(root):
    live = {}
    for f in sorted(glob.glob(os.path.join(root, "_must/log/*.json"))):
        for action in json.load(open(f))["actions"]:
            (kind, body), = action.items()
            if kind in ("add_images", "add_labels"):
                live[body["path"]] = body
            elif kind == "remove":
                live.pop(body["path"], None)
    images = [p for p, a in live.items() if p.startswith("images/")]
    errors, summary = [], {"image_shards": len(images), "tasks": {}}
    for p in images:
        schema = pq.read_schema(os.path.join(root, p))
        for col, t in IMAGE_TYPES.items():
            if not same(schema.field(col).type, t):
                errors.append(f"{p}: {col} is {schema.field(col).type}, expected {t}")
        src = schema.field("source").type
        if not (src == pa.string() or (pa.types.is_dictionary(src) and src.value_type == pa.string())):
            errors.append(f"{p}: source is {src}")
        md = pq.ParquetFile(os.path.join(root, p)).metadata.metadata
        if md.get(b"must.table") != b"images" or md.get(b"must.format_version") != b"1":
            errors.append(f"{p}: key-value metadata {md}")
    img_files = [os.path.join(root, p) for p in images]
    con = duckdb.connect()
    summary["rows"] = con.execute("select count(*) from read_parquet(?)", [img_files]).fetchone()[0]
    tasks = sorted({a["task"] for p, a in live.items() if p.startswith("labels/")})
    for task in tasks:
        files = [os.path.join(root, p) for p, a in live.items() if p.startswith("labels/") and a["task"] == task]
        for f in files:
            schema = pq.read_schema(f)
            for field in schema:
                want = LABEL_TYPES.get(field.name)
                if field.name == "probs" and pa.types.is_fixed_size_list(field.type):
                    want = pa.list_(pa.float32(), field.type.list_size)
                if want is not None and not same(field.type, want):
                    errors.append(f"{f}: {field.name} is {field.type}, expected {want}")
            md = pq.ParquetFile(f).metadata.metadata
            if json.loads(md[b"must.task"])["name"] != task:
                errors.append(f"{f}: must.task names another task")
        first = pq.read_schema(files[0]).names[1]
        joined, labeled = con.execute(
            f'select count(*), count(l."{first}") from read_parquet(?) i join read_parquet(?) l using (image_id)',
            [img_files, files],
        ).fetchone()
        summary["tasks"][task] = {"joined": joined, "labeled": labeled, "files": len(files)}
    summary["errors"] = errors
    print(json.dumps(summary))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
