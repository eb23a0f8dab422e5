"""The dataset (tasks, shards, row groups as Arrow) and the checked label
writer, over `must_ds._native`."""
import json

import numpy as np

from . import _native


def _array(x):
    """A contiguous CPU array with __dlpack__ (torch tensors stay torch)."""
    if hasattr(x, "__dlpack__") and hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu().contiguous()
    return np.ascontiguousarray(x)


class LabelWriter:
    """The label file of one (task, image shard), written through the same
    checks as the Rust writer. Rows not set stay absent (null)."""

    def __init__(self, native):
        self._native = native

    @property
    def task(self):
        """The task's name."""
        return self._native.task

    @property
    def image_ids(self):
        """The shard's image ids, in order."""
        return self._native.image_ids

    def set(self, image_id, **fields):
        """Sets the label of `image_id`; every value is checked against the task.

        Fields (numpy arrays, torch CPU tensors or lists), by task kind:

        * classification: `probs` (k, with `classes` (k) for top-k tasks; or all
          C probabilities, of which `top_k=` (default 5) are kept);
        * detection: `boxes` (N, 4) as x0, y0, x1, y1 in pixels of the stored
          image, `classes` (N), `scores` (N);
        * segmentation: `mask` (H, W) integers in the task's dtype, optional
          `confidence` (H, W) as floats in [0, 1] or uint8;
        * depth: `depth` (H, W) floats, NaN where invalid.

        Raises `InvalidDataError` (or `MustError`) naming the image_id.
        """
        conv = {k: (v if k == "top_k" or v is None else _array(v)) for k, v in fields.items()}
        self._native.set(image_id, **conv)


class Dataset:
    """A must-ds dataset at one version: a local folder, `file://`, `s3://`,
    `gs://` or `az://` URL. `storage_options` holds object-store settings
    (`aws_endpoint`, `aws_region`, `aws_allow_http`, ...) over the
    environment's."""

    def __init__(self, root, version=None, storage_options=None):
        self._native = _native.Dataset(str(root), version, storage_options)

    @property
    def version(self):
        """The version read."""
        return self._native.version

    @property
    def url(self):
        """Where the dataset is (no credentials)."""
        return self._native.url

    @property
    def tasks(self):
        """Task name → definition (schemas/task.schema.json)."""
        return json.loads(self._native.tasks_json())

    @property
    def shards(self):
        """Image shards: dicts with `shard`, `path`, `rows`, `row_groups`, `sources`, ..."""
        return json.loads(self._native.shards_json())

    @property
    def label_files(self):
        """Label files: dicts with `task`, `shard`, `path`, `rows`, `labeled`, ..."""
        return json.loads(self._native.labels_json())

    def labeled(self, task):
        """The ids of the image shards that have labels for `task`."""
        return {f["shard"] for f in self.label_files if f["task"] == task}

    def refresh(self):
        """Moves to the newest version; returns it."""
        return self._native.refresh()

    def define_task(self, definition):
        """Defines a task (a dict or JSON text, schemas/task.schema.json).
        Returns True when committed, False when the same definition exists."""
        if not isinstance(definition, str):
            definition = json.dumps(definition)
        return self._native.define_task(definition)

    def read_row_group(self, shard, row_group, tasks=()):
        """Row group `row_group` of image shard `shard` with the same row group
        of each task, as a `pyarrow.RecordBatch` (image columns, then
        `<task>.<column>`), handed over through the Arrow C data interface."""
        import pyarrow as pa

        return pa.record_batch(self._native.read_row_group(shard, row_group, list(tasks)))

    def label_writer(self, task, shard):
        """A checked writer of `task`'s labels for image shard `shard`."""
        return LabelWriter(self._native.label_writer(task, shard))

    def add_labels_from(self, task, data, *, shard=None, replace=False, skip_labeled=False,
                        columns=None, box_format="xyxy", top_k=5, memory_bytes=1 << 30):
        """Labels from any engine: `data` is a pyarrow Table, RecordBatch,
        RecordBatchReader, a list of RecordBatches, or anything with
        `__arrow_c_stream__` (Polars, DuckDB results). Rows are matched to
        image shards by `image_id` in any order; each shard gets an aligned
        copy, committed on its own (ids not mentioned are absent labels).
        `columns` maps format columns to input ones ({"boxes": "pred_boxes"});
        `box_format` is "xyxy", "xywh" or "xyxy-normalized"; a top-k task
        given all C probabilities keeps `top_k`. Returns a report (rows in,
        missing ids, shards committed or skipped)."""
        import pyarrow as pa

        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        elif isinstance(data, (list, tuple)):
            data = pa.Table.from_batches(list(data))
        if not hasattr(data, "__arrow_c_stream__"):
            raise TypeError(f"add_labels_from takes Arrow data (a pyarrow Table, RecordBatchReader, ...), not {type(data).__name__}")
        opts = dict(shard=shard, replace=replace, skip_labeled=skip_labeled, columns=columns,
                    box_format=box_format, top_k=top_k, memory_bytes=memory_bytes)
        return json.loads(self._native.add_labels_from(task, data, json.dumps(opts)))

    def add_labels(self, task, shard, writer, replace=False):
        """Writes `writer`'s file and commits it; returns the committed action."""
        return json.loads(self._native.add_labels(task, shard, writer._native, replace))
