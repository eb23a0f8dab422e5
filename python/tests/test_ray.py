"""must_ds.ray on a real local Ray (one `ray.init(num_cpus=2)` for the
module): `read_must` gives every row once, one block per (shard, row group),
the same values as `Dataset.read_row_group`, a pinned snapshot, and errors
naming the file and row group; `label_with_ray` runs a torchvision teacher
on actors, commits each shard once, skips what is labeled, reports shards
labeled meanwhile by someone else as lost, and a teacher that fails stops
the run naming the shard, keeping the shards committed before it.

Ray workers import this module (the teachers below) and must_ds from the
same folders as this process: their PYTHONPATH is set to them.
"""
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray[data]')")
ray_data = pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'ray[data]')")

import must_ds  # noqa: E402
import must_ds.ray as must_ray  # noqa: E402
from conftest import REPO, run  # noqa: E402

sys.path.insert(0, str(REPO / "tools" / "reference"))
import python_teacher  # noqa: E402  (preprocess, to_label: the preprocessing of tools/reference/python_teacher.py)

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module", autouse=True)
def ray_local():
    if ray.is_initialized():  # pragma: no cover - another module started it
        yield
        return
    paths = [str(Path(must_ds.__file__).resolve().parents[1]), str(HERE), str(REPO / "tools" / "reference")]
    env = {"PYTHONPATH": os.pathsep.join(paths + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env}, logging_level="WARNING")
    ray_data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def direct_rows(root, tasks, version=None):
    """image_id -> row dict, read with must_ds.Dataset directly; and the row groups' id lists."""
    ds = must_ds.Dataset(root, version)
    rows, groups = {}, []
    for s in sorted(ds.shards, key=lambda s: s["shard"]):
        for g in range(len(s["row_groups"])):
            d = ds.read_row_group(s["shard"], g, tasks).to_pydict()
            groups.append(tuple(d["image_id"]))
            for i, image_id in enumerate(d["image_id"]):
                rows[image_id] = {k: v[i] for k, v in d.items()}
    return rows, groups


def ray_blocks(dataset):
    """The materialized blocks, as pyarrow Tables."""
    return ray.get(dataset.materialize().to_arrow_refs())


# ---------------------------------------------------------------- read_must


def test_read_must_every_row_once_one_block_per_row_group(demo, demo_tasks):
    ds = must_ds.Dataset(demo)
    units = [(s["shard"], g, n) for s in sorted(ds.shards, key=lambda s: s["shard"])
             for g, n in enumerate(s["row_groups"])]
    total = sum(s["rows"] for s in ds.shards)
    assert len(units) > 2

    source = must_ray.MustDatasource(demo, demo_tasks)
    assert source.version == ds.version
    tasks = source.get_read_tasks(1000)
    assert [t.metadata.num_rows for t in tasks] == [n for _, _, n in units]
    assert source.estimate_inmemory_data_size() > 0
    # Fewer read tasks than row groups: consecutive row groups share a task, none is dropped.
    two = source.get_read_tasks(2)
    assert len(two) == 2 and sum(t.metadata.num_rows for t in two) == total
    assert [b.num_rows for t in two for b in t()] == [n for _, _, n in units]

    want, groups = direct_rows(demo, demo_tasks)
    data = must_ray.read_must(demo, demo_tasks)
    blocks = ray_blocks(data)
    assert len(blocks) == len(units)
    assert sorted(tuple(b.column("image_id").to_pylist()) for b in blocks) == sorted(groups)
    assert data.count() == total
    ids = [i for b in blocks for i in b.column("image_id").to_pylist()]
    assert len(ids) == len(set(ids)) == total and set(ids) == set(want)
    columns = set(blocks[0].column_names)
    assert {"image_id", "source", "image", "width", "height"} <= columns
    for t in demo_tasks:
        assert any(c.startswith(f"{t}.") for c in columns), t
    assert columns == set(next(iter(want.values())))
    # Every value of every row equals what must_ds reads directly.
    for b in blocks:
        for row in b.to_pylist():
            assert row == want[row["image_id"]], row["image_id"]
    # A task given as a name, and no task: the image columns only.
    only = ray_blocks(must_ray.read_must(demo, [], override_num_blocks=2))
    assert len(only) == 2 and not any("." in c for c in only[0].column_names)
    assert sum(b.num_rows for b in only) == total
    with pytest.raises(must_ds.NotFoundError, match="nope"):
        must_ray.read_must(demo, ["nope"])


def test_read_must_reads_the_version_it_was_planned_at(demo, tmp_path, must_bin):
    root = tmp_path / "ds"
    shutil.copytree(demo, root)
    task = "scene-color"
    ds = must_ds.Dataset(root)
    old_version = ds.version
    old_rows, _ = direct_rows(root, [task])
    lazy = must_ray.read_must(root, [task])  # planned now, executed after the commits below
    # New commits: shard 0's labels replaced by absent ones, and new images.
    first = min(s["shard"] for s in ds.shards)
    ds.add_labels(task, first, ds.label_writer(task, first), replace=True)
    run([must_bin, "ingest", root, "--from", REPO / "data/photos", "--source", "photos", "--workers", "1"])
    new_rows, _ = direct_rows(root, [task])
    assert len(new_rows) == len(old_rows) + 7
    assert any(r[f"{task}.probs"] is None for r in new_rows.values())

    for data in (lazy, must_ray.read_must(root, [task], version=old_version)):
        got = {r["image_id"]: r for b in ray_blocks(data) for r in b.to_pylist()}
        assert got == old_rows
    newest = {r["image_id"]: r for b in ray_blocks(must_ray.read_must(root, [task])) for r in b.to_pylist()}
    assert newest == new_rows


def test_read_must_errors_name_the_file_and_row_group(demo, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(demo, root)
    ds = must_ds.Dataset(root)
    shard = max(ds.shards, key=lambda s: s["shard"])
    path = root / shard["path"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the footer gone
    with pytest.raises(must_ds.MustError) as e:
        must_ray.read_must(root, ["scene-color"]).materialize()
    err = e.value
    assert isinstance(err, must_ds.CorruptDataError), type(err).__mro__
    assert err.file == shard["path"], err.file
    assert (err.shard, err.row_group) == (shard["shard"], 0)
    assert shard["path"] in str(err) and f"image shard {shard['shard']}, row group 0" in str(err)


# ---------------------------------------------------------------- label_with_ray

NUM_CLASSES = 7
PARAMS = {"input_size": 64, "top_k": 3}


class TorchTeacher:
    """A torchvision classifier with random weights (torch.manual_seed(0)),
    preprocessed as tools/reference/python_teacher.py does (stretch to input_size,
    ImageNet mean and std). `fail_on`: raise on the batch holding that
    image id; `bad_on`: give that image probabilities summing over 1;
    `race`: (shard, image_id) -- on that image, first commit labels of the
    shard as another labeler would (all absent); arch "broken": the
    constructor raises."""

    def __init__(self, task, arch="mobilenet_v3_small", fail_on=None, bad_on=None, race=None, root=None):
        import torch
        import torchvision

        if arch == "broken":
            raise RuntimeError("no such model")

        torch.manual_seed(0)
        self.model = getattr(torchvision.models, arch)(weights=None, num_classes=task["num_classes"]).eval()
        params = task["teacher"]["params"]
        self.task, self.size, self.top_k = task, int(params["input_size"]), int(params["top_k"])
        self.mean = np.array([0.485, 0.456, 0.406], np.float32)
        self.std = np.array([0.229, 0.224, 0.225], np.float32)
        self.fail_on, self.bad_on, self.race, self.root = fail_on, bad_on, race, root

    def probs(self, images):
        import torch

        x = torch.stack([python_teacher.preprocess(j, self.size, self.mean, self.std) for j in images])
        with torch.no_grad():
            return torch.softmax(self.model(x), 1).numpy()

    def label(self, images, image_ids):
        if self.fail_on in image_ids:
            raise ValueError(f"teacher failure on {self.fail_on}")
        if self.race is not None and self.race[1] in image_ids:
            ds = must_ds.Dataset(self.root)
            ds.add_labels(self.task["name"], self.race[0], ds.label_writer(self.task["name"], self.race[0]))
        out = [python_teacher.to_label(self.task, p, self.top_k) for p in self.probs(images)]
        for i, image_id in enumerate(image_ids):
            if image_id == self.bad_on:
                out[i] = {"classes": [0, 1], "probs": [0.9, 0.9]}
        return out


@pytest.fixture(scope="module")
def small(tmp_path_factory, must_bin):
    """22 small PNGs of varying sizes in 4 image shards of 6, 6, 6, 4 rows,
    row groups of 4 rows."""
    from PIL import Image

    tmp = tmp_path_factory.mktemp("ray-small")
    src = tmp / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(22):
        w, h = 40 + 3 * i, 30 + 2 * (i % 7)
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        pixels[: h // 2] //= (i % 4) + 1  # some structure between images
        Image.fromarray(pixels).save(src / f"img{i:02}.png")
    root = tmp / "ds"
    run([must_bin, "init", root, "--name", "ray-small"])
    run([must_bin, "ingest", root, "--from", src, "--source", "gen", "--shard-rows", "6",
         "--row-group-rows", "4", "--workers", "1"])
    ds = must_ds.Dataset(root)
    assert sorted(s["rows"] for s in ds.shards) == [4, 6, 6, 6]
    return root


def define(root, name):
    assert must_ds.Dataset(root).define_task({
        "name": name, "kind": "classification", "num_classes": NUM_CLASSES,
        "teacher": {"name": "mobilenet_v3_small", "params": PARAMS}})


def shard_ids(root):
    """shard -> its image ids, in order."""
    ds = must_ds.Dataset(root)
    return {s["shard"]: ds.label_writer(next(iter(ds.tasks)), s["shard"]).image_ids
            for s in sorted(ds.shards, key=lambda s: s["shard"])}


def label_files(root, task):
    """The shards of the task's label files at the newest version, one entry per file."""
    return sorted(f["shard"] for f in must_ds.Dataset(root).label_files if f["task"] == task)


def test_label_with_ray_labels_each_shard_once_as_the_model_does(small, must_bin):
    task = "ray-cls"
    define(small, task)
    shards = shard_ids(small)
    version = must_ds.Dataset(small).version
    report = must_ray.label_with_ray(small, task, TorchTeacher, concurrency=2, batch_size=5)
    assert report["labeled"] == sorted(shards) and report["skipped"] == [] and report["lost"] == []
    assert report["images"] == 22 and report["seconds"] > 0
    ds = must_ds.Dataset(small)
    assert ds.version == version + len(shards) == report["version"]  # one commit per shard
    assert label_files(small, task) == sorted(shards)  # each (task, shard) once
    for f in ds.label_files:
        if f["task"] == task:
            assert f["rows"] == f["labeled"] == len(shards[f["shard"]]), f
    run([must_bin, "validate", small])

    # The values: the same model and preprocessing, run here.
    rows, _ = direct_rows(small, [task])
    teacher = TorchTeacher(ds.tasks[task])
    picked = [ids[0] for ids in shards.values()] + [shards[max(shards)][-1]]
    want = teacher.probs([rows[i]["image"] for i in picked])
    for image_id, p in zip(picked, want):
        label = python_teacher.to_label(ds.tasks[task], p, PARAMS["top_k"])
        assert rows[image_id][f"{task}.classes"] == label["classes"].tolist(), image_id
        np.testing.assert_allclose(rows[image_id][f"{task}.probs"], label["probs"], atol=1e-4)
    assert all(len(r[f"{task}.classes"]) == PARAMS["top_k"] for r in rows.values())

    # A second run labels nothing and commits nothing.
    again = must_ray.label_with_ray(small, task, TorchTeacher, concurrency=2)
    assert again["labeled"] == [] and again["lost"] == [] and again["skipped"] == sorted(shards)
    assert again["images"] == 0 and must_ds.Dataset(small).version == ds.version


def test_a_failing_teacher_stops_at_its_shard_and_a_rerun_finishes(small):
    task = "ray-fail"
    define(small, task)
    shards = shard_ids(small)
    order = sorted(shards)
    k = order[2]
    fail_on = shards[k][1]
    with pytest.raises(must_ray.LabelingError) as e:
        must_ray.label_with_ray(small, task, TorchTeacher, batch_size=4, teacher_kwargs={"fail_on": fail_on})
    err = e.value
    assert err.shard == k and f"image shard {k}" in str(err) and fail_on in str(err), str(err)
    assert fail_on in err.image_ids and isinstance(err.original, ValueError)
    assert "teacher failure" in str(err.original) and "Traceback" in err.remote_traceback
    assert err.report["labeled"] == order[:2] and err.report["lost"] == []
    assert label_files(small, task) == order[:2]  # committed before the failure; nothing of shard k

    # A value the writer refuses names the image.
    bad = shards[order[3]][2]
    with pytest.raises(must_ray.LabelingError) as e:
        must_ray.label_with_ray(small, task, TorchTeacher, teacher_kwargs={"bad_on": bad})
    assert e.value.shard == order[3] and e.value.image_id == bad and bad in str(e.value)
    assert isinstance(e.value.original, must_ds.InvalidDataError)
    assert e.value.report["labeled"] == [k] and e.value.report["skipped"] == order[:2]
    assert label_files(small, task) == order[:3]

    # A teacher that cannot be constructed: no shard is started.
    with pytest.raises(must_ray.LabelingError, match="could not be constructed.*no such model") as e:
        must_ray.label_with_ray(small, task, TorchTeacher, teacher_args=("broken",))
    assert e.value.shard is None and e.value.report["labeled"] == []
    assert label_files(small, task) == order[:3]

    report = must_ray.label_with_ray(small, task, TorchTeacher, batch_size=4)
    assert report["labeled"] == order[3:] and report["skipped"] == order[:3]
    assert label_files(small, task) == order  # each shard exactly once
    assert all(f["labeled"] == f["rows"] for f in must_ds.Dataset(small).label_files if f["task"] == task)


def test_a_shard_labeled_meanwhile_is_lost_not_an_error(small):
    task = "ray-race"
    define(small, task)
    shards = shard_ids(small)
    k = sorted(shards)[1]
    report = must_ray.label_with_ray(small, task, TorchTeacher, shards=[k, sorted(shards)[0]],
                                     teacher_kwargs={"race": (k, shards[k][0]), "root": str(small)})
    assert report["lost"] == [k] and report["labeled"] == [sorted(shards)[0]]
    assert report["images"] == len(shards[sorted(shards)[0]])
    ds = must_ds.Dataset(small)
    theirs = [f for f in ds.label_files if f["task"] == task and f["shard"] == k]
    assert len(theirs) == 1 and theirs[0]["labeled"] == 0  # the other labeler's (all absent) stays
    with pytest.raises(must_ds.NotFoundError):
        must_ray.label_with_ray(small, task, TorchTeacher, shards=[999])


class UniformTeacher:
    """Every class equally likely."""

    def __init__(self, task):
        self.c = task["num_classes"]

    def label(self, images, image_ids):
        return [{"probs": np.full(self.c, 1 / self.c, np.float32), "top_k": 2} for _ in images]


def test_a_commit_conflict_is_lost_not_an_error(small):
    """The race that the check before committing cannot see: another labeler
    commits the shard between that check and this commit. Run in this
    process (the actor's class without Ray) to place the other commit there."""
    task = "ray-conflict"
    define(small, task)
    k = min(shard_ids(small))
    labeler = must_ray._ShardLabeler(str(small), None, task, UniformTeacher, (), {})
    labeler.start()
    handle = labeler.ds
    refresh, calls = handle.refresh, []

    def refresh_then_commit_elsewhere():
        # Calls: 0 when the shard is taken, 1 the check before committing,
        # then someone else commits; 2 after the conflict.
        v = refresh()
        if len(calls) == 1:
            other = must_ds.Dataset(small)
            other.add_labels(task, k, other.label_writer(task, k))
        calls.append(v)
        return v

    handle.refresh = refresh_then_commit_elsewhere
    version = must_ds.Dataset(small).version
    result = labeler.label_shard(k, 4, False)
    assert len(calls) == 3, calls
    assert result["status"] == "lost" and result["images"] == 0, result
    files = [f for f in must_ds.Dataset(small).label_files if f["task"] == task and f["shard"] == k]
    assert len(files) == 1 and files[0]["labeled"] == 0  # the other labeler's stays
    assert must_ds.Dataset(small).version == version + 1  # theirs only
    # The same labeler takes the next shard as usual.
    nxt = sorted(shard_ids(small))[1]
    assert labeler.label_shard(nxt, 4, False)["status"] == "labeled"
