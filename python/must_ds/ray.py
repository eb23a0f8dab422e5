"""must-ds on Ray: a Ray Data source and a labeler that runs a Python teacher
on Ray actors. Needs Ray Data (`pip install "ray[data]"`); `import must_ds`
works without it, only this module imports Ray.

Reading::

    import must_ds.ray

    ds = must_ds.ray.read_must("s3://bucket/corpus", ["det", "seg"])
    ds.schema()        # image_id, source, image, uri, width, height, det.boxes, ..., seg.mask, ...
    for batch in ds.iter_batches(batch_size=256, batch_format="pyarrow"):
        ...

One read task (and one block) per (image shard, row group), each the
`pyarrow` data of `must_ds.Dataset(root, version).read_row_group(shard,
group, tasks)`: the image columns, then `<task>.<column>` for each task
(null where a shard has no labels for the task). The version is fixed when
`read_must` is called (the newest, or `version=`), so every read task reads
the same snapshot whatever is committed meanwhile. Other keywords go to
`ray.data.read_datasource` (`override_num_blocks`, `concurrency`,
`num_cpus`, `ray_remote_args`, ...): with `override_num_blocks` lower than
the number of row groups, each read task reads several consecutive row
groups, none is left out.

Labeling::

    import must_ds.ray

    class Teacher:
        def __init__(self, task, arch="resnet18"):       # task: the task's definition (a dict)
            self.model = load(arch, task["num_classes"]).cuda().eval()
        def label(self, images, image_ids):              # encoded image bytes, their ids
            probs = self.model(decode(images).cuda()).softmax(1).cpu().numpy()
            return [{"probs": p} for p in probs]         # keywords of LabelWriter.set, per image

    report = must_ds.ray.label_with_ray("s3://bucket/corpus", "cls", Teacher, num_gpus=1,
                                        concurrency=8, teacher_kwargs={"arch": "resnet50"})
    # {"labeled": [0, 3, ...], "skipped": [1], "lost": [], "images": 812345, "seconds": 3110.2, ...}

The teacher protocol (`label_with_ray`):

* `TeacherClass(task, *teacher_args, **teacher_kwargs)` is constructed once
  per actor; `task` is the task's definition as `Dataset.tasks[name]` gives
  it (`name`, `kind`, `num_classes`, `encoding`, `teacher` with its
  `params`, ...). The actor holds `num_gpus` GPUs and `num_cpus` CPUs; Ray
  sets `CUDA_VISIBLE_DEVICES`, so "cuda" is the actor's GPU.
* `teacher.label(images, image_ids)` gets up to `batch_size` images of one
  image shard, in the shard's order: `images` a list of the encoded bytes as
  stored (JPEG, PNG, ...), `image_ids` their ids. It returns a list of the
  same length; item i is the keyword arguments of `LabelWriter.set` for
  image i (by task kind: `probs` and `classes`, or all C `probs` with an
  optional `top_k`; `boxes`, `classes`, `scores`; `mask`, `confidence`;
  `depth`; numpy arrays, torch CPU tensors or lists), or None to leave the
  image unlabeled (absent). Every value is checked as the Rust writer checks
  it.

Each shard is one actor call; its labels are committed
(`Dataset.add_labels`, one commit per shard) as soon as the shard is done,
so an interrupted run keeps every shard it finished and a rerun labels only
what is left.
"""
import functools
import json
import logging
import pickle
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

try:
    import ray
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask
except ImportError as _e:  # pragma: no cover - exercised where ray is absent
    raise ImportError(f"must_ds.ray needs Ray Data: pip install 'ray[data]' ({_e})") from _e

import must_ds

__all__ = ["read_must", "MustDatasource", "label_with_ray", "LabelingError"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- reading

_OPENED = {}
_OPENED_LOCK = threading.Lock()
_OPENED_MAX = 8


def _options_key(storage_options):
    return json.dumps(storage_options or {}, sort_keys=True)


def _open_pinned(root, version, storage_options):
    """The dataset at a fixed version, opened once per worker process (a
    version never changes, so the handle can be shared)."""
    key = (root, version, _options_key(storage_options))
    with _OPENED_LOCK:
        ds = _OPENED.get(key)
    if ds is None:
        ds = must_ds.Dataset(root, version, storage_options)
        with _OPENED_LOCK:
            if len(_OPENED) >= _OPENED_MAX:
                _OPENED.pop(next(iter(_OPENED)))
            _OPENED[key] = ds
    return ds


def _read_units(root, version, storage_options, tasks, units):
    """A read task's body: one pyarrow Table per (shard, row group)."""
    import pyarrow as pa

    ds = _open_pinned(root, version, storage_options)
    for shard, group in units:
        try:
            rb = ds.read_row_group(shard, group, tasks)
        except must_ds.MustError as e:
            _locate(e, root, version, shard, group)
            raise
        yield pa.Table.from_batches([rb])


def _locate(e, root, version, shard, group):
    """Adds the image shard and row group to a must_ds error that lacks them
    (errors of the Parquet reader name only the file)."""
    if getattr(e, "shard", None) is None:
        e.shard = shard
    if getattr(e, "row_group", None) is None:
        e.row_group = group
    if e.args and isinstance(e.args[0], str):
        e.args = (f"{e.args[0]} (reading image shard {shard}, row group {group} of {root} at version {version})",
                  *e.args[1:])


class MustDatasource(Datasource):
    """A must-ds dataset as a Ray Data source, pinned to one version (see
    `read_must`). The dataset is opened once here, on the driver; read tasks
    carry the URL, the version and the (shard, row group) pairs they read."""

    def __init__(self, root, tasks=(), version=None, storage_options=None):
        super().__init__()
        if isinstance(tasks, str):
            tasks = [tasks]
        ds = must_ds.Dataset(root, version, storage_options)
        defined = ds.tasks
        for t in tasks:
            if t not in defined:
                raise must_ds.NotFoundError(
                    f"no task {t!r} in {ds.url} at version {ds.version} "
                    f"(tasks: {', '.join(sorted(defined)) or 'none'})")
        self.root = str(root)
        self.url = ds.url
        self.version = ds.version
        self.tasks = list(tasks)
        self.storage_options = dict(storage_options) if storage_options else None
        label_bytes = {}  # shard -> bytes of the requested tasks' label files
        for f in ds.label_files:
            if f["task"] in self.tasks:
                label_bytes[f["shard"]] = label_bytes.get(f["shard"], 0) + int(f.get("bytes") or 0)
        # (shard, group, rows, estimated bytes, image file), in shard order.
        self.units = []
        for s in sorted(ds.shards, key=lambda s: s["shard"]):
            rows = max(int(s["rows"]), 1)
            per_row = (int(s.get("bytes") or 0) + label_bytes.get(s["shard"], 0)) / rows
            for g, n in enumerate(s["row_groups"]):
                self.units.append((s["shard"], g, int(n), int(per_row * n), s["path"]))

    def get_name(self):
        return "ReadMust"

    def estimate_inmemory_data_size(self):
        return sum(u[3] for u in self.units)

    def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
        """One read task per (shard, row group); with `parallelism` lower than
        that, consecutive row groups share a task (no row group is dropped)."""
        units = self.units
        if not units:
            return []
        n = len(units) if parallelism is None or parallelism <= 0 else min(parallelism, len(units))
        base, extra = divmod(len(units), n)
        read_tasks, start = [], 0
        for i in range(n):
            chunk = units[start:start + base + (1 if i < extra else 0)]
            start += len(chunk)
            meta = BlockMetadata(
                num_rows=sum(u[2] for u in chunk),
                size_bytes=sum(u[3] for u in chunk),
                input_files=sorted({u[4] for u in chunk}),
                exec_stats=None,
            )
            fn = functools.partial(_read_units, self.root, self.version, self.storage_options,
                                   self.tasks, [(u[0], u[1]) for u in chunk])
            read_tasks.append(ReadTask(fn, meta, per_task_row_limit=per_task_row_limit))
        return read_tasks


def read_must(root, tasks, version=None, storage_options=None, **ray_kwargs):
    """A `ray.data.Dataset` of a must-ds dataset's rows with the labels of
    `tasks` (a list of task names, a name, or () for the image columns only).

    One read task and one block per (image shard, row group): the Arrow
    data of `Dataset.read_row_group(shard, group, tasks)`. The version is
    fixed now (the newest, or `version=`) and every read task reads it.
    `storage_options` are object-store settings, as for `must_ds.Dataset`.
    Other keywords go to `ray.data.read_datasource`; `override_num_blocks`
    (default: the number of row groups) lower than the number of row groups
    puts consecutive row groups in one read task. Errors of the store
    (a corrupt or missing file) fail the read with the `must_ds` exception,
    which names the file and row group."""
    source = MustDatasource(root, tasks, version, storage_options)
    if "override_num_blocks" not in ray_kwargs and "parallelism" not in ray_kwargs and source.units:
        ray_kwargs["override_num_blocks"] = len(source.units)
    return ray.data.read_datasource(source, **ray_kwargs)


# ---------------------------------------------------------------- labeling


class LabelingError(RuntimeError):
    """A shard could not be labeled: the teacher raised, returned something
    that is not a label, or the writer refused a value. `shard` names the
    image shard, `image_id` the image where it is known (`image_ids`: the
    batch the teacher was given), `original` the exception raised (or its
    text when it could not travel from the actor), `remote_traceback` the
    actor's traceback. From `label_with_ray`, `report` holds what the run
    did before it stopped (as its return value)."""

    def __init__(self, message, shard=None, image_id=None, image_ids=None):
        super().__init__(message)
        self.shard = shard
        self.image_id = image_id
        self.image_ids = image_ids
        self.original = None
        self.remote_traceback = None
        self.report = None

    def __reduce__(self):
        return (type(self), (self.args[0], self.shard, self.image_id, self.image_ids), self.__dict__)


def _portable(e):
    """`e` if it can be pickled, else its text."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return f"{type(e).__name__}: {e}"


def _fail(message, shard, e, image_id=None, image_ids=None):
    err = LabelingError(message, shard=shard, image_id=image_id, image_ids=image_ids)
    err.original = _portable(e) if e is not None else None
    err.remote_traceback = traceback.format_exc() if e is not None else None
    return err


def _batches(ds, shard, groups, batch_size):
    """(image_ids, images) batches of `batch_size` over a shard's row groups,
    in order, the next row group read while the current one is labeled."""
    ids, data = [], []
    with ThreadPoolExecutor(1) as pool:
        ahead = pool.submit(ds.read_row_group, shard, 0) if groups else None
        for g in range(groups):
            cols = ahead.result()
            ahead = pool.submit(ds.read_row_group, shard, g + 1) if g + 1 < groups else None
            cols = cols.select(["image_id", "image", "uri"]).to_pydict()
            for image_id, image, uri in zip(cols["image_id"], cols["image"], cols["uri"]):
                if image is None:
                    raise LabelingError(
                        f"image shard {shard}: {image_id} is not embedded in the dataset (uri {uri}); "
                        f"label_with_ray reads embedded images only", shard=shard, image_id=image_id)
                ids.append(image_id)
                data.append(image)
                if len(ids) == batch_size:
                    yield ids, data
                    ids, data = [], []
    if ids:
        yield ids, data


class _ShardLabeler:
    """The actor: one teacher, any number of shards, one call each."""

    def __init__(self, root, storage_options, task, teacher_class, teacher_args, teacher_kwargs):
        self.root, self.storage_options, self.task = root, storage_options, task
        self.teacher_class = teacher_class
        self.teacher_args, self.teacher_kwargs = tuple(teacher_args), dict(teacher_kwargs or {})
        self.teacher = None
        self.ds = None

    def _dataset(self):
        """The actor's handle, moved to the newest version."""
        if self.ds is None:
            self.ds = must_ds.Dataset(self.root, None, self.storage_options)
        else:
            self.ds.refresh()
        return self.ds

    def _teacher(self):
        if self.teacher is None:
            definition = self._dataset().tasks[self.task]
            try:
                self.teacher = self.teacher_class(definition, *self.teacher_args, **self.teacher_kwargs)
            except Exception as e:
                name = getattr(self.teacher_class, "__name__", repr(self.teacher_class))
                raise _fail(f"the teacher {name}(...) could not be constructed: {type(e).__name__}: {e}",
                            None, e) from e
        return self.teacher

    def start(self):
        """Constructs the teacher (before any shard is given out)."""
        self._teacher()
        return True

    def label_shard(self, shard, batch_size, replace):
        t0 = time.perf_counter()
        teacher = self._teacher()
        ds = self._dataset()  # the newest version
        out = dict(shard=shard, images=0, rows=0, seconds=0.0, version=ds.version)
        if not replace and shard in ds.labeled(self.task):
            return dict(out, status="skipped")
        info = next((s for s in ds.shards if s["shard"] == shard), None)
        if info is None:
            raise LabelingError(f"image shard {shard} is not in {ds.url} at version {ds.version}", shard=shard)
        writer = ds.label_writer(self.task, shard)
        labeled = 0
        for ids, images in _batches(ds, shard, len(info["row_groups"]), batch_size):
            where = f"image shard {shard}, images {ids[0]} .. {ids[-1]}" if len(ids) > 1 else f"image shard {shard}, {ids[0]}"
            try:
                labels = teacher.label(images, ids)
            except Exception as e:
                raise _fail(f"{where}: the teacher raised {type(e).__name__}: {e}", shard, e,
                            image_id=ids[0] if len(ids) == 1 else None, image_ids=ids) from e
            try:
                labels = list(labels)
            except TypeError as e:
                raise _fail(f"{where}: the teacher returned {type(labels).__name__}, not a list of dicts",
                            shard, e, image_ids=ids) from e
            if len(labels) != len(ids):
                raise _fail(f"{where}: the teacher returned {len(labels)} labels for {len(ids)} images",
                            shard, None, image_ids=ids)
            for image_id, fields in zip(ids, labels):
                if fields is None:
                    continue  # left unlabeled (absent)
                if not isinstance(fields, dict):
                    raise _fail(f"image shard {shard}, {image_id}: the teacher returned "
                                f"{type(fields).__name__}, not a dict of LabelWriter.set fields or None",
                                shard, None, image_id=image_id, image_ids=ids)
                try:
                    writer.set(image_id, **fields)
                except Exception as e:
                    raise _fail(f"image shard {shard}, {image_id}: the label was refused: "
                                f"{type(e).__name__}: {e}", shard, e, image_id=image_id, image_ids=ids) from e
                labeled += 1
        out.update(rows=len(writer.image_ids), images=labeled)
        # Labeled by someone else while this actor worked: theirs stays.
        ds.refresh()
        if not replace and shard in ds.labeled(self.task):
            return dict(out, status="lost", images=0, version=ds.version, seconds=time.perf_counter() - t0)
        try:
            ds.add_labels(self.task, shard, writer, replace=replace)
        except must_ds.ConflictError:
            ds.refresh()
            if shard in ds.labeled(self.task):  # a commit of the same shard won the race
                return dict(out, status="lost", images=0, version=ds.version, seconds=time.perf_counter() - t0)
            raise
        return dict(out, status="labeled", version=ds.version, seconds=time.perf_counter() - t0)


def _as_labeling_error(e, shard):
    """The LabelingError of a failed actor call."""
    if isinstance(e, ray.exceptions.RayTaskError):
        cause = getattr(e, "cause", None)
        if isinstance(cause, LabelingError):
            if cause.shard is None and shard is not None:
                cause.shard = shard
                cause.args = (f"{cause.args[0]} (for image shard {shard})",)
            return cause
        if cause is not None:
            err = LabelingError(f"image shard {shard}: {type(cause).__name__}: {cause}", shard=shard)
            err.original = cause
            return err
    return LabelingError(f"image shard {shard}: the actor failed: {type(e).__name__}: {e}", shard=shard)


def label_with_ray(root, task, TeacherClass, *, num_gpus=0, num_cpus=1, concurrency=1, batch_size=32,
                   shards=None, replace=False, storage_options=None, teacher_args=(), teacher_kwargs=None,
                   max_retries=2):
    """Labels `task` with a Python teacher on `concurrency` Ray actors, one
    image shard per actor call, each shard committed (one commit) as soon as
    it is done. The teacher protocol is in this module's docstring:
    `TeacherClass(task_definition, *teacher_args, **teacher_kwargs)` once per
    actor, then `label(images, image_ids) -> list of dicts` (the keywords of
    `LabelWriter.set`, or None for an image left unlabeled).

    `shards`: the image shard ids to label (default: all). Shards that have
    labels for the task are skipped, checked again when an actor takes the
    shard; one labeled by someone else while the actor worked (found just
    before committing, or a commit conflict) is "lost": their labels stay,
    this run's are dropped. `replace=True` relabels every shard given.
    Each actor requests `num_cpus` and `num_gpus`; an actor that dies (node
    lost, out of memory) is restarted and its shard retried up to
    `max_retries` times. Ray is initialised with `ray.init()`'s defaults if
    it is not already.

    Returns {"labeled": [...], "skipped": [...], "lost": [...] (shard ids),
    "images": labels written, "seconds": wall time, "version": the newest
    version seen}. A failing shard (the teacher raised, returned a bad
    label, or the writer refused a value) commits nothing for that shard;
    no further shard is started, those under way are finished, then a
    `LabelingError` naming the shard (and the image_id where known) is
    raised, its `report` holding what the run did. Shards committed stay;
    a rerun labels the rest."""
    t0 = time.perf_counter()
    if batch_size < 1 or concurrency < 1:
        raise ValueError("batch_size and concurrency must be at least 1")
    root = str(root)
    storage_options = dict(storage_options) if storage_options else None
    ds = must_ds.Dataset(root, None, storage_options)
    defined = ds.tasks
    if task not in defined:
        raise must_ds.NotFoundError(f"no task {task!r} in {ds.url} (tasks: {', '.join(sorted(defined)) or 'none'})")
    known = sorted(s["shard"] for s in ds.shards)
    if shards is None:
        wanted = known
    else:
        wanted = sorted({int(s) for s in shards})
        missing = sorted(set(wanted) - set(known))
        if missing:
            raise must_ds.NotFoundError(f"image shards {missing} are not in {ds.url} at version {ds.version}")
    done = set() if replace else ds.labeled(task)
    report = {"labeled": [], "skipped": sorted(k for k in wanted if k in done), "lost": [],
              "images": 0, "seconds": 0.0, "version": ds.version}
    queue = [k for k in wanted if k not in done]
    if not queue:
        report["seconds"] = time.perf_counter() - t0
        return report

    actor_class = ray.remote(_ShardLabeler).options(
        num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=max_retries, max_task_retries=max_retries)
    actors = [actor_class.remote(root, storage_options, task, TeacherClass, teacher_args, teacher_kwargs)
              for _ in range(min(concurrency, len(queue)))]
    failure = None
    try:
        try:
            ray.get([a.start.remote() for a in actors])
        except ray.exceptions.RayError as e:
            failure = _as_labeling_error(e, None)
            failure.report = report
            raise failure
        idle, running = list(actors), {}
        while queue or running:
            while idle and queue and failure is None:
                a, k = idle.pop(), queue.pop(0)
                running[a.label_shard.remote(k, batch_size, replace)] = (a, k)
            if not running:
                break
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                a, k = running.pop(ref)
                idle.append(a)
                try:
                    r = ray.get(ref)
                except ray.exceptions.RayError as e:
                    if failure is None:
                        failure = _as_labeling_error(e, k)
                    else:
                        log.error("image shard %s failed as well: %s", k, e)
                    continue
                report[r["status"]].append(k)
                report["images"] += r["images"]
                report["version"] = max(report["version"], r["version"])
                log.info("label_with_ray: image shard %s %s (%d images, %.1f s)", k, r["status"], r["images"], r["seconds"])
        for key in ("labeled", "skipped", "lost"):
            report[key].sort()
        report["seconds"] = time.perf_counter() - t0
        if failure is not None:
            failure.report = report
            raise failure
        return report
    finally:
        for a in actors:
            ray.kill(a)
