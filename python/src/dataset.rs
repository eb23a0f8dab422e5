//! `must_ds._native.Dataset` and `LabelWriter`: the store and the checked
//! label writer, with row groups handed to pyarrow through the Arrow C data
//! interface.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::sync::{Mutex, MutexGuard};

use arrow_array::ffi::{to_ffi, FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::{Array, StructArray};
use must_ds::codec::{ClassLabel, DepthMap, Detections, Label, SegMap};
use must_ds::format::{ClassEncoding, MaskDtype, TaskDef, TaskKind};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::dlpack::{import, Array as PyArray};
use crate::{block_on, open_dataset, to_py_err, MustError};

/// An opened dataset (see the Python class `must_ds.Dataset`).
#[pyclass(module = "must_ds._native")]
pub struct Dataset {
    ds: Mutex<must_ds::Dataset>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn json<T: serde::Serialize>(v: &T) -> PyResult<String> {
    serde_json::to_string(v).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// A record batch exported through the Arrow PyCapsule interface
/// (`pyarrow.record_batch(obj)` imports it without a copy).
#[pyclass(module = "must_ds._native")]
pub struct ArrowBatch {
    array: Mutex<Option<StructArray>>,
}

#[pymethods]
impl ArrowBatch {
    /// The schema capsule.
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        let g = lock(&self.array);
        let a = g
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("the batch was already exported"))?;
        let schema = FFI_ArrowSchema::try_from(a.data_type())
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        PyCapsule::new_with_value(py, schema, c"arrow_schema")
    }

    /// The (schema, array) capsules; the batch can be exported once.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
        let _ = requested_schema;
        let a = lock(&self.array)
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("the batch was already exported"))?;
        let (array, schema): (FFI_ArrowArray, FFI_ArrowSchema) =
            to_ffi(&a.to_data()).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        const S: &CStr = c"arrow_schema";
        const A: &CStr = c"arrow_array";
        Ok((
            PyCapsule::new_with_value(py, schema, S)?,
            PyCapsule::new_with_value(py, array, A)?,
        ))
    }
}

#[pymethods]
impl Dataset {
    #[new]
    #[pyo3(signature = (root, version=None, storage_options=None))]
    fn new(
        py: Python<'_>,
        root: String,
        version: Option<u64>,
        storage_options: Option<BTreeMap<String, String>>,
    ) -> PyResult<Self> {
        Ok(Self {
            ds: Mutex::new(open_dataset(py, &root, version, storage_options)?),
        })
    }

    /// The version this handle reads.
    #[getter]
    fn version(&self) -> u64 {
        lock(&self.ds).version()
    }

    /// The dataset's URL (no credentials).
    #[getter]
    fn url(&self) -> String {
        lock(&self.ds).url().to_owned()
    }

    /// Task definitions as JSON (name → definition).
    fn tasks_json(&self) -> PyResult<String> {
        let g = lock(&self.ds);
        let m: BTreeMap<&String, serde_json::Value> = g
            .snapshot()
            .tasks
            .iter()
            .map(|(k, t)| (k, serde_json::to_value(t).unwrap_or_default()))
            .collect();
        json(&m)
    }

    /// Image shards as JSON (the log's `add_images` actions with their ids).
    fn shards_json(&self) -> PyResult<String> {
        let g = lock(&self.ds);
        let v: Vec<serde_json::Value> = g
            .snapshot()
            .images
            .values()
            .map(|a| serde_json::to_value(a).unwrap_or_default())
            .collect();
        json(&v)
    }

    /// Label files as JSON (the log's `add_labels` actions).
    fn labels_json(&self) -> PyResult<String> {
        let g = lock(&self.ds);
        let v: Vec<serde_json::Value> = g
            .snapshot()
            .labels
            .values()
            .map(|a| serde_json::to_value(a).unwrap_or_default())
            .collect();
        json(&v)
    }

    /// Reads the newest version.
    fn refresh(&self, py: Python<'_>) -> PyResult<u64> {
        let mut ds = lock(&self.ds).clone();
        block_on(py, ds.refresh()).map_err(|e| to_py_err(py, e))?;
        let v = ds.version();
        *lock(&self.ds) = ds;
        Ok(v)
    }

    /// Defines a task from its JSON definition; returns whether a commit was made
    /// (an identical definition commits nothing).
    fn define_task(&self, py: Python<'_>, definition: String) -> PyResult<bool> {
        let task = TaskDef::from_json(&definition).map_err(|e| to_py_err(py, e))?;
        let mut ds = lock(&self.ds).clone();
        let c = block_on(py, ds.define_task(task)).map_err(|e| to_py_err(py, e))?;
        *lock(&self.ds) = ds;
        Ok(c.is_some())
    }

    /// Row group `row_group` of image shard `shard` with the same row group
    /// of each task, as an Arrow batch.
    #[pyo3(signature = (shard, row_group, tasks=Vec::new()))]
    fn read_row_group(
        &self,
        py: Python<'_>,
        shard: u64,
        row_group: usize,
        tasks: Vec<String>,
    ) -> PyResult<ArrowBatch> {
        let ds = lock(&self.ds).clone();
        let refs: Vec<&str> = tasks.iter().map(String::as_str).collect();
        let b = block_on(py, ds.read_row_group_arrow(shard, row_group, &refs))
            .map_err(|e| to_py_err(py, e))?;
        Ok(ArrowBatch {
            array: Mutex::new(Some(StructArray::from(b))),
        })
    }

    /// A checked label writer for `task` and image shard `shard`.
    fn label_writer(&self, py: Python<'_>, task: String, shard: u64) -> PyResult<LabelWriter> {
        let ds = lock(&self.ds).clone();
        let w = block_on(
            py,
            must_ds::write::LabelWriter::for_shard(&ds, &task, shard),
        )
        .map_err(|e| to_py_err(py, e))?;
        Ok(LabelWriter {
            task: w.task().clone(),
            ids: w.image_ids().to_vec(),
            w: Mutex::new(Some(w)),
        })
    }

    /// Labels from any Arrow stream (`__arrow_c_stream__`: a pyarrow Table or
    /// RecordBatchReader, Polars, DuckDB results), matched to image shards by
    /// image_id, one commit per shard; returns the report as JSON.
    fn add_labels_from(
        &self,
        py: Python<'_>,
        task: String,
        data: Bound<'_, PyAny>,
        options: String,
    ) -> PyResult<String> {
        use arrow_array::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
        let opts = align_options(&options)?;
        let cap = data.call_method0("__arrow_c_stream__")?;
        let cap = cap
            .cast::<PyCapsule>()
            .map_err(|_| MustError::new_err("__arrow_c_stream__ did not give a capsule"))?;
        const NAME: &CStr = c"arrow_array_stream";
        let ptr = cap.pointer_checked(Some(NAME))?.as_ptr() as *mut FFI_ArrowArrayStream;
        // SAFETY: a live `arrow_array_stream` capsule; the stream is moved
        // out (its release set to null in the capsule, which then frees nothing).
        let reader = unsafe { RecordBatchStreamReader::from_raw(ptr) }
            .map_err(|e| MustError::new_err(format!("the input stream: {e}")))?;
        let mut ds = lock(&self.ds).clone();
        let report = {
            let mut aligner = block_on(py, must_ds::write::LabelAligner::new(&mut ds, &task, opts))
                .map_err(|e| to_py_err(py, e))?;
            let mut row = 0usize;
            for batch in reader {
                // Read with the GIL held: the stream may be a Python iterator.
                let batch =
                    batch.map_err(|e| MustError::new_err(format!("the input stream: {e}")))?;
                let n = batch.num_rows();
                block_on(py, aligner.push(&batch, "the input", row))
                    .map_err(|e| to_py_err(py, e))?;
                row += n;
            }
            block_on(py, aligner.finish()).map_err(|e| to_py_err(py, e))?
        };
        *lock(&self.ds) = ds;
        let shards: Vec<serde_json::Value> = report
            .shards
            .iter()
            .map(|s| {
                serde_json::json!({"shard": s.shard, "rows": s.rows, "labeled": s.labeled, "path": s.path, "skipped": s.skipped})
            })
            .collect();
        json(&serde_json::json!({
            "rows_in": report.rows_in, "rows_skipped": report.rows_skipped,
            "missing": report.missing(), "spills": report.spills, "shards": shards,
        }))
    }

    /// Writes and commits `writer`'s file; returns the committed action as JSON.
    #[pyo3(signature = (task, shard, writer, replace=false))]
    fn add_labels(
        &self,
        py: Python<'_>,
        task: String,
        shard: u64,
        writer: &LabelWriter,
        replace: bool,
    ) -> PyResult<String> {
        {
            // Refused before the writer is consumed, so that it can be committed with replace.
            let g = lock(&self.ds);
            if let Some(old) = g
                .snapshot()
                .labels
                .get(&(task.clone(), shard))
                .filter(|_| !replace)
            {
                let e = must_ds::Error::Conflict {
                    version: g.version(),
                    reason: format!(
                        "task {task:?} already has labels for image shard {shard} ({}); use replace=True to relabel",
                        old.path
                    ),
                };
                return Err(to_py_err(py, e));
            }
        }
        let w = lock(&writer.w)
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this label writer was already committed"))?;
        if w.task().name != task || w.shard() != shard {
            let msg = format!(
                "the writer is for task {:?} and image shard {}, not task {task:?} and shard {shard}",
                w.task().name,
                w.shard()
            );
            *lock(&writer.w) = Some(w);
            return Err(MustError::new_err(msg));
        }
        let file = py.detach(|| w.finish()).map_err(|e| to_py_err(py, e))?;
        let mut ds = lock(&self.ds).clone();
        let a = block_on(py, ds.add_label_file(&task, shard, file, replace))
            .map_err(|e| to_py_err(py, e))?;
        *lock(&self.ds) = ds;
        json(&a)
    }
}

fn bad_option(m: String) -> PyErr {
    pyo3::exceptions::PyTypeError::new_err(m)
}

/// Options of `add_labels_from`, from JSON.
fn align_options(json: &str) -> PyResult<must_ds::write::AlignOptions> {
    let v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| bad_option(e.to_string()))?;
    let mut o = must_ds::write::AlignOptions::default();
    for (k, x) in &v {
        let want = |t: &str| bad_option(format!("option {k}={x}: expected {t}"));
        match k.as_str() {
            "shard" => {
                o.shard = if x.is_null() {
                    None
                } else {
                    Some(x.as_u64().ok_or_else(|| want("a shard id"))?)
                }
            }
            "replace" => o.replace = x.as_bool().ok_or_else(|| want("a bool"))?,
            "skip_labeled" => o.skip_labeled = x.as_bool().ok_or_else(|| want("a bool"))?,
            "columns" => {
                if !x.is_null() {
                    let m = x
                        .as_object()
                        .ok_or_else(|| want("a dict from format column to input column"))?;
                    for (to, from) in m {
                        o.columns.insert(
                            to.clone(),
                            from.as_str()
                                .ok_or_else(|| want("column names"))?
                                .to_owned(),
                        );
                    }
                }
            }
            "box_format" => {
                o.box_format = x
                    .as_str()
                    .ok_or_else(|| want("a string"))?
                    .parse()
                    .map_err(bad_option)?
            }
            "top_k" => o.top_k = x.as_u64().ok_or_else(|| want("a count"))? as usize,
            "memory_bytes" => o.memory_bytes = x.as_u64().ok_or_else(|| want("bytes"))?,
            "spill_dir" => o.spill_dir = x.as_str().map(std::path::PathBuf::from),
            _ => {
                return Err(bad_option(format!(
                    "add_labels_from got an unexpected option {k:?}"
                )))
            }
        }
    }
    Ok(o)
}

/// The label file of one (task, image shard) being written.
#[pyclass(module = "must_ds._native")]
pub struct LabelWriter {
    task: TaskDef,
    ids: Vec<String>,
    w: Mutex<Option<must_ds::write::LabelWriter>>,
}

fn field<'py>(v: &Option<Bound<'py, PyAny>>, name: &str, id: &str) -> PyResult<Option<PyArray>> {
    v.as_ref()
        .map(|x| import(x, &format!("image_id {id:?}: {name}")))
        .transpose()
}

fn value_err(py: Python<'_>, id: &str, msg: String) -> PyErr {
    let e = MustError::new_err(format!("image_id {id:?}: {msg}"));
    let _ = e.value(py).setattr("image_id", id);
    e
}

#[pymethods]
impl LabelWriter {
    /// The shard's image ids, in order.
    #[getter]
    fn image_ids(&self) -> Vec<String> {
        self.ids.clone()
    }

    /// The task's name.
    #[getter]
    fn task(&self) -> String {
        self.task.name.clone()
    }

    /// Sets the label of `image_id` from arrays (numpy, torch on the CPU, or
    /// anything with `__dlpack__`), checking every value.
    #[pyo3(signature = (image_id, *, probs=None, classes=None, top_k=None, boxes=None, scores=None, mask=None, confidence=None, depth=None))]
    #[allow(clippy::too_many_arguments)]
    fn set(
        &self,
        py: Python<'_>,
        image_id: &str,
        probs: Option<Bound<'_, PyAny>>,
        classes: Option<Bound<'_, PyAny>>,
        top_k: Option<usize>,
        boxes: Option<Bound<'_, PyAny>>,
        scores: Option<Bound<'_, PyAny>>,
        mask: Option<Bound<'_, PyAny>>,
        confidence: Option<Bound<'_, PyAny>>,
        depth: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let id = image_id;
        let given: Vec<&str> = [
            ("probs", probs.is_some()),
            ("classes", classes.is_some()),
            ("boxes", boxes.is_some()),
            ("scores", scores.is_some()),
            ("mask", mask.is_some()),
            ("confidence", confidence.is_some()),
            ("depth", depth.is_some()),
        ]
        .iter()
        .filter(|x| x.1)
        .map(|x| x.0)
        .collect();
        let allowed: &[&str] = match &self.task.kind {
            TaskKind::Classification { .. } => &["probs", "classes"],
            TaskKind::Detection { .. } => &["boxes", "classes", "scores"],
            TaskKind::Segmentation { .. } => &["mask", "confidence"],
            TaskKind::Depth { .. } => &["depth"],
        };
        if let Some(x) = given.iter().find(|x| !allowed.contains(x)) {
            return Err(value_err(
                py,
                id,
                format!(
                    "{x} is not a field of {} task {:?} (it takes {})",
                    self.task.kind.name(),
                    self.task.name,
                    allowed.join(", ")
                ),
            ));
        }
        let e = |m: String| value_err(py, id, m);
        let need = |v: Option<PyArray>, n: &str| v.ok_or_else(|| e(format!("{n} is required")));
        let label = match &self.task.kind {
            TaskKind::Classification {
                num_classes,
                encoding,
                ..
            } => {
                let p = need(field(&probs, "probs", id)?, "probs")?;
                let pv = p.floats().map_err(|m| e(format!("probs {m}")))?;
                if p.shape.len() != 1 {
                    return Err(e(format!(
                        "probs has shape {:?}; one dimension expected",
                        p.shape
                    )));
                }
                let c = field(&classes, "classes", id)?;
                Label::Classification(match (encoding, c) {
                    (ClassEncoding::Dense, None) => ClassLabel::Dense(pv),
                    (ClassEncoding::Dense, Some(_)) => {
                        return Err(e("a dense classification task takes probs only".into()))
                    }
                    (ClassEncoding::Topk, Some(c)) => ClassLabel::TopK {
                        classes: c.ints(u32::MAX).map_err(|m| e(format!("classes {m}")))?,
                        probs: pv,
                    },
                    (ClassEncoding::Topk, None) if pv.len() == *num_classes as usize => {
                        ClassLabel::top_k(&pv, top_k.unwrap_or(5))
                    }
                    (ClassEncoding::Topk, None) => {
                        return Err(e(format!(
                            "a top-k task takes classes with probs, or all {num_classes} probabilities (top_k= of them are kept)"
                        )))
                    }
                })
            }
            TaskKind::Detection { .. } => {
                let b = need(field(&boxes, "boxes", id)?, "boxes")?;
                let c = need(field(&classes, "classes", id)?, "classes")?;
                let s = need(field(&scores, "scores", id)?, "scores")?;
                let n = b.shape.first().copied().unwrap_or(0);
                if b.shape != [n, 4] && !(n == 0 && b.shape.len() == 1) {
                    return Err(e(format!("boxes has shape {:?}; (N, 4) expected", b.shape)));
                }
                let bv = b.floats().map_err(|m| e(format!("boxes {m}")))?;
                let cv = c.ints(u32::MAX).map_err(|m| e(format!("classes {m}")))?;
                let sv = s.floats().map_err(|m| e(format!("scores {m}")))?;
                if cv.len() != n || sv.len() != n || c.shape.len() != 1 || s.shape.len() != 1 {
                    return Err(e(format!(
                        "{n} boxes, classes of shape {:?} and scores of shape {:?}",
                        c.shape, s.shape
                    )));
                }
                Label::Detection(Detections {
                    boxes: bv
                        .chunks_exact(4)
                        .map(|x| [x[0], x[1], x[2], x[3]])
                        .collect(),
                    classes: cv,
                    scores: sv,
                })
            }
            TaskKind::Segmentation { dtype, .. } => {
                let m = need(field(&mask, "mask", id)?, "mask")?;
                let [h, w] = m.shape[..] else {
                    return Err(e(format!(
                        "mask has shape {:?}; (height, width) expected",
                        m.shape
                    )));
                };
                let (h32, w32) = (dim(h).map_err(&e)?, dim(w).map_err(&e)?);
                let v = m.ints(dtype.max()).map_err(|x| e(format!("mask {x}")))?;
                let mut map = match dtype {
                    MaskDtype::U8 => {
                        SegMap::from_u8(h32, w32, v.iter().map(|&x| x as u8).collect())
                    }
                    MaskDtype::U16 => {
                        SegMap::from_u16(h32, w32, &v.iter().map(|&x| x as u16).collect::<Vec<_>>())
                    }
                };
                if let Some(c) = field(&confidence, "confidence", id)? {
                    if c.shape != m.shape {
                        return Err(e(format!(
                            "confidence has shape {:?}, the mask {:?}",
                            c.shape, m.shape
                        )));
                    }
                    if c.dtype.code == crate::dlpack::FLOAT {
                        let p = c.floats().map_err(|x| e(format!("confidence {x}")))?;
                        if let Some((i, x)) = p
                            .iter()
                            .enumerate()
                            .find(|(_, x)| !(0.0..=1.0).contains(*x))
                        {
                            return Err(e(format!(
                                "confidence {x} at pixel {i} is outside [0, 1]"
                            )));
                        }
                        map = map.with_confidence_probs(&p);
                    } else {
                        let q = c.ints(255).map_err(|x| e(format!("confidence {x}")))?;
                        map.confidence = Some(q.into_iter().map(|x| x as u8).collect());
                    }
                }
                Label::Segmentation(map)
            }
            TaskKind::Depth { .. } => {
                let d = need(field(&depth, "depth", id)?, "depth")?;
                let [h, w] = d.shape[..] else {
                    return Err(e(format!(
                        "depth has shape {:?}; (height, width) expected",
                        d.shape
                    )));
                };
                let v = d.floats().map_err(|x| e(format!("depth {x}")))?;
                Label::Depth(DepthMap::from_f32(
                    dim(h).map_err(&e)?,
                    dim(w).map_err(&e)?,
                    &v,
                ))
            }
        };
        let mut g = lock(&self.w);
        let w = g
            .as_mut()
            .ok_or_else(|| PyRuntimeError::new_err("this label writer was already committed"))?;
        w.set(id, label).map_err(|x| to_py_err(py, x))
    }
}

fn dim(x: usize) -> Result<u32, String> {
    u32::try_from(x)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("a map side of {x} pixels"))
}
