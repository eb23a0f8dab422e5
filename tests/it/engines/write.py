"""Writes label files the way other engines do, for tests/it/align.rs.

  duckdb OUT FILE...          DuckDB COPY of the files' rows in a random order,
                              one file, one row group; --drop N leaves out N rows
  spark OUT FILE...           a Spark-style folder: _SUCCESS, .crc files and
                              snappy part files under a partition folder, rows
                              shuffled across 4 parts
  mapped-det OUT FILE...      detection rows with other column names (key,
                              pred_boxes, cls, conf) and xywh boxes
  normalized-det OUT SHARD FILE...  boxes as fractions of the image size
  dense-topk OUT FILE...      a top-k task's rows as all 10 probabilities, no classes
  png-seg OUT FILE...         masks as 8-bit gray PNG bytes, no sizes
"""
import io
import os
import random
import sys
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def rows(files):
    t = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
    return t.replace_schema_metadata(None)


def main():
    cmd, out, *rest = sys.argv[1:]
    drop = 0
    if "--drop" in rest:
        i = rest.index("--drop")
        drop = int(rest[i + 1])
        rest = rest[:i] + rest[i + 2:]
    if cmd == "duckdb":
        import duckdb

        files = ", ".join(f"'{f}'" for f in rest)
        con = duckdb.connect()
        con.execute("SELECT setseed(0.25)")
        con.execute(
            f"COPY (SELECT * FROM read_parquet([{files}]) ORDER BY random() OFFSET {drop}) "
            f"TO '{out}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)"
        )
        return
    if cmd == "normalized-det":
        rest = rest[1:]  # the shard file comes first
    t = rows(rest)
    rng = random.Random(7)
    order = list(range(t.num_rows))
    rng.shuffle(order)
    t = t.take(order)
    if cmd == "spark":
        part_dir = os.path.join(out, "date=2024-01-01")
        os.makedirs(part_dir)
        open(os.path.join(out, "_SUCCESS"), "w").close()
        job = uuid.UUID(int=7)
        n = 4
        for p in range(n):
            name = f"part-{p:05d}-{job}.c000.snappy.parquet"
            piece = t.slice(p * t.num_rows // n, (p + 1) * t.num_rows // n - p * t.num_rows // n)
            pq.write_table(piece, os.path.join(part_dir, name), compression="snappy", row_group_size=7)
            open(os.path.join(part_dir, f".{name}.crc"), "wb").write(b"crc")
        return
    if cmd == "mapped-det":
        boxes = []
        for bs in t.column("boxes").to_pylist():
            boxes.append(None if bs is None else [[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in bs])
        pq.write_table(pa.table({
            "key": t.column("image_id"),
            "pred_boxes": pa.array(boxes, pa.list_(pa.list_(pa.float32()))),
            "cls": pa.array(t.column("classes").to_pylist(), pa.list_(pa.uint32())),
            "conf": pa.array(t.column("scores").to_pylist(), pa.list_(pa.float32())),
            "boxes": pa.array([None] * t.num_rows, pa.list_(pa.list_(pa.float32(), 4))),
        }), out)
        return
    if cmd == "normalized-det":
        shard = sys.argv[3]
        sizes = pq.read_table(shard, columns=["image_id", "width", "height"]).to_pylist()
        size = {r["image_id"]: (r["width"], r["height"]) for r in sizes}
        boxes = []
        for i, bs in zip(t.column("image_id").to_pylist(), t.column("boxes").to_pylist()):
            w, h = size[i]
            boxes.append(None if bs is None else [[b[0] / w, b[1] / h, b[2] / w, b[3] / h] for b in bs])
        t = t.set_column(t.schema.get_field_index("boxes"), "boxes", pa.array(boxes, pa.list_(pa.list_(pa.float32(), 4))))
        pq.write_table(t, out)
        return
    if cmd == "dense-topk":
        dense = []
        for cs, ps in zip(t.column("classes").to_pylist(), t.column("probs").to_pylist()):
            if cs is None:
                dense.append(None)
                continue
            v = np.full(10, (1 - sum(ps)) / (10 - len(cs)), np.float32)
            v[cs] = ps
            dense.append(v.tolist())
        pq.write_table(pa.table({"image_id": t.column("image_id"), "probs": pa.array(dense, pa.list_(pa.float32()))}), out)
        return
    if cmd == "png-seg":
        from PIL import Image

        pngs = []
        for m, h, w in zip(t.column("mask").to_pylist(), t.column("mask_height").to_pylist(), t.column("mask_width").to_pylist()):
            if m is None:
                pngs.append(None)
                continue
            buf = io.BytesIO()
            Image.fromarray(np.frombuffer(m, np.uint8).reshape(h, w).copy()).save(buf, format="PNG")
            pngs.append(buf.getvalue())
        pq.write_table(pa.table({"image_id": t.column("image_id"), "mask": pa.array(pngs, pa.binary())}), out)
        return
    sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
