//! The fetch stage: a (shard, row group) of the image shard and of every
//! requested task's label file fetched together (only the columns the
//! options read; footers cached), under the prefetch budget, ahead of the
//! coordinator. [`read_alone`] runs the same reads without the rest of the
//! pipeline, the read floor of an epoch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use super::batch::LabelOptions;
use super::config::Config;
use super::corrupt::CorruptReport;
use super::fetch;
use super::metrics::Metrics;
use super::plan::{Rows, Sampler, Unit};
use crate::error::{Error, Result};
use crate::format::TaskDef;
use crate::read::FooterCache;
use crate::store::Dataset;

/// A fetched (shard, row group): the image file's and every task file's
/// compressed column chunks, decoded block by block on the workers.
pub(super) struct OpenGroup {
    pub(super) shard: u64,
    pub(super) row_group: usize,
    pub(super) first_row: u64,
    pub(super) images: fetch::FileGroup,
    /// Per requested task, its file's group (`None`: no file for this shard).
    pub(super) labels: Vec<Option<fetch::FileGroup>>,
    /// Set once a failure of this group was reported under `Skip`.
    pub(super) reported: AtomicBool,
}

impl OpenGroup {
    /// Row `row` was used or given up: its blocks are freed after their last row.
    pub(super) fn release(&self, row: usize) {
        self.images.release(row);
        for l in self.labels.iter().flatten() {
            l.release(row);
        }
    }
}

/// A fetched group as the coordinator holds it. Its share of the prefetch
/// budget is given back when the slice closes, not when the last job
/// using it ends: a batch being assembled may hold rows of a closed slice
/// while it waits for the next slice's fetch.
pub(super) struct Open {
    pub(super) data: std::result::Result<Arc<OpenGroup>, CorruptReport>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// A slice index of the rank's plan and its fetched group.
pub(super) type Fetched = (usize, Open);

/// Columns of a task's label file that the options read.
fn task_columns(t: &TaskDef, opts: &LabelOptions) -> Vec<&'static str> {
    use crate::format::{ClassEncoding, TaskKind};
    let mut c = vec!["image_id"];
    match &t.kind {
        TaskKind::Classification {
            encoding: ClassEncoding::Topk,
            ..
        } => c.extend(["classes", "probs"]),
        TaskKind::Classification { .. } => c.push("probs"),
        TaskKind::Detection { .. } => c.extend(["boxes", "classes", "scores"]),
        TaskKind::Segmentation { .. } => {
            c.extend(["mask", "mask_height", "mask_width"]);
            if opts.min_confidence > 0.0 {
                c.push("confidence");
            }
        }
        TaskKind::Depth { .. } => c.extend(["depth", "depth_height", "depth_width"]),
    }
    c
}

/// Image shard columns the loader reads.
const LOADER_IMAGE_COLUMNS: &[&str] = &["image_id", "source", "image", "uri"];

/// Fetches one slice's (shard, row group) in every file the loader reads.
async fn fetch_group(
    ds: &Dataset,
    unit: &Unit,
    rows: &Rows,
    tasks: &[TaskDef],
    opts: &LabelOptions,
    footers: &FooterCache,
) -> Result<OpenGroup> {
    let snap = ds.snapshot();
    let a = snap.shard(unit.shard)?;
    let first_row: u64 = a.row_groups.iter().take(unit.row_group).sum();
    let g = unit.row_group;
    let images = fetch::fetch_file(
        ds,
        &a.path,
        a.bytes,
        g,
        first_row as usize,
        Some(LOADER_IMAGE_COLUMNS),
        None,
        footers,
        rows,
    );
    let labels = tasks.iter().map(|t| async move {
        match snap.labels.get(&(t.name.clone(), unit.shard)) {
            Some(l) => {
                let cols = task_columns(t, opts);
                fetch::fetch_file(
                    ds,
                    &l.path,
                    l.bytes,
                    g,
                    first_row as usize,
                    Some(&cols),
                    Some(t.clone()),
                    footers,
                    rows,
                )
                .await
                .map(Some)
            }
            None => Ok(None),
        }
    });
    let (images, labels) =
        futures::future::try_join(images, futures::future::try_join_all(labels)).await?;
    Ok(OpenGroup {
        shard: unit.shard,
        row_group: g,
        first_row,
        images,
        labels,
        reported: AtomicBool::new(false),
    })
}

/// Starts the fetch stage on `rt`: the rank's pending slices, in the order
/// the sampler will need them, each (shard, row group) fetched from every
/// file once its estimated bytes fit the prefetch budget (`budget`, shared
/// by the epochs of one `Epochs`, or the loader's own), at most
/// `cfg.requests` in flight. A group that cannot be fetched comes as a
/// [`CorruptReport`] for the coordinator's corrupt-data policy.
#[allow(clippy::too_many_arguments)]
pub(super) fn spawn_fetch(
    rt: &tokio::runtime::Runtime,
    cfg: &Config,
    budget: Option<Arc<tokio::sync::Semaphore>>,
    ds: Arc<Dataset>,
    units: Arc<Vec<Unit>>,
    sampler: &Sampler,
    tasks: &[TaskDef],
    metrics: Arc<Metrics>,
) -> tokio::sync::mpsc::UnboundedReceiver<Fetched> {
    let order: Vec<(usize, usize, Rows)> = sampler
        .pending_slices()
        .into_iter()
        .map(|s| {
            let sl = &sampler.slices()[s];
            (s, sl.unit as usize, sl.rows.clone())
        })
        .collect();
    let (fetch_tx, fetch_rx) = tokio::sync::mpsc::unbounded_channel::<Fetched>();
    let cap = (cfg.budget_kib / (cfg.shuffle_row_groups + 1)).max(1);
    let sem = budget.unwrap_or_else(|| Arc::new(tokio::sync::Semaphore::new(cfg.budget_kib)));
    let fetch_tasks: Arc<Vec<TaskDef>> = Arc::new(tasks.to_vec());
    let requests = cfg.requests;
    let opts = cfg.labels.clone();
    rt.spawn(async move {
        let footers = Arc::new(FooterCache::new(256));
        let opts = Arc::new(opts);
        let stream = futures::stream::iter(order)
            .then(|(s, u, rows)| {
                let sem = sem.clone();
                let want = ((units[u].est_bytes / 1024) as usize).clamp(1, cap);
                async move {
                    let permit = sem.acquire_many_owned(want as u32).await;
                    (s, u, rows, permit)
                }
            })
            .map(|(s, u, rows, permit)| {
                let (ds, units, footers, tasks, metrics, opts) = (
                    ds.clone(),
                    units.clone(),
                    footers.clone(),
                    fetch_tasks.clone(),
                    metrics.clone(),
                    opts.clone(),
                );
                async move {
                    let permit = permit.ok()?;
                    let unit = &units[u];
                    let t0 = Instant::now();
                    let r = fetch_group(&ds, unit, &rows, &tasks, &opts, &footers).await;
                    Metrics::add(&metrics.fetch_ns, t0.elapsed());
                    let data = match r {
                        Ok(g) => {
                            let n = g.images.fetched_bytes()
                                + g.labels
                                    .iter()
                                    .flatten()
                                    .map(|l| l.fetched_bytes())
                                    .sum::<u64>();
                            metrics.fetched_bytes.fetch_add(n, Ordering::Relaxed);
                            Ok(Arc::new(g))
                        }
                        Err(e) => Err(CorruptReport {
                            file: ds.snapshot().images.get(&unit.shard).map_or_else(
                                || format!("image shard {}", unit.shard),
                                |a| a.path.clone(),
                            ),
                            row_group: unit.row_group,
                            image_id: None,
                            reason: e.to_string(),
                        }),
                    };
                    Some((s, data, permit))
                }
            })
            .buffered(requests);
        futures::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            let Some((s, data, permit)) = item else {
                return;
            };
            let open = Open {
                data,
                _permit: permit,
            };
            if fetch_tx.send((s, open)).is_err() {
                return;
            }
        }
    });
    fetch_rx
}

/// Reads, as the loader would, every (image shard, row group) that holds
/// the tasks: fetches the columns the options need, decompresses and
/// parses them, and checks every label, on `workers` threads, decoding no
/// image. Its time is the read floor of an epoch (`must-ds bench`).
/// Returns (rows, seconds).
pub fn read_alone(
    ds: &Dataset,
    tasks: &[&str],
    opts: &LabelOptions,
    workers: usize,
) -> Result<(u64, f64)> {
    let snap = ds.snapshot();
    let defs: Vec<TaskDef> = tasks
        .iter()
        .map(|t| snap.task(t).cloned())
        .collect::<Result<_>>()?;
    let mut units = Vec::new();
    for (&shard, a) in &snap.images {
        for (g, &rows) in a.row_groups.iter().enumerate() {
            units.push(Unit {
                shard,
                row_group: g,
                rows: rows as u32,
                source: String::new(),
                est_bytes: 0,
            });
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    let footers = FooterCache::new(256);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let rows = AtomicU64::new(0);
    let t0 = Instant::now();
    let r: Result<()> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers.max(1))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| Error::io("tokio runtime", e))?;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(u) = units.get(i) else { return Ok(()) };
                        let g =
                            rt.block_on(fetch_group(ds, u, &Rows::All, &defs, opts, &footers))?;
                        for row in 0..u.rows as usize {
                            let fail = |e: String| Error::Loader(format!("{}: {e}", g.images.path));
                            let (img, k) = g.images.get(row).map_err(fail)?;
                            if let fetch::Decoded::Images { image, .. } = &*img {
                                std::hint::black_box(image.as_ref().map(|c| c.len() + k));
                            }
                            for (t, file) in defs.iter().zip(&g.labels) {
                                let Some(file) = file else { continue };
                                let (blk, j) = file.get(row).map_err(fail)?;
                                if let fetch::Decoded::Labels(cols) = &*blk {
                                    if let Some(l) = cols.get(j)? {
                                        l.check(t)
                                            .map_err(|e| Error::value(cols.location(j), e))?;
                                    }
                                }
                            }
                            g.release(row);
                        }
                        rows.fetch_add(u.rows as u64, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| Error::Loader("a read thread panicked".into()))??;
        }
        Ok(())
    });
    drop(rt);
    r?;
    Ok((rows.load(Ordering::Relaxed), t0.elapsed().as_secs_f64()))
}
