"""The dataset and the checked label writer: Arrow row groups equal to what
pyarrow reads from the files, labels of every kind written from numpy and
read back (by must-ds, pyarrow and DuckDB), errors naming the image_id, and
a dataset on a real S3 server through storage_options."""
import os
import socket
import subprocess
import urllib.request

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import must_ds
from conftest import REPO, run, tool_env

TASKS = [
    {"name": "cls", "kind": "classification", "num_classes": 10, "encoding": "topk", "teacher": {"name": "t"}},
    {"name": "dense", "kind": "classification", "num_classes": 3, "encoding": "dense", "teacher": {"name": "t"}},
    {"name": "det", "kind": "detection", "num_classes": 4, "teacher": {"name": "t"}},
    {"name": "seg", "kind": "segmentation", "num_classes": 400, "dtype": "u16", "ignore_index": 65535, "teacher": {"name": "t"}},
    {"name": "depth", "kind": "depth", "representation": "relative", "teacher": {"name": "t"}},
]


@pytest.fixture()
def photos_ds(tmp_path, must_bin):
    root = tmp_path / "ds"
    run([must_bin, "init", root, "--name", "photos"])
    run([must_bin, "ingest", root, "--from", REPO / "data/photos", "--source", "photos", "--row-group-rows", "3"])
    return root


def label_for(kind, i, w, h, rng):
    if kind == "cls":
        return dict(classes=[i % 10, (i + 1) % 10], probs=np.array([0.7, 0.2], np.float32))
    if kind == "dense":
        return dict(probs=torch.tensor([0.5, 0.25, 0.25]))
    if kind == "det":
        n = i % 3
        boxes = np.array([[1 + j, 2, w / 2 + j, h / 2] for j in range(n)], np.float64).reshape(n, 4)
        return dict(boxes=boxes, classes=np.arange(n) % 4, scores=np.full(n, 0.9))
    if kind == "seg":
        mh, mw = h // 4, w // 4
        mask = rng.integers(0, 400, (mh, mw))
        mask[0, 0] = 65535
        return dict(mask=mask, confidence=rng.random((mh, mw), dtype=np.float32))
    if kind == "depth":
        d = rng.random((h // 8, w // 8)).astype(np.float32) * 10
        d[0, :] = np.nan
        return dict(depth=d)


def test_labels_of_every_kind_round_trip_and_other_readers_agree(photos_ds, must_bin):
    import duckdb

    ds = must_ds.Dataset(photos_ds)
    for t in TASKS:
        assert ds.define_task(t) is True
        assert ds.define_task(t) is False  # the same definition commits nothing
    rng = np.random.default_rng(0)
    written = {}
    for shard in ds.shards:
        k = shard["shard"]
        sizes = {}
        for g in range(len(shard["row_groups"])):
            rb = ds.read_row_group(k, g)
            for i, w, h in zip(rb.column("image_id").to_pylist(), rb.column("width").to_pylist(), rb.column("height").to_pylist()):
                sizes[i] = (w, h)
        for t in TASKS:
            w = ds.label_writer(t["name"], k)
            assert w.image_ids == list(sizes)
            for n, image_id in enumerate(w.image_ids):
                if n == 1:
                    continue  # stays absent
                fields = label_for(t["name"], n, *sizes[image_id], rng)
                w.set(image_id, **fields)
                written[(t["name"], image_id)] = fields
            action = ds.add_labels(t["name"], k, w)
            assert action["labeled"] == len(w.image_ids) - 1
            with pytest.raises(RuntimeError, match="already committed"):
                w.set(w.image_ids[0], **fields)
    assert ds.labeled("seg") == {s["shard"] for s in ds.shards}
    run([must_bin, "validate", photos_ds])
    # Read back by must-ds as Arrow, with the format's types.
    names = [t["name"] for t in TASKS]
    for shard in ds.shards:
        k = shard["shard"]
        for g in range(len(shard["row_groups"])):
            rb = ds.read_row_group(k, g, names)
            assert rb.schema.field("det.boxes").type == pa.list_(pa.list_(pa.float32(), 4))
            assert rb.schema.field("seg.mask").type == pa.binary()
            for r, image_id in enumerate(rb.column("image_id").to_pylist()):
                for t in names:
                    want = written.get((t, image_id))
                    if t == "cls":
                        got = rb.column("cls.classes")[r].as_py()
                        assert got == (None if want is None else list(want["classes"]))
                    elif t == "det":
                        got = rb.column("det.boxes")[r].as_py()
                        if want is None:
                            assert got is None
                        else:
                            np.testing.assert_allclose(np.array(got, np.float32).reshape(-1, 4), want["boxes"].astype(np.float32))
                    elif t == "seg" and want is not None:
                        h, w = rb.column("seg.mask_height")[r].as_py(), rb.column("seg.mask_width")[r].as_py()
                        mask = np.frombuffer(rb.column("seg.mask")[r].as_py(), "<u2").reshape(h, w)
                        np.testing.assert_array_equal(mask, want["mask"])
                        conf = np.frombuffer(rb.column("seg.confidence")[r].as_py(), np.uint8)
                        np.testing.assert_array_equal(conf, np.floor(np.clip(want["confidence"], 0, 1) * np.float32(255) + np.float32(0.5)).astype(np.uint8).ravel())
                    elif t == "depth" and want is not None:
                        d = np.frombuffer(rb.column("depth.depth")[r].as_py(), "<f2")
                        np.testing.assert_array_equal(d, want["depth"].astype(np.float16).ravel())
    # The same files read by pyarrow and DuckDB themselves.
    for f in ds.label_files:
        path = str(photos_ds / f["path"])
        meta = pq.ParquetFile(path).metadata
        shard = next(s for s in ds.shards if s["shard"] == f["shard"])
        assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == shard["row_groups"]
        n = duckdb.sql(f"SELECT count(*) FILTER (WHERE {'probs' if f['task'] in ('cls', 'dense') else {'det': 'boxes', 'seg': 'mask', 'depth': 'depth'}[f['task']]} IS NOT NULL) FROM read_parquet('{path}')").fetchall()[0][0]
        assert n == f["labeled"]


def test_arrow_row_groups_equal_what_pyarrow_reads(photos_ds):
    ds = must_ds.Dataset(photos_ds)
    for shard in ds.shards:
        pf = pq.ParquetFile(str(photos_ds / shard["path"]))
        for g in range(len(shard["row_groups"])):
            ours = ds.read_row_group(shard["shard"], g)
            theirs = pf.read_row_group(g)
            assert ours.num_rows == shard["row_groups"][g]
            for name in ["image_id", "source", "image", "width", "height"]:
                assert ours.column(name).to_pylist() == theirs.column(name).to_pylist(), name
    with pytest.raises(must_ds.NotFoundError) as e:
        ds.read_row_group(99, 0)
    assert e.value.shard == 99


def test_the_writer_refuses_bad_values_naming_the_image(photos_ds):
    ds = must_ds.Dataset(photos_ds)
    for t in TASKS:
        ds.define_task(t)
    first = ds.shards[0]["shard"]
    seg = ds.label_writer("seg", first)
    image_id = seg.image_ids[0]
    with pytest.raises(must_ds.MustError) as e:
        seg.set(image_id, mask=np.full((4, 4), 70000))
    assert e.value.image_id == image_id and "outside 0..=65535" in str(e.value)
    with pytest.raises(must_ds.MustError, match="is not a field"):
        seg.set(image_id, depth=np.zeros((4, 4), np.float32))
    with pytest.raises(must_ds.MustError, match="numbers expected"):
        ds.label_writer("depth", first).set(image_id, depth=np.zeros((4, 4), bool))
    ds.label_writer("depth", first).set(image_id, depth=np.full((4, 4), 1200, np.uint16))  # millimetres
    with pytest.raises(must_ds.InvalidDataError) as e:
        seg.set("no/such/image", mask=np.zeros((4, 4), np.uint16))
    assert e.value.image_id == "no/such/image"
    det = ds.label_writer("det", first)
    with pytest.raises(must_ds.MustError, match=r"\(N, 4\)"):
        det.set(image_id, boxes=np.zeros((2, 3)), classes=[0, 0], scores=[1.0, 1.0])
    with pytest.raises(must_ds.InvalidDataError) as e:
        det.set(image_id, boxes=[[10, 10, 5, 5]], classes=[0], scores=[0.5])  # x1 < x0
    assert e.value.image_id == image_id
    with pytest.raises(must_ds.InvalidDataError):
        det.set(image_id, boxes=[[0, 0, 5, 5]], classes=[9], scores=[0.5])  # class >= num_classes
    cls = ds.label_writer("cls", first)
    with pytest.raises(must_ds.InvalidDataError):
        cls.set(image_id, classes=[1, 2], probs=[0.9, 0.9])  # sums over 1
    cls.set(image_id, probs=np.arange(10, dtype=np.float32) / 45, top_k=3)  # all C probabilities: top 3 kept
    ds.add_labels("cls", first, cls)
    rb = ds.read_row_group(first, 0, ["cls"])
    assert rb.column("cls.classes")[0].as_py() == [9, 8, 7]
    # Labels already there: a conflict unless replace.
    again = ds.label_writer("cls", first)
    with pytest.raises(must_ds.ConflictError):
        ds.add_labels("cls", first, again)
    ds.add_labels("cls", first, again, replace=True)
    assert ds.read_row_group(first, 0, ["cls"]).column("cls.classes")[0].as_py() is None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dataset_on_s3_through_storage_options(must_bin):
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/py-bucket", method="PUT")).read()
        opts = {"aws_endpoint": endpoint, "aws_allow_http": "true", "aws_access_key_id": "testing",
                "aws_secret_access_key": "testing", "aws_region": "us-east-1"}
        url = "s3://py-bucket/corpus"
        e = {**tool_env(), **{k.upper(): v for k, v in opts.items()}}
        for cmd in (["init", url, "--name", "s3"], ["ingest", url, "--from", str(REPO / "data/photos"), "--source", "photos"]):
            subprocess.run([must_bin, *cmd], env=e, check=True, capture_output=True)
        assert "AWS_ENDPOINT" not in os.environ  # only storage_options point at the server
        ds = must_ds.Dataset(url, storage_options=opts)
        assert ds.url == url
        ds.define_task(TASKS[1])
        ids = []
        for s in ds.shards:
            w = ds.label_writer("dense", s["shard"])
            for i in w.image_ids:
                w.set(i, probs=[0.2, 0.3, 0.5])
            ds.add_labels("dense", s["shard"], w)
            ids += w.image_ids
        assert len(ids) == 7
        loader = must_ds.Loader(url, ["dense"], batch_size=1, size=32, workers=1, storage_options=opts)
        batches = list(loader)
        assert sorted(i for b in batches for i in b["image_ids"]) == sorted(ids)
        assert all(b["dense.present"].all() for b in batches)
        with pytest.raises(must_ds.MustError, match="unknown storage option"):
            must_ds.Dataset(url, storage_options={"aws_no_such_key": "1"})
    finally:
        server.stop()


def test_labels_from_any_engine_by_image_id(photos_ds):
    import duckdb

    ds = must_ds.Dataset(photos_ds)
    ds.define_task(TASKS[2])  # det
    ids, sizes = [], {}
    for s in ds.shards:
        for g in range(len(s["row_groups"])):
            rb = ds.read_row_group(s["shard"], g)
            for i, w, h in zip(*(rb.column(c).to_pylist() for c in ("image_id", "width", "height"))):
                ids.append(i)
                sizes[i] = (w, h)
    rng = np.random.default_rng(3)
    order = rng.permutation(len(ids))[:-1]  # shuffled, one id left out
    keys = [ids[i] for i in order]
    xywh = [[[5.0, 6.0, sizes[k][0] / 3, sizes[k][1] / 4]] for k in keys]
    labels = pa.table({
        "key": keys,
        "pred_boxes": pa.array(xywh, pa.list_(pa.list_(pa.float32()))),
        "cls": pa.array([[1]] * len(keys), pa.list_(pa.uint32())),
        "conf": pa.array([[0.8]] * len(keys), pa.list_(pa.float32())),
    })
    # Through DuckDB, as an engine hands over its result.
    result = duckdb.sql("SELECT * FROM labels ORDER BY random()").arrow()
    table = labels
    report = ds.add_labels_from("det", result, columns={"image_id": "key", "boxes": "pred_boxes",
                                                        "classes": "cls", "scores": "conf"},
                                box_format="xywh")
    assert report["rows_in"] == len(keys) and report["missing"] == 1
    assert sorted(s["shard"] for s in report["shards"]) == [s["shard"] for s in ds.shards]
    missing = (set(ids) - set(keys)).pop()
    for s in ds.shards:
        for g in range(len(s["row_groups"])):
            rb = ds.read_row_group(s["shard"], g, ["det"])
            for i, boxes in zip(rb.column("image_id").to_pylist(), rb.column("det.boxes").to_pylist()):
                if i == missing:
                    assert boxes is None
                else:
                    w, h = sizes[i]
                    np.testing.assert_allclose(boxes, [[5.0, 6.0, 5.0 + w / 3, 6.0 + h / 4]], rtol=1e-6)
    # A rerun skips the labeled shards; an unknown id names its row.
    again = ds.add_labels_from("det", table, columns={"image_id": "key", "boxes": "pred_boxes",
                                                      "classes": "cls", "scores": "conf"},
                               box_format="xywh", skip_labeled=True)
    assert all(s["skipped"] for s in again["shards"]) and again["rows_skipped"] == len(keys)
    bad = table.set_column(0, "key", pa.array(keys[:3] + ["nope"] + keys[4:]))
    with pytest.raises(must_ds.InvalidDataError) as e:
        ds.add_labels_from("det", bad, columns={"image_id": "key", "boxes": "pred_boxes",
                                                "classes": "cls", "scores": "conf"},
                           box_format="xywh", replace=True)
    assert e.value.image_id == "nope" and e.value.row == 3
