#!/usr/bin/env python3
"""Peer benchmark: write the label arrays of benches/write.rs with pyarrow,
as a performance-minded user would (numpy arrays turned into Arrow arrays
without Python loops, one ParquetWriter, ZSTD, no dictionary or statistics
on blob columns, the same row groups). Prints rows/s per kind as JSON.

    python3 tools/bench/bench_label_write.py [--repeat 5]
"""
import argparse
import io
import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CASES = [
    ("classification_topk", 20_000, 5_000),
    ("classification_dense", 2_000, 500),
    ("detection", 20_000, 5_000),
    ("segmentation", 2_000, 500),
    ("depth", 2_000, 500),
]


def make_arrays(kind, rows):
    """Numpy arrays equal to make_labels() in benches/write.rs."""
    i = np.arange(rows)[:, None]
    if kind == "classification_topk":
        j = np.arange(5)[None, :]
        classes = ((i * 7 + j * 13) % 1000).astype(np.uint32)
        probs = np.tile(np.array([0.5, 0.2, 0.1, 0.05, 0.05], np.float32), (rows, 1))
        return {"classes": classes, "probs": probs}
    if kind == "classification_dense":
        c = np.arange(1000)[None, :]
        return {"probs": (((i * 31 + c * 17) % 100) / 100000.0).astype(np.float32)}
    if kind == "detection":
        j = np.arange(20)[None, :]
        x = ((i * 3 + j * 11) % 400).astype(np.float32)
        y = ((i * 5 + j * 7) % 300).astype(np.float32)
        s = np.broadcast_to(((j * 3) % 50 + 10).astype(np.float32), x.shape)
        boxes = np.stack([x, y, x + s, y + s], axis=-1)
        classes = ((i + j) % 80).astype(np.uint32)
        scores = np.broadcast_to((1.0 - j / 25.0).astype(np.float32), x.shape)
        return {"boxes": boxes, "classes": classes, "scores": np.ascontiguousarray(scores)}
    if kind == "segmentation":
        p = np.arange(128 * 128)[None, :]
        mask = (((p % 128) // 16 + (p // 128) // 16 + i) % 21).astype(np.uint8)
        conf = ((p * 7 + i) % 256).astype(np.uint8)
        return {"mask": mask, "confidence": conf, "h": 128, "w": 128}
    p = np.arange(96 * 128)
    v = (1.0 + (p // 128) / 96.0 + ((p % 128) % 7) / 100.0).astype(np.float16)
    return {"depth": np.tile(v, (rows, 1)), "h": 96, "w": 128}


def list_array(values_2d, inner=None):
    rows, k = values_2d.shape[0], values_2d.shape[1]
    offsets = pa.array(np.arange(0, rows * k + 1, k, dtype=np.int32))
    flat = values_2d.reshape(rows * k, *values_2d.shape[2:])
    values = pa.array(flat.reshape(-1)) if inner is None else pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), inner)
    return pa.ListArray.from_arrays(offsets, values)


def blob_array(m):
    rows, size = m.shape[0], m.shape[1] * m.dtype.itemsize
    offsets = pa.py_buffer(np.arange(0, rows * size + 1, size, dtype=np.int32).tobytes())
    return pa.Array.from_buffers(pa.binary(), rows, [None, offsets, pa.py_buffer(np.ascontiguousarray(m).tobytes())])


def build_table(kind, ids, a):
    rows = len(ids)
    cols = {"image_id": ids}
    if kind == "classification_topk":
        cols["classes"] = list_array(a["classes"])
        cols["probs"] = list_array(a["probs"])
    elif kind == "classification_dense":
        cols["probs"] = pa.FixedSizeListArray.from_arrays(pa.array(a["probs"].reshape(-1)), 1000)
    elif kind == "detection":
        cols["boxes"] = list_array(a["boxes"], inner=4)
        cols["classes"] = list_array(a["classes"])
        cols["scores"] = list_array(a["scores"])
    elif kind == "segmentation":
        cols["mask"] = blob_array(a["mask"])
        cols["mask_height"] = pa.array(np.full(rows, a["h"], np.uint32))
        cols["mask_width"] = pa.array(np.full(rows, a["w"], np.uint32))
        cols["confidence"] = blob_array(a["confidence"])
    else:
        cols["depth"] = blob_array(a["depth"])
        cols["depth_height"] = pa.array(np.full(rows, a["h"], np.uint32))
        cols["depth_width"] = pa.array(np.full(rows, a["w"], np.uint32))
    return pa.table(cols)


def write(kind, ids, arrays, group):
    table = build_table(kind, ids, arrays)
    blobs = [c for c in ("mask", "confidence", "depth") if c in table.column_names]
    others = [c for c in table.column_names if c not in blobs]
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, table.schema, compression="zstd", use_dictionary=others, write_statistics=others) as w:
        for start in range(0, table.num_rows, group):
            w.write_table(table.slice(start, group), row_group_size=group)
    return sink.getbuffer().nbytes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    out = {"pyarrow": pa.__version__}
    for kind, rows, group in CASES:
        arrays = make_arrays(kind, rows)
        ids = pa.array([f"img-{i:08}" for i in range(rows)])
        best = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            size = write(kind, ids, arrays, group)
            best = min(best, time.perf_counter() - t)
        out[kind] = {"rows_per_s": round(rows / best), "seconds": round(best, 4), "bytes": size}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
