"""End-to-end tests of the two Python teachers, run as subprocesses on small
datasets made in tmp_path, their results read back through must_ds.Dataset:

* tools/reference/python_teacher.py (a torchvision classifier, checked label writer);
* examples/face_teacher.py (MTCNN from facenet-pytorch; skipped, with the
  reason, only when facenet_pytorch cannot be imported).

The must-ds binary is conftest's `must_bin` ($MUST_DS_BIN, else
<repo>/target/release/must-ds), run with conftest's `tool_env` (torch's lib
folder on LD_LIBRARY_PATH: the binary links libtorch). Each test takes from
a few seconds to about 30 s on 2 CPU cores.
"""
import io
import json
import subprocess
import sys

import numpy as np
import pytest

import must_ds
from conftest import REPO, tool_env

PYTHON_TEACHER = REPO / "tools" / "reference" / "python_teacher.py"
FACE_TEACHER = REPO / "examples" / "face_teacher.py"
PHOTOS = REPO / "data" / "photos"
# The astronaut's face in data/photos/astronaut.jpg (512 x 512), x0, y0, x1, y1.
ASTRONAUT_FACE = [180, 60, 269, 173]
TIMEOUT = 600
ENV = tool_env()


@pytest.fixture
def must(must_bin):
    """must(*args): runs the must-ds command, asserts it succeeded, returns its stdout."""
    def run(*args):
        p = subprocess.run([must_bin, *map(str, args)], env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
        assert p.returncode == 0, f"must-ds {args} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
        return p.stdout
    return run


def run_script(script, *args):
    """Runs a teacher with this interpreter; returns its JSON summary (the last stdout line)."""
    p = subprocess.run([sys.executable, str(script), *map(str, args)], env=ENV, capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert p.returncode == 0, f"{script.name} {args} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return json.loads(p.stdout.strip().splitlines()[-1])


def rows(ds, task):
    """image_id -> (row of the image columns and the task's label columns), every shard."""
    out = {}
    for s in ds.shards:
        for g in range(len(s["row_groups"])):
            d = ds.read_row_group(s["shard"], g, [task]).to_pydict()
            for i, image_id in enumerate(d["image_id"]):
                out[image_id] = {k: v[i] for k, v in d.items()}
    return out


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def make_demo(must, tmp_path, images):
    root = tmp_path / "demo"
    must("demo", root, "--images", images)
    return root


# ---------------------------------------------------------------- python_teacher


def test_python_teacher_labels_every_shard_top_k(must, tmp_path):
    root = make_demo(must, tmp_path, 140)  # shards of 96 and 44 rows, row groups of 32
    must("task", "define", root, "--name", "py-cls", "--kind", "classification", "--num-classes", "10",
         "--teacher", "resnet18", "--param", "input_size=64", "--param", "top_k=3")
    # --must is accepted for older callers and ignored (nothing runs the binary).
    report = run_script(PYTHON_TEACHER, root, "--task", "py-cls", "--must", "/nonexistent/must-ds")
    assert report == {"task": "py-cls", "labeled_shards": [0, 1]}

    ds = must_ds.Dataset(root)
    assert ds.labeled("py-cls") == {0, 1}
    files = {f["shard"]: f for f in ds.label_files if f["task"] == "py-cls"}
    shards = {s["shard"]: s for s in ds.shards}
    for k, f in files.items():
        assert f["rows"] == f["labeled"] == shards[k]["rows"], f
    labels = rows(ds, "py-cls")
    assert len(labels) == 140
    for image_id, r in labels.items():
        classes, probs = r["py-cls.classes"], r["py-cls.probs"]
        assert len(classes) == len(probs) == 3, image_id
        assert len(set(classes)) == 3 and all(0 <= c < 10 for c in classes), image_id
        assert all(a >= b for a, b in zip(probs, probs[1:])), image_id
        assert 0 < sum(probs) <= 1 + 1e-5, image_id
    must("validate", root, "--no-decode")

    # A rerun finds every shard labeled and commits nothing.
    version = ds.version
    assert run_script(PYTHON_TEACHER, root, "--task", "py-cls") == {"task": "py-cls", "labeled_shards": []}
    assert must_ds.Dataset(root).version == version


def test_python_teacher_dense_follows_the_teacher_params(must, tmp_path):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from PIL import Image

    root = make_demo(must, tmp_path, 140)
    params = {"input_size": 48, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "temperature": 3.0}
    ds = must_ds.Dataset(root)
    assert ds.define_task({"name": "dense", "kind": "classification", "num_classes": 5, "encoding": "dense",
                           "teacher": {"name": "resnet18", "params": params}})
    # batches of 5 straddle the row groups (32, 32, 32 | 32, 12)
    report = run_script(PYTHON_TEACHER, root, "--task", "dense", "--batch", "5")
    assert report == {"task": "dense", "labeled_shards": [0, 1]}

    ds = must_ds.Dataset(root)
    labels = rows(ds, "dense")
    assert len(labels) == 140
    for image_id, r in labels.items():
        p = r["dense.probs"]
        assert len(p) == 5 and min(p) >= 0 and abs(sum(p) - 1) < 1e-4, image_id

    # The same model and preprocessing, done here for a few images: stretch
    # resize to input_size, (x/255 - mean) / std, softmax(logits / temperature).
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    mean, std = np.array(params["mean"], np.float32), np.array(params["std"], np.float32)
    s = params["input_size"]
    picked = [r for i, r in enumerate(labels.values()) if i in (0, 33, 97, 139)]
    x = torch.stack([
        torch.from_numpy(((np.asarray(Image.open(io.BytesIO(r["image"])).convert("RGB").resize((s, s), Image.BILINEAR),
                                      np.float32) / 255.0 - mean) / std).transpose(2, 0, 1).copy())
        for r in picked])
    with torch.no_grad():
        want = torch.softmax(model(x) / params["temperature"], 1).numpy()
    got = np.array([r["dense.probs"] for r in picked], np.float32)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_python_teacher_refuses_a_task_it_cannot_label(must, tmp_path):
    root = make_demo(must, tmp_path, 12)
    for task, msg in [("bright-regions", "labels classification tasks"), ("nope", "no task 'nope'")]:
        p = subprocess.run([sys.executable, str(PYTHON_TEACHER), str(root), "--task", task], env=ENV,
                           capture_output=True, text=True, timeout=TIMEOUT)
        assert p.returncode != 0 and msg in p.stderr, p.stderr


# ---------------------------------------------------------------- face_teacher


def need_facenet():
    try:
        import facenet_pytorch  # noqa: F401
    except ImportError as e:
        pytest.skip(f"facenet_pytorch is not importable ({e}); install it with "
                    "`python3 -m pip install --no-deps facenet-pytorch==2.6.0 tqdm`")


def test_face_teacher_finds_the_astronaut(must, tmp_path):
    need_facenet()
    root = tmp_path / "faces"
    must("init", root, "--name", "faces")
    # LICENSE.md is skipped (not an image): 7 photos in shards of 4 rows, row groups of 2
    must("ingest", root, "--from", PHOTOS, "--source", "photos", "--shard-rows", 4, "--row-group-rows", 2)
    ds = must_ds.Dataset(root)
    shard_ids = sorted(s["shard"] for s in ds.shards)
    assert sum(s["rows"] for s in ds.shards) == 7 and any(len(s["row_groups"]) > 1 for s in ds.shards)

    report = run_script(FACE_TEACHER, root)
    assert sorted(report["shards_labeled"]) == shard_ids and report["shards_skipped"] == []
    assert (report["images"], report["images_with_faces"], report["faces"], report["undecodable"]) == (7, 1, 1, 0)

    ds = must_ds.Dataset(root)
    assert ds.version == report["version"]
    task = ds.tasks["faces"]
    assert task["kind"] == "detection" and task["class_names"] == ["face"] and task["teacher"]["name"] == "mtcnn"
    assert ds.labeled("faces") == set(shard_ids)
    for f in ds.label_files:
        if f["task"] == "faces":
            assert f["labeled"] == f["rows"], f
    labels = rows(ds, "faces")
    assert len(labels) == 7
    for image_id, r in labels.items():
        if image_id == "photos/astronaut.jpg":
            continue
        assert r["faces.boxes"] == [] and r["faces.scores"] == [], image_id  # labeled: no face
    a = labels["photos/astronaut.jpg"]
    assert (a["width"], a["height"]) == (512, 512)
    assert len(a["faces.boxes"]) == 1 and a["faces.classes"] == [0], a["faces.boxes"]
    assert a["faces.scores"][0] >= 0.9
    assert iou(a["faces.boxes"][0], ASTRONAUT_FACE) > 0.7, a["faces.boxes"][0]

    must("validate", root)
    png = tmp_path / "face.png"
    must("render", root, "--task", "faces", "--image-id", "photos/astronaut.jpg", "--out", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A rerun skips every shard; the same definition is not committed again.
    again = run_script(FACE_TEACHER, root)
    assert again["shards_labeled"] == [] and sorted(again["shards_skipped"]) == shard_ids
    assert again["images"] == 0 and again["version"] == report["version"]


def test_face_teacher_on_the_demo(must, tmp_path):
    need_facenet()
    root = make_demo(must, tmp_path, 21)  # 3 crops or flips of each of the 7 photos
    report = run_script(FACE_TEACHER, root, "--task", "face-demo", "--min-prob", "0.95")
    assert report["shards_labeled"] == [0] and report["images"] == 21 and report["undecodable"] == 0
    ds = must_ds.Dataset(root)
    assert ds.tasks["face-demo"]["teacher"]["params"]["min_prob"] == 0.95
    labels = rows(ds, "face-demo")
    with_faces = {i for i, r in labels.items() if r["face-demo.boxes"]}
    assert len(with_faces) == report["images_with_faces"] >= 1
    assert all(i.startswith("demo/astronaut_") for i in with_faces), with_faces
    for image_id, r in labels.items():
        assert r["face-demo.boxes"] is not None, image_id  # every row labeled
        for (x0, y0, x1, y1), score in zip(r["face-demo.boxes"], r["face-demo.scores"]):
            assert 0 <= x0 < x1 <= r["width"] and 0 <= y0 < y1 <= r["height"], image_id
            assert score >= 0.95, image_id
    must("validate", root, "--no-decode")


def test_face_teacher_small_odd_and_broken_images(must, tmp_path):
    need_facenet()
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (10, 10), (200, 100, 50)).save(src / "tiny.png")  # under min_face_size
    Image.new("RGB", (1, 1)).save(src / "one.png")
    Image.new("L", (64, 48), 128).save(src / "gray.png")
    Image.new("RGBA", (40, 30), (1, 2, 3, 4)).save(src / "rgba.png")
    jpeg = (PHOTOS / "coffee.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])  # header intact, data cut
    root = tmp_path / "odd"
    must("init", root, "--name", "odd")
    must("ingest", root, "--from", src, "--source", "odd")
    assert sum(s["rows"] for s in must_ds.Dataset(root).shards) == 5, "ingest took every file"

    report = run_script(FACE_TEACHER, root)
    assert (report["images"], report["faces"], report["undecodable"]) == (4, 0, 1)
    labels = rows(must_ds.Dataset(root), "faces")
    for name in ("tiny", "one", "gray", "rgba"):
        assert labels[f"odd/{name}.png"]["faces.boxes"] == [], name  # labeled: no face
    assert labels["odd/truncated.jpg"]["faces.boxes"] is None  # left unlabeled
