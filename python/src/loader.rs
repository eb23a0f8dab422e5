//! `must_ds._native.Loader`: the Rust loader's epochs, one Python iteration
//! per epoch, batches handed over as DLPack buffers.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crossbeam_channel as cb;
use must_ds::loader::{Batch, Epochs, Images, LoaderBuilder, LoaderState, Mask, TaskData};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use serde_json::Value;

use crate::dlpack::{Buffer, DType, BOOL, FLOAT, INT, UINT};
use crate::options::apply;
use crate::{open_dataset, to_py_err};

/// A batch owned by the buffers exported from it; when the last of them is
/// freed, its arrays go back to the loader for reuse.
struct Held {
    batch: Option<Batch>,
    back: cb::Sender<Batch>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(b) = self.batch.take() {
            let _ = self.back.try_send(b);
        }
    }
}

struct Inner {
    /// Every option but the epoch and the resume state.
    template: LoaderBuilder,
    /// The epoch of the iteration under way, or of the next one.
    epoch: u64,
    /// A state to resume `epoch` from.
    resume: Option<LoaderState>,
    running: Option<Epochs>,
    /// Batches yielded by the iteration under way (`None`: none under way).
    yielded: Option<u64>,
    back_tx: cb::Sender<Batch>,
    back_rx: cb::Receiver<Batch>,
    recycled: u64,
    started: Option<Instant>,
    samples: u64,
}

impl Inner {
    /// Starts the epochs from `self.epoch` (resuming when a state is held).
    fn ensure_running(&mut self) -> must_ds::Result<&mut Epochs> {
        if self.running.is_none() {
            let mut b = self.template.clone().epoch(self.epoch);
            if let Some(s) = self.resume.clone() {
                b = b.resume(s);
            }
            self.running = Some(b.epochs(self.epoch..u64::MAX)?);
        }
        Ok(self.running.as_mut().expect("just set"))
    }

    fn state(&self) -> must_ds::Result<LoaderState> {
        if let Some(cur) = self.running.as_ref().and_then(|r| r.current()) {
            let s = cur.state();
            if s.epoch == self.epoch {
                if cur.remaining() == 0 {
                    // Between epochs: the next one, from its start.
                    return self.template.clone().epoch(self.epoch + 1).start_state();
                }
                return Ok(s);
            }
        }
        match &self.resume {
            Some(s) => Ok(s.clone()),
            None => self.template.clone().epoch(self.epoch).start_state(),
        }
    }
}

/// The loader of one rank (see the Python class `must_ds.Loader`).
#[pyclass(module = "must_ds._native")]
pub struct Loader {
    inner: Mutex<Inner>,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One batch's arrays as named buffers (FORMAT.md section 5, host layout).
type Fields = Vec<(String, Py<Buffer>)>;

/// A batch for Python: (fields, image_ids, sources, epoch, index).
type Exported = (Fields, Vec<String>, Vec<String>, u64, u64);

fn export(py: Python<'_>, mut batch: Batch, back: &cb::Sender<Batch>) -> PyResult<Exported> {
    // Moved out: the workers refill a recycled batch's lists.
    let ids = std::mem::take(&mut batch.image_ids);
    let sources = std::mem::take(&mut batch.sources);
    let (epoch, index) = (batch.epoch, batch.index);
    let held = Arc::new(Held {
        batch: Some(batch),
        back: back.clone(),
    });
    let owner: Arc<dyn Any + Send + Sync> = held.clone();
    let b = held.batch.as_ref().expect("held");
    let (n, h, w) = (b.batch_size as i64, b.height as i64, b.width as i64);
    let (lh, lw) = (b.label_height as i64, b.label_width as i64);
    let mut out: Fields = Vec::new();
    let mut put = |name: String, buf: Buffer| -> PyResult<()> {
        out.push((name, Py::new(py, buf)?));
        Ok(())
    };
    let o = || owner.clone();
    put(
        "images".into(),
        match &b.images {
            Images::U8(v) => Buffer::new(o(), v, vec![n, 3, h, w], DType::new(UINT, 8)),
            Images::F32(v) => Buffer::new(o(), v, vec![n, 3, h, w], DType::new(FLOAT, 32)),
        },
    )?;
    put(
        "padding".into(),
        Buffer::new(o(), &b.padding, vec![n], DType::new(BOOL, 8)),
    )?;
    for (name, t) in &b.tasks {
        let key = |f: &str| format!("{name}.{f}");
        put(
            key("present"),
            Buffer::new(o(), &t.present, vec![n], DType::new(BOOL, 8)),
        )?;
        match &t.data {
            TaskData::Classification { num_classes, probs } => put(
                key("probs"),
                Buffer::new(
                    o(),
                    probs,
                    vec![n, *num_classes as i64],
                    DType::new(FLOAT, 32),
                ),
            )?,
            TaskData::Detection {
                max_boxes,
                boxes,
                classes,
                scores,
                valid,
            } => {
                let m = *max_boxes as i64;
                put(
                    key("boxes"),
                    Buffer::new(o(), boxes, vec![n, m, 4], DType::new(FLOAT, 32)),
                )?;
                put(
                    key("classes"),
                    Buffer::new(o(), classes, vec![n, m], DType::new(INT, 64)),
                )?;
                put(
                    key("scores"),
                    Buffer::new(o(), scores, vec![n, m], DType::new(FLOAT, 32)),
                )?;
                put(
                    key("valid"),
                    Buffer::new(o(), valid, vec![n, m], DType::new(BOOL, 8)),
                )?;
            }
            TaskData::Segmentation { mask, .. } => put(
                key("mask"),
                match mask {
                    Mask::U8(v) => Buffer::new(o(), v, vec![n, lh, lw], DType::new(UINT, 8)),
                    Mask::U16(v) => Buffer::new(o(), v, vec![n, lh, lw], DType::new(UINT, 16)),
                },
            )?,
            TaskData::Depth { depth } => put(
                key("depth"),
                Buffer::new(o(), depth, vec![n, 1, lh, lw], DType::new(FLOAT, 16)),
            )?,
        }
    }
    Ok((out, ids, sources, epoch, index))
}

#[pymethods]
impl Loader {
    /// `tasks`: (name, required) pairs; `options`: a JSON object of builder
    /// options by name; `state`: a JSON `LoaderState` to resume from.
    #[new]
    #[pyo3(signature = (root, tasks, options, storage_options=None, version=None, state=None))]
    fn new(
        py: Python<'_>,
        root: String,
        tasks: Vec<(String, bool)>,
        options: String,
        storage_options: Option<BTreeMap<String, String>>,
        version: Option<u64>,
        state: Option<String>,
    ) -> PyResult<Self> {
        let options: serde_json::Map<String, Value> = serde_json::from_str(&options)
            .map_err(|e| PyValueError::new_err(format!("loader options: {e}")))?;
        let resume: Option<LoaderState> = match state {
            None => None,
            Some(s) => Some(
                serde_json::from_str(&s)
                    .map_err(|e| PyValueError::new_err(format!("not a loader state: {e}")))?,
            ),
        };
        if tasks.is_empty() {
            return Err(PyValueError::new_err("no task requested"));
        }
        let version = match (&resume, version) {
            (Some(s), Some(v)) if s.version != v => {
                return Err(PyValueError::new_err(format!(
                    "the state is of dataset version {}, not {v}",
                    s.version
                )))
            }
            (Some(s), _) => Some(s.version),
            (None, v) => v,
        };
        let ds = open_dataset(py, &root, version, storage_options)?;
        let mut b = LoaderBuilder::new(ds);
        for (t, req) in &tasks {
            b = b.task(t, *req);
        }
        let b = apply(b, &options)?;
        b.validate().map_err(|e| to_py_err(py, e))?;
        let epoch = match &resume {
            Some(s) => s.epoch,
            None => options.get("epoch").and_then(Value::as_u64).unwrap_or(0),
        };
        let (back_tx, back_rx) = cb::bounded(4);
        Ok(Self {
            inner: Mutex::new(Inner {
                template: b,
                epoch,
                resume,
                running: None,
                yielded: None,
                back_tx,
                back_rx,
                recycled: 0,
                started: None,
                samples: 0,
            }),
        })
    }

    /// Starts an iteration: the epoch after the last one iterated (or the
    /// same one, when the last iteration yielded nothing).
    fn begin_epoch(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| {
            let mut g = lock(&self.inner);
            let inner = &mut *g;
            if let Some(n) = inner.yielded {
                let finished = inner
                    .running
                    .as_ref()
                    .and_then(|r| r.current())
                    .is_some_and(|c| c.epoch() == inner.epoch && c.remaining() == 0);
                if finished {
                    inner.epoch += 1;
                    inner.resume = None;
                    if let Some(r) = inner.running.as_mut() {
                        r.advance()?;
                    }
                } else if n > 0 {
                    // An epoch left in the middle: the next iteration is the next epoch.
                    inner.epoch += 1;
                    inner.resume = None;
                    inner.running = None;
                }
            }
            inner.started.get_or_insert_with(Instant::now);
            inner.ensure_running()?;
            inner.yielded = Some(0);
            Ok(inner.epoch)
        })
        .map_err(|e| to_py_err(py, e))
    }

    /// The next batch of the iteration under way, or None at the end of
    /// the epoch: (fields, image_ids, sources, epoch, index).
    fn next_batch(&self, py: Python<'_>) -> PyResult<Option<Exported>> {
        let r = py.detach(|| {
            let mut g = lock(&self.inner);
            let inner = &mut *g;
            if inner.yielded.is_none() {
                return Err(None);
            }
            let epoch = inner.epoch;
            let back: Vec<Batch> = inner.back_rx.try_iter().collect();
            inner.recycled += back.len() as u64;
            let Some(running) = inner.running.as_mut() else {
                return Err(None);
            };
            for b in back {
                running.recycle(b);
            }
            match running.current() {
                Some(c) if c.epoch() == epoch && c.remaining() > 0 => {}
                _ => return Ok(None),
            }
            match running.next() {
                Some(Ok(b)) => {
                    inner.yielded = inner.yielded.map(|n| n + 1);
                    inner.samples += b.real() as u64;
                    Ok(Some((b, inner.back_tx.clone())))
                }
                Some(Err(e)) => {
                    inner.running = None;
                    inner.yielded = None;
                    Err(Some(e))
                }
                None => Ok(None),
            }
        });
        match r {
            Ok(Some((b, back))) => Ok(Some(export(py, b, &back)?)),
            Ok(None) => Ok(None),
            Err(None) => Err(PyRuntimeError::new_err(
                "no iteration under way: iterate the loader",
            )),
            Err(Some(e)) => Err(to_py_err(py, e)),
        }
    }

    /// Batches in the epoch of the iteration under way (or the next one).
    fn batches_per_epoch(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| {
            let mut g = lock(&self.inner);
            let inner = &mut *g;
            let epoch = inner.epoch;
            let finished = inner
                .running
                .as_ref()
                .and_then(|r| r.current())
                .is_some_and(|c| {
                    c.epoch() == epoch && c.remaining() == 0 && inner.yielded.is_some()
                });
            let r = inner.ensure_running()?;
            if finished {
                // The next iteration's epoch.
                r.advance()?;
                inner.epoch += 1;
                inner.resume = None;
                inner.yielded = None;
            }
            let r = inner.running.as_ref().expect("running");
            Ok(r.current().map_or(0, |c| c.batches_per_epoch()))
        })
        .map_err(|e| to_py_err(py, e))
    }

    /// The state as JSON (a `LoaderState`).
    fn state_json(&self, py: Python<'_>) -> PyResult<String> {
        let s = py
            .detach(|| lock(&self.inner).state())
            .map_err(|e| to_py_err(py, e))?;
        serde_json::to_string(&s).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Resumes from a JSON `LoaderState` at the next iteration.
    fn load_state_json(&self, py: Python<'_>, state: String) -> PyResult<()> {
        let s: LoaderState = serde_json::from_str(&state)
            .map_err(|e| PyValueError::new_err(format!("not a loader state: {e}")))?;
        py.detach(|| {
            let mut g = lock(&self.inner);
            g.epoch = s.epoch;
            g.resume = Some(s);
            g.running = None;
            g.yielded = None;
        });
        Ok(())
    }

    /// The counters as JSON.
    fn metrics_json(&self, py: Python<'_>) -> PyResult<String> {
        let v = py.detach(|| {
            let g = lock(&self.inner);
            let m = g.running.as_ref().map(|r| r.metrics()).unwrap_or_default();
            let secs = g.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
            let mut v = serde_json::to_value(m).unwrap_or_default();
            if let Value::Object(o) = &mut v {
                o.insert("epoch".into(), g.epoch.into());
                o.insert("total_samples".into(), g.samples.into());
                o.insert("seconds".into(), secs.into());
                let rate = if secs > 0.0 {
                    g.samples as f64 / secs
                } else {
                    0.0
                };
                o.insert("samples_per_s".into(), rate.into());
                o.insert("recycled_batches".into(), g.recycled.into());
            }
            v
        });
        Ok(v.to_string())
    }

    /// What the `skip` policy left out so far in this epoch, as
    /// (file, row_group, image_id, reason) tuples.
    #[allow(clippy::type_complexity)]
    fn skipped(&self, py: Python<'_>) -> Vec<(String, usize, Option<String>, String)> {
        py.detach(|| {
            let g = lock(&self.inner);
            g.running
                .as_ref()
                .and_then(|r| r.current())
                .map(|c| c.skipped())
                .unwrap_or_default()
                .into_iter()
                .map(|r| (r.file, r.row_group, r.image_id, r.reason))
                .collect()
        })
    }
}
