//! `must-ds inspect --stats`: what an auditor looks for in each task's
//! labels, over a whole dataset or a uniform sample of rows. Each kind's
//! figures are computed in its own module; this one selects and reads the
//! rows and hands each label to its task's accumulator.

mod classification;
mod depth;
mod detection;
mod segmentation;

pub use classification::ClassificationStats;
pub use depth::DepthStats;
pub use detection::DetectionStats;
pub use segmentation::SegmentationStats;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use rand::SeedableRng;
use serde::Serialize;

use super::Dist;
use crate::codec::Label;
use crate::error::{Error, Location, Result};
use crate::format::{TaskDef, TaskKind};
use crate::store::Dataset;

/// Which rows and tasks to read.
#[derive(Debug, Clone, Default)]
pub struct StatsOptions {
    /// Only these tasks (all when `None`).
    pub tasks: Option<Vec<String>>,
    /// Only image shards with ids in this inclusive range.
    pub shards: Option<(u64, u64)>,
    /// A uniform sample of this many rows instead of every row.
    pub sample: Option<u64>,
    /// Seed of the sample.
    pub seed: u64,
    /// Row groups read at once (default 4).
    pub parallel: usize,
}

/// A class and how often it occurs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassCount {
    /// Class id.
    pub class: u32,
    /// Its name, when the task has names.
    pub name: Option<String>,
    /// Occurrences.
    pub count: u64,
    /// Share of all occurrences.
    pub fraction: f64,
}

/// A label map size and how often it occurs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SizeCount {
    /// `WxH`.
    pub size: String,
    /// Maps of that size.
    pub count: u64,
}

/// Statistics of one task.
#[allow(clippy::large_enum_variant)] // a handful per report
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskStats {
    /// Classification.
    Classification(ClassificationStats),
    /// Detection.
    Detection(DetectionStats),
    /// Segmentation.
    Segmentation(SegmentationStats),
    /// Depth.
    Depth(DepthStats),
}

/// A (task, image shard) pair without a label file.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MissingLabels {
    /// Task.
    pub task: String,
    /// Image shard.
    pub shard: u64,
}

/// What `inspect --stats` reports.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetStats {
    /// Dataset version (`None` for a lone file).
    pub version: Option<u64>,
    /// Rows in the selected shards.
    pub rows_total: u64,
    /// Rows read.
    pub rows_read: u64,
    /// Whether the rows are a uniform sample.
    pub sampled: bool,
    /// (task, shard) pairs without labels, among the selected shards.
    pub missing: Vec<MissingLabels>,
    /// Per task, rows read that have no label.
    pub rows_without_labels: BTreeMap<String, u64>,
    /// Per task.
    pub tasks: BTreeMap<String, TaskStats>,
}

/// Occurrences per class.
#[derive(Default)]
struct Counts(HashMap<u32, u64>);

impl Counts {
    fn add(&mut self, c: u32, n: u64) {
        *self.0.entry(c).or_default() += n;
    }
    fn total(&self) -> u64 {
        self.0.values().sum()
    }
    fn top(&self, task: &TaskDef, n: usize) -> Vec<ClassCount> {
        let total = self.total().max(1) as f64;
        let mut v: Vec<_> = self.0.iter().map(|(c, n)| (*c, *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        let names = task.kind.class_names();
        v.into_iter()
            .map(|(class, count)| ClassCount {
                class,
                name: names.and_then(|n| n.get(class as usize).cloned()),
                count,
                fraction: count as f64 / total,
            })
            .collect()
    }
}

/// Sizes of label maps (segmentation, depth): pixels in all, the most
/// common sizes, and image width over map width.
#[derive(Default)]
struct MapSizes {
    pixels: u64,
    sizes: HashMap<(u32, u32), u64>,
    ratio: Dist,
}

impl MapSizes {
    /// Adds a `w` × `h` map of an image `image_width` wide (0 when not known).
    fn add(&mut self, w: u32, h: u32, image_width: u32) {
        // Sizes come from the file (checked only by `validate`): no wrap.
        self.pixels = self.pixels.saturating_add(w as u64 * h as u64);
        *self.sizes.entry((w, h)).or_default() += 1;
        if w > 0 && image_width > 0 {
            self.ratio.add(image_width as f64 / w as f64);
        }
    }

    /// The five most common sizes, most common first.
    fn top(&self) -> Vec<SizeCount> {
        let mut v: Vec<_> = self.sizes.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        v.into_iter()
            .take(5)
            .map(|((w, h), n)| SizeCount {
                size: format!("{w}x{h}"),
                count: *n,
            })
            .collect()
    }
}

/// One task's figures of its kind.
enum KindAcc {
    Classification(classification::Acc),
    Detection(detection::Acc),
    Segmentation(segmentation::Acc),
    Depth(depth::Acc),
}

/// What one task's statistics are computed from, row by row.
struct Acc {
    labeled: u64,
    unlabeled: u64,
    kind: KindAcc,
}

impl Acc {
    fn new(task: &TaskDef) -> Self {
        let kind = match &task.kind {
            TaskKind::Classification { multi_label, .. } => {
                KindAcc::Classification(classification::Acc::new(*multi_label))
            }
            TaskKind::Detection {
                min_score_written, ..
            } => KindAcc::Detection(detection::Acc::new(*min_score_written)),
            TaskKind::Segmentation {
                num_classes,
                dtype,
                ignore_index,
                ..
            } => KindAcc::Segmentation(segmentation::Acc::new(*dtype, *ignore_index, *num_classes)),
            TaskKind::Depth { .. } => KindAcc::Depth(depth::Acc::default()),
        };
        Self {
            labeled: 0,
            unlabeled: 0,
            kind,
        }
    }

    /// Adds one row of an image of `width` × `height` (0 × 0 when not known).
    fn add(&mut self, label: Option<&Label>, width: u32, height: u32) {
        let Some(label) = label else {
            self.unlabeled += 1;
            return;
        };
        self.labeled += 1;
        match (&mut self.kind, label) {
            (KindAcc::Classification(acc), Label::Classification(c)) => acc.add(c),
            (KindAcc::Detection(acc), Label::Detection(d)) => acc.add(d, width, height),
            (KindAcc::Segmentation(acc), Label::Segmentation(m)) => acc.add(m, width),
            (KindAcc::Depth(acc), Label::Depth(d)) => acc.add(d, width),
            // A label of another kind than its task (labels are decoded by
            // their task's kind: not expected): counted as labeled only.
            (
                KindAcc::Classification(_),
                Label::Detection(_) | Label::Segmentation(_) | Label::Depth(_),
            )
            | (
                KindAcc::Detection(_),
                Label::Classification(_) | Label::Segmentation(_) | Label::Depth(_),
            )
            | (
                KindAcc::Segmentation(_),
                Label::Classification(_) | Label::Detection(_) | Label::Depth(_),
            )
            | (
                KindAcc::Depth(_),
                Label::Classification(_) | Label::Detection(_) | Label::Segmentation(_),
            ) => {}
        }
    }

    fn finish(self, task: &TaskDef) -> TaskStats {
        match self.kind {
            KindAcc::Classification(acc) => {
                TaskStats::Classification(acc.finish(self.labeled, task))
            }
            KindAcc::Detection(acc) => TaskStats::Detection(acc.finish(self.labeled, task)),
            KindAcc::Segmentation(acc) => TaskStats::Segmentation(acc.finish(self.labeled, task)),
            KindAcc::Depth(acc) => TaskStats::Depth(acc.finish(self.labeled)),
        }
    }
}

/// Progress callback: (row groups done, row groups to read).
pub type StatsProgress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Computes the statistics of `ds` as `opts` selects.
pub async fn dataset_stats(
    ds: &Dataset,
    opts: &StatsOptions,
    progress: Option<StatsProgress>,
) -> Result<DatasetStats> {
    let snap = ds.snapshot();
    let tasks: Vec<TaskDef> = match &opts.tasks {
        Some(names) => names
            .iter()
            .map(|n| snap.task(n).cloned())
            .collect::<Result<_>>()?,
        None => snap.tasks.values().cloned().collect(),
    };
    let shards: Vec<u64> = snap
        .images
        .keys()
        .copied()
        .filter(|s| opts.shards.is_none_or(|(a, b)| (a..=b).contains(s)))
        .collect();
    // Every (shard, row group) unit with its first row in the selection.
    // Row counts come from the log: their sum is checked, not wrapped.
    let mut units = vec![];
    let mut total = 0u64;
    for &s in &shards {
        let a = snap.shard(s)?;
        for (g, &n) in a.row_groups.iter().enumerate() {
            units.push((s, g, total, n));
            total = total.checked_add(n).ok_or_else(|| {
                Error::value(
                    Location::file(&a.path),
                    format!(
                        "row group {g} of image shard {s} ({n} rows in the log) takes the rows of the selected shards past 2^64"
                    ),
                )
            })?;
        }
    }
    // Rows to read per unit: all, or a uniform sample without replacement.
    let picks: Option<Vec<u64>> = opts.sample.filter(|n| *n < total).map(|n| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
        // n < total: both fit a usize where total does (64-bit targets).
        let len = usize::try_from(total).unwrap_or(usize::MAX);
        let mut v: Vec<u64> = rand::seq::index::sample(&mut rng, len, n as usize)
            .into_iter()
            .map(|i| i as u64)
            .collect();
        v.sort_unstable();
        v
    });
    let mut work = vec![];
    for &(s, g, first, n) in &units {
        let rows: Option<Vec<usize>> = picks.as_ref().map(|p| {
            let lo = p.partition_point(|&r| r < first);
            let hi = p.partition_point(|&r| r < first + n); // ≤ total: checked above
            p[lo..hi].iter().map(|r| (r - first) as usize).collect()
        });
        if rows.as_ref().is_none_or(|r| !r.is_empty()) {
            work.push((s, g, n, rows));
        }
    }
    let names: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let mut accs: Vec<Acc> = tasks.iter().map(Acc::new).collect();
    let todo = work.len() as u64;
    let mut done = 0u64;
    let mut rows_read = 0u64;
    let mut stream = futures::stream::iter(work)
        .map(|(s, g, n, rows)| {
            let refs = &refs;
            async move {
                ds.read_row_group(s, g, refs, Some(&["width", "height"]))
                    .await
                    .map(|rg| (s, g, n, rg, rows))
            }
        })
        .buffered(opts.parallel.max(1));
    while let Some(item) = stream.next().await {
        let (s, g, n, rg, rows) = item?;
        // The sample's rows were drawn from the log's counts: a row group
        // that holds another number of rows is corrupt (and would index past
        // its end).
        let corrupt = |file: &str, reason: String| Error::Corrupt {
            file: file.to_owned(),
            row_group: g,
            image_id: None,
            reason: format!("{reason}; run `must-ds validate`"),
        };
        if rg.images.len() as u64 != n {
            return Err(corrupt(
                &snap.shard(s)?.path,
                format!(
                    "image shard {s} holds {} rows in this row group but the log says {n}",
                    rg.images.len()
                ),
            ));
        }
        let selected: Vec<usize> = rows.unwrap_or_else(|| (0..rg.images.len()).collect());
        rows_read += selected.len() as u64;
        for (t, acc) in tasks.iter().zip(accs.iter_mut()) {
            let labels = match rg.labels.get(&t.name) {
                Some(l) if l.len() == rg.images.len() => l,
                other => {
                    let file = snap.labels.get(&(t.name.clone(), s)).map_or_else(
                        || format!("labels of task {:?}", t.name),
                        |l| l.path.clone(),
                    );
                    return Err(corrupt(
                        &file,
                        format!(
                            "{} label rows for the {} image rows of shard {s}",
                            other.map_or(0, |l| l.len()),
                            rg.images.len()
                        ),
                    ));
                }
            };
            for &r in &selected {
                let img = &rg.images[r];
                acc.add(labels[r].as_ref(), img.width, img.height);
            }
        }
        done += 1;
        if let Some(p) = &progress {
            p(done, todo);
        }
    }
    let missing = tasks
        .iter()
        .flat_map(|t| shards.iter().map(move |s| (t, *s)))
        .filter(|(t, s)| !snap.labels.contains_key(&(t.name.clone(), *s)))
        .map(|(t, s)| MissingLabels {
            task: t.name.clone(),
            shard: s,
        })
        .collect();
    let mut out = DatasetStats {
        version: Some(snap.version),
        rows_total: total,
        rows_read,
        sampled: picks.is_some(),
        missing,
        rows_without_labels: BTreeMap::new(),
        tasks: BTreeMap::new(),
    };
    for (t, acc) in tasks.iter().zip(accs) {
        out.rows_without_labels
            .insert(t.name.clone(), acc.unlabeled);
        out.tasks.insert(t.name.clone(), acc.finish(t));
    }
    Ok(out)
}

/// Statistics of one lone label file, from its `must.task` metadata (no
/// image sizes: boxes outside the image and map ratios are not known).
pub fn label_file_stats(bytes: bytes::Bytes, file: &str) -> Result<DatasetStats> {
    let loc = crate::error::Location::file(file);
    let (task, builder) =
        crate::read::lone_label_file(bytes, file, "not a label file, or one written without it")?;
    let reader = builder
        .build()
        .map_err(|e| crate::Error::parquet(file, e))?;
    let mut acc = Acc::new(&task);
    let mut rows = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| crate::Error::arrow(file, e))?;
        let (_, labels) = crate::codec::batch_to_labels(&task, &batch, &loc, rows)?;
        for l in &labels {
            acc.add(l.as_ref(), 0, 0);
        }
        rows += labels.len();
    }
    let mut out = DatasetStats {
        version: None,
        rows_total: rows as u64,
        rows_read: rows as u64,
        sampled: false,
        missing: vec![],
        rows_without_labels: BTreeMap::from([(task.name.clone(), acc.unlabeled)]),
        tasks: BTreeMap::new(),
    };
    out.tasks.insert(task.name.clone(), acc.finish(&task));
    Ok(out)
}
