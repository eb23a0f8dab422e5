//! The labeling job (feature `tch`): shards read on the runtime, images
//! decoded and preprocessed on worker threads while the model runs on the
//! caller's thread, one aligned label file committed per shard.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel as cb;
use tch::{CModule, Device, IValue, Kind, Tensor};

use super::share::WorkerSlot;
use super::{postprocess, preprocess, sha256_file, Output, Scratch, TeacherParams};
use crate::error::{Error, Result};
use crate::format::{TaskKind, Teacher};
use crate::store::Dataset;
use crate::write::LabelWriter;

/// What to label, with what.
#[derive(Debug, Clone)]
pub struct LabelJob {
    /// The task (defined in the dataset; its `teacher.params` drive processing).
    pub task: String,
    /// A TorchScript file.
    pub model: PathBuf,
    /// Where the model runs.
    pub device: Device,
    /// Images per model call.
    pub batch: usize,
    /// Decode and preprocess threads.
    pub workers: usize,
    /// Only image shards with ids in this range.
    pub shards: Option<Range<u64>>,
    /// Only this worker's share of the image shards (`id % N == I`).
    pub worker: Option<WorkerSlot>,
    /// With `worker`: once its own share is done, label shards of other
    /// shares that no one has labeled yet (see [`super::share`]).
    pub steal: bool,
}

/// What a labeling job did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LabelReport {
    /// `sha256:` digest of the model file.
    pub checkpoint: String,
    /// This job's share, when it had one.
    pub worker: Option<WorkerSlot>,
    /// Shards labeled and committed by this job.
    pub labeled: Vec<u64>,
    /// Shards of the selection that already had labels, when the job
    /// started or when their turn came (labeled by another worker meanwhile).
    pub skipped: Vec<u64>,
    /// Shards of other workers' shares among `labeled` (`steal`).
    pub stolen: Vec<u64>,
    /// Shards this job labeled but another worker committed first: their
    /// commit was refused and their work dropped.
    pub lost: Vec<u64>,
    /// Images labeled.
    pub images: u64,
    /// Wall seconds.
    pub seconds: f64,
    /// Seconds in model calls (input copy, forward, output copy).
    pub model_s: f64,
    /// Seconds the model waited for preprocessed input.
    pub input_wait_s: f64,
}

fn teacher_err(shard: Option<u64>, reason: impl Into<String>) -> Error {
    Error::Teacher {
        shard,
        reason: reason.into(),
    }
}

struct Chunk {
    seq: u64,
    shard: u64,
    ids: Vec<String>,
    images: Vec<Bytes>,
    last: bool,
}

struct Ready {
    seq: u64,
    shard: u64,
    ids: Vec<String>,
    sizes: Vec<(u32, u32)>,
    input: Vec<f32>,
    last: bool,
}

/// Labels every selected shard of `ds` that has no labels for the task yet,
/// committing one file per shard; on any error the shard in progress is not
/// committed (shards committed before stay), so a rerun resumes with the
/// shards left. Before each shard the dataset is read again, so a shard
/// another worker labeled meanwhile is skipped; with `steal`, shards of
/// other shares follow the worker's own.
pub fn label(
    rt: &tokio::runtime::Handle,
    ds: &mut Dataset,
    job: &LabelJob,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<LabelReport> {
    let t0 = Instant::now();
    rt.block_on(ds.refresh())?;
    let task = ds.snapshot().task(&job.task)?.clone();
    let params = TeacherParams::from_task(&task).map_err(|r| teacher_err(None, r))?;
    let checkpoint = sha256_file(&job.model)?;
    if let Some(Teacher::Model {
        checkpoint: Some(c),
        ..
    }) = &task.teacher
    {
        if c.starts_with("sha256:") && *c != checkpoint {
            return Err(teacher_err(
                None,
                format!(
                    "task {:?} was defined for checkpoint {c}, {} is {checkpoint}",
                    task.name,
                    job.model.display()
                ),
            ));
        }
    }
    let mut report = LabelReport {
        checkpoint,
        worker: job.worker.clone(),
        ..Default::default()
    };
    let mut todo = vec![];
    for (&shard, a) in &ds.snapshot().images {
        let selected = job.shards.as_ref().is_none_or(|r| r.contains(&shard))
            && job.worker.as_ref().is_none_or(|w| w.owns(shard));
        if !selected {
            continue;
        }
        if ds
            .snapshot()
            .labels
            .contains_key(&(task.name.clone(), shard))
        {
            report.skipped.push(shard);
        } else {
            todo.push((shard, a.row_groups.len(), a.rows));
        }
    }
    if let Some(pb) = progress {
        pb.set_length(todo.iter().map(|t| t.2).sum());
    }
    if job.steal && job.worker.is_none() {
        return Err(teacher_err(
            None,
            "steal needs a worker share (--worker I/N or auto): without one, every shard is already this job's",
        ));
    }
    let stealable = |snap: &crate::store::Snapshot, tried: &std::collections::HashSet<u64>| {
        snap.images
            .keys()
            .copied()
            .filter(|s| job.shards.as_ref().is_none_or(|r| r.contains(s)))
            .filter(|s| !tried.contains(s))
            .filter(|&s| !snap.labels.contains_key(&(task.name.clone(), s)))
            .collect::<std::collections::BTreeSet<u64>>()
    };
    let nothing_to_steal = !job.steal
        || job.worker.as_ref().is_none_or(|w| {
            w.next_steal(&stealable(ds.snapshot(), &Default::default()))
                .is_none()
        });
    if todo.is_empty() && nothing_to_steal {
        report.seconds = t0.elapsed().as_secs_f64();
        return Ok(report);
    }
    let mut model = CModule::load_on_device(&job.model, job.device)
        .map_err(|e| teacher_err(None, format!("loading {}: {e}", job.model.display())))?;
    model.set_eval();

    let batch = job.batch.max(1);
    let (chunk_tx, chunk_rx) = cb::bounded::<Result<Chunk>>(job.workers.max(1) * 2);
    let (ready_tx, ready_rx) = cb::bounded::<Result<Ready>>(job.workers.max(1) * 2);
    std::thread::scope(|s| -> Result<LabelReport> {
        // Reader: shards in order (its own share, then stolen ones), each
        // checked against the newest version just before it is read; row
        // groups in order, cut into batches that never span shards. Returns
        // the shards found labeled when their turn came and those stolen.
        let mut reader_ds = ds.clone();
        let todo_r = todo.clone();
        let stealable = &stealable;
        let task_name = task.name.as_str();
        let reader = s.spawn(move || -> (Vec<u64>, Vec<u64>) {
            let (mut late, mut stolen) = (vec![], vec![]);
            let mut tried = std::collections::HashSet::new();
            let mut own = todo_r.into_iter();
            let mut seq = 0;
            let send_err = |e| {
                let _ = chunk_tx.send(Err(e));
            };
            loop {
                if let Err(e) = rt.block_on(reader_ds.refresh()) {
                    send_err(e);
                    break;
                }
                let snap = reader_ds.snapshot();
                let next = match own.next() {
                    Some((shard, ..)) => Some((shard, false)),
                    None if job.steal => job
                        .worker
                        .as_ref()
                        .and_then(|w| w.next_steal(&stealable(snap, &tried)))
                        .map(|s| (s, true)),
                    None => None,
                };
                let Some((shard, steal)) = next else { break };
                tried.insert(shard);
                if snap.labels.contains_key(&(task_name.to_owned(), shard)) {
                    late.push(shard);
                    continue;
                }
                let Some(groups) = snap.images.get(&shard).map(|a| a.row_groups.len()) else {
                    // Removed meanwhile: nothing to label.
                    late.push(shard);
                    continue;
                };
                if steal {
                    stolen.push(shard);
                    if let (Some(pb), Some(a)) = (progress, snap.images.get(&shard)) {
                        pb.inc_length(a.rows);
                    }
                }
                let mut ids = vec![];
                let mut images = vec![];
                for g in 0..groups {
                    let rg = match rt.block_on(reader_ds.read_row_group(
                        shard,
                        g,
                        &[],
                        Some(&["image_id", "image"]),
                    )) {
                        Ok(rg) => rg,
                        Err(e) => {
                            send_err(e);
                            return (late, stolen);
                        }
                    };
                    for r in rg.images {
                        let Some(img) = r.image else {
                            send_err(teacher_err(
                                Some(shard),
                                format!("image {:?} is not embedded", r.image_id),
                            ));
                            return (late, stolen);
                        };
                        ids.push(r.image_id);
                        images.push(img);
                        if ids.len() == batch {
                            let c = Chunk {
                                seq,
                                shard,
                                ids: std::mem::take(&mut ids),
                                images: std::mem::take(&mut images),
                                last: false,
                            };
                            seq += 1;
                            if chunk_tx.send(Ok(c)).is_err() {
                                return (late, stolen);
                            }
                        }
                    }
                }
                // The shard's last chunk (possibly empty) closes it.
                let c = Chunk {
                    seq,
                    shard,
                    ids,
                    images,
                    last: true,
                };
                seq += 1;
                if chunk_tx.send(Ok(c)).is_err() {
                    break;
                }
            }
            (late, stolen)
        });
        // Workers: decode and preprocess.
        let (w, h) = params.size;
        let per = 3 * (w * h) as usize;
        for _ in 0..job.workers.max(1) {
            let (rx, tx, params) = (chunk_rx.clone(), ready_tx.clone(), &params);
            s.spawn(move || {
                let mut scratch = Scratch::default();
                while let Ok(c) = rx.recv() {
                    let r = c.and_then(|c| {
                        let mut input = vec![0f32; per * c.ids.len()];
                        let mut sizes = Vec::with_capacity(c.ids.len());
                        for (i, (id, img)) in c.ids.iter().zip(&c.images).enumerate() {
                            let size = preprocess(
                                img,
                                params,
                                &mut scratch,
                                &mut input[i * per..(i + 1) * per],
                            )
                            .map_err(|e| {
                                teacher_err(Some(c.shard), format!("image {id:?}: {e}"))
                            })?;
                            sizes.push(size);
                        }
                        Ok(Ready {
                            seq: c.seq,
                            shard: c.shard,
                            ids: c.ids,
                            sizes,
                            input,
                            last: c.last,
                        })
                    });
                    if tx.send(r).is_err() {
                        return;
                    }
                }
            });
        }
        drop(ready_tx);
        drop(chunk_rx);
        // The model, in order.
        let mut pending: BTreeMap<u64, Ready> = BTreeMap::new();
        let mut next = 0;
        let mut writer: Option<LabelWriter> = None;
        let result = (|| -> Result<()> {
            loop {
                let t_wait = Instant::now();
                let Ok(r) = ready_rx.recv() else { break };
                report.input_wait_s += t_wait.elapsed().as_secs_f64();
                let r = r?;
                pending.insert(r.seq, r);
                while let Some(r) = pending.remove(&next) {
                    next += 1;
                    let shard = r.shard;
                    if writer.is_none() {
                        if !ds.snapshot().images.contains_key(&shard) {
                            // Added after the job started (stolen).
                            rt.block_on(ds.refresh())?;
                        }
                        writer = Some(rt.block_on(LabelWriter::for_shard(ds, &task.name, shard))?);
                    }
                    let wr = writer.as_mut().expect("just set");
                    if !r.ids.is_empty() {
                        let t_model = Instant::now();
                        let outs = run_model(
                            &model,
                            &task.kind,
                            &r.input,
                            r.ids.len(),
                            (w, h),
                            job.device,
                        )
                        .map_err(|e| teacher_err(Some(shard), e))?;
                        report.model_s += t_model.elapsed().as_secs_f64();
                        for ((id, out), size) in r.ids.iter().zip(outs).zip(&r.sizes) {
                            let l = postprocess(&task, &params, &out, *size).map_err(|e| {
                                teacher_err(Some(shard), format!("image {id:?}: {e}"))
                            })?;
                            wr.set(id, l)?;
                        }
                        report.images += r.ids.len() as u64;
                        if let Some(pb) = progress {
                            pb.inc(r.ids.len() as u64);
                        }
                    }
                    if r.last {
                        let file = writer.take().expect("open").finish()?;
                        match rt.block_on(ds.add_label_file(&task.name, shard, file, false)) {
                            Ok(_) => report.labeled.push(shard),
                            // Another worker committed this shard first:
                            // a lost race, not a failure.
                            Err(Error::Conflict { .. })
                                if ds
                                    .snapshot()
                                    .labels
                                    .contains_key(&(task.name.clone(), shard)) =>
                            {
                                report.lost.push(shard)
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
            if !pending.is_empty() || writer.is_some() {
                return Err(teacher_err(None, "the reading threads stopped early"));
            }
            Ok(())
        })();
        drop(ready_rx);
        let (late, stolen) = reader
            .join()
            .map_err(|_| teacher_err(None, "the reading thread panicked"))?;
        result?;
        report.skipped.extend(late);
        report.skipped.sort_unstable();
        report.stolen = stolen
            .into_iter()
            .filter(|s| report.labeled.contains(s))
            .collect();
        report.seconds = t0.elapsed().as_secs_f64();
        Ok(report.clone())
    })
}

/// Runs the model on `n` preprocessed images; one [`Output`] per image.
fn run_model(
    model: &CModule,
    kind: &TaskKind,
    input: &[f32],
    n: usize,
    (w, h): (u32, u32),
    device: Device,
) -> std::result::Result<Vec<Output>, String> {
    let x = Tensor::from_slice(input)
        .view([n as i64, 3, h as i64, w as i64])
        .to_device(device);
    let out = tch::no_grad(|| model.forward_is(&[IValue::Tensor(x)]))
        .map_err(|e| format!("the model failed: {e}"))?;
    let per_image =
        |t: &Tensor, what: &str| -> std::result::Result<(Vec<f32>, Vec<usize>), String> {
            let size: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            if size.first() != Some(&n) {
                return Err(format!("{what} has shape {size:?}, want {n} images first"));
            }
            let v: Vec<f32> = Vec::try_from(
                t.to_kind(Kind::Float)
                    .to_device(Device::Cpu)
                    .contiguous()
                    .flatten(0, -1),
            )
            .map_err(|e| format!("{what}: {e}"))?;
            Ok((v, size[1..].to_vec()))
        };
    let split = |v: Vec<f32>, shape: &[usize]| -> Vec<Vec<f32>> {
        let k: usize = shape.iter().product();
        (0..n).map(|i| v[i * k..(i + 1) * k].to_vec()).collect()
    };
    match (kind, out) {
        (TaskKind::Detection { .. }, IValue::Tuple(parts)) if parts.len() == 3 => {
            let mut t = vec![];
            for (p, what) in parts.iter().zip(["boxes", "scores", "classes"]) {
                let IValue::Tensor(p) = p else {
                    return Err(format!("detection output {what} is not a tensor"));
                };
                t.push(per_image(p, what)?);
            }
            let (c, s, b) = (
                t.pop().expect("3"),
                t.pop().expect("3"),
                t.pop().expect("3"),
            );
            if b.1.len() != 2 || b.1[1] != 4 || s.1.len() != 1 || c.1 != s.1 || b.1[0] != s.1[0] {
                return Err(format!(
                    "detection outputs have shapes {:?}, {:?}, {:?} per image (want N×4, N, N)",
                    b.1, s.1, c.1
                ));
            }
            Ok(split(b.0, &b.1)
                .into_iter()
                .zip(split(s.0, &s.1))
                .zip(split(c.0, &c.1))
                .map(|((b, s), c)| Output::Boxes(b, s, c))
                .collect())
        }
        (TaskKind::Detection { .. }, _) => {
            Err("a detection model must return (boxes, scores, classes)".into())
        }
        (
            TaskKind::Classification { .. }
            | TaskKind::Segmentation { .. }
            | TaskKind::Depth { .. },
            IValue::Tensor(t),
        ) => {
            let (v, shape) = per_image(&t, "the output")?;
            Ok(split(v, &shape)
                .into_iter()
                .map(|v| Output::One(v, shape.clone()))
                .collect())
        }
        (
            TaskKind::Classification { .. }
            | TaskKind::Segmentation { .. }
            | TaskKind::Depth { .. },
            _,
        ) => Err("the model must return one tensor for this task kind".into()),
    }
}
