//! `must-ds inspect --stats`: what an auditor looks for in each task's
//! labels, over a whole dataset or a uniform sample of rows.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use rand::SeedableRng;
use serde::Serialize;

use super::{Dist, Summary, UnitHistogram};
use crate::codec::{ClassLabel, Label};
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

/// Classification statistics.
#[derive(Debug, Clone, Serialize)]
pub struct ClassificationStats {
    /// Rows with a label.
    pub labeled: u64,
    /// The 20 most frequent top-1 classes.
    pub top1_classes: Vec<ClassCount>,
    /// Distinct top-1 classes.
    pub distinct_top1: u64,
    /// Rows whose top-1 class is outside those 20.
    pub long_tail_rows: u64,
    /// Top-1 probability.
    pub top1_prob: Option<Summary>,
    /// Top-1 probability in ten bins.
    pub top1_prob_histogram: UnitHistogram,
    /// Entropy in bits of the stored probabilities (for top-k, the missing
    /// mass counts as one more outcome: a lower bound).
    pub entropy_bits: Option<Summary>,
    /// Probability mass the stored top-k keeps (1 for dense).
    pub kept_mass: Option<Summary>,
}

/// Detection statistics.
#[derive(Debug, Clone, Serialize)]
pub struct DetectionStats {
    /// Rows with a label.
    pub labeled: u64,
    /// Boxes in all.
    pub boxes: u64,
    /// Boxes per labeled image.
    pub boxes_per_image: Option<Summary>,
    /// Labeled images with no box.
    pub zero_box_images: u64,
    /// Scores.
    pub scores: Option<Summary>,
    /// Scores in ten bins.
    pub score_histogram: UnitHistogram,
    /// The task's threshold.
    pub min_score_written: f32,
    /// Boxes scored below it (a teacher that ignored it).
    pub below_min_score: u64,
    /// Box widths in pixels.
    pub width_px: Option<Summary>,
    /// Box heights in pixels.
    pub height_px: Option<Summary>,
    /// Box area over image area.
    pub relative_area: Option<Summary>,
    /// Width over height.
    pub aspect: Option<Summary>,
    /// The 20 most frequent classes.
    pub classes: Vec<ClassCount>,
    /// Boxes reaching outside the image (by more than half a pixel).
    pub outside_image: u64,
}

/// Segmentation statistics.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentationStats {
    /// Rows with a label.
    pub labeled: u64,
    /// Pixels in all maps.
    pub pixels: u64,
    /// Pixel frequency per class, most frequent first.
    pub classes: Vec<ClassCount>,
    /// Share of pixels equal to `ignore_index`.
    pub ignore_fraction: f64,
    /// Confidence (0..1) where the teacher wrote it.
    pub confidence: Option<Summary>,
    /// Confidence in ten bins.
    pub confidence_histogram: UnitHistogram,
    /// The most common map sizes.
    pub map_sizes: Vec<SizeCount>,
    /// Image width over map width.
    pub image_to_map_ratio: Option<Summary>,
}

/// Depth statistics.
#[derive(Debug, Clone, Serialize)]
pub struct DepthStats {
    /// Rows with a label.
    pub labeled: u64,
    /// Pixels in all maps.
    pub pixels: u64,
    /// Finite values.
    pub values: Option<Summary>,
    /// Share of NaN (invalid) pixels.
    pub nan_fraction: f64,
    /// The most common map sizes.
    pub map_sizes: Vec<SizeCount>,
    /// Image width over map width.
    pub image_to_map_ratio: Option<Summary>,
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

fn top_sizes(sizes: &HashMap<(u32, u32), u64>) -> Vec<SizeCount> {
    let mut v: Vec<_> = sizes.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.into_iter()
        .take(5)
        .map(|((w, h), n)| SizeCount {
            size: format!("{w}x{h}"),
            count: *n,
        })
        .collect()
}

/// The exact summary of confidences stored as 256 levels (`round(255 × p)`).
fn levels_summary(levels: &[u64]) -> Option<Summary> {
    let count: u64 = levels.iter().sum();
    if count == 0 {
        return None;
    }
    let value = |i: usize| i as f64 / 255.0;
    let q = |p: f64| {
        let target = ((count - 1) as f64 * p).round() as u64;
        let mut seen = 0;
        for (i, n) in levels.iter().enumerate() {
            seen += n;
            if seen > target {
                return value(i);
            }
        }
        1.0
    };
    let sum: f64 = levels
        .iter()
        .enumerate()
        .map(|(i, n)| value(i) * *n as f64)
        .sum();
    Some(Summary {
        count,
        mean: sum / count as f64,
        min: value(levels.iter().position(|n| *n > 0).unwrap_or(0)),
        p5: q(0.05),
        p25: q(0.25),
        p50: q(0.5),
        p75: q(0.75),
        p95: q(0.95),
        max: value(levels.iter().rposition(|n| *n > 0).unwrap_or(0)),
        approximate_quantiles: false,
    })
}

#[derive(Default)]
struct Acc {
    labeled: u64,
    unlabeled: u64,
    // classification
    top1: Counts,
    top1_prob: Dist,
    top1_hist: UnitHistogram,
    entropy: Dist,
    kept: Dist,
    // detection
    boxes: u64,
    per_image: Dist,
    zero: u64,
    scores: Dist,
    score_hist: UnitHistogram,
    below: u64,
    width: Dist,
    height: Dist,
    area: Dist,
    aspect: Dist,
    det_classes: Counts,
    outside: u64,
    // maps
    pixels: u64,
    pixel_classes: Counts,
    ignored: u64,
    conf_levels: Vec<u64>,
    conf_hist: UnitHistogram,
    sizes: HashMap<(u32, u32), u64>,
    ratio: Dist,
    values: Dist,
    nan: u64,
}

fn entropy_bits(probs: &[f32], rest: f64) -> f64 {
    let h: f64 = probs
        .iter()
        .filter(|p| **p > 0.0)
        .map(|&p| -(p as f64) * (p as f64).log2())
        .sum();
    h + if rest > 1e-9 {
        -rest * rest.log2()
    } else {
        0.0
    }
}

impl Acc {
    fn add(&mut self, task: &TaskDef, label: Option<&Label>, width: u32, height: u32) {
        let Some(label) = label else {
            self.unlabeled += 1;
            return;
        };
        self.labeled += 1;
        match (label, &task.kind) {
            (Label::Classification(c), TaskKind::Classification { multi_label, .. }) => {
                let (top1, p1, probs): (Option<u32>, f32, &[f32]) = match c {
                    ClassLabel::TopK { classes, probs } => (
                        classes.first().copied(),
                        probs.first().copied().unwrap_or(0.0),
                        probs,
                    ),
                    ClassLabel::Dense(p) => {
                        let best = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1));
                        (
                            best.map(|(i, _)| i as u32),
                            best.map_or(0.0, |(_, v)| *v),
                            p,
                        )
                    }
                };
                if let Some(t) = top1 {
                    self.top1.add(t, 1);
                }
                self.top1_prob.add(p1 as f64);
                self.top1_hist.add(p1 as f64);
                let kept: f64 = probs.iter().map(|p| *p as f64).sum();
                self.kept.add(if matches!(c, ClassLabel::Dense(_)) {
                    1.0
                } else {
                    kept
                });
                if !multi_label {
                    let rest = if matches!(c, ClassLabel::TopK { .. }) {
                        (1.0 - kept).max(0.0)
                    } else {
                        0.0
                    };
                    self.entropy.add(entropy_bits(probs, rest));
                }
            }
            (
                Label::Detection(d),
                TaskKind::Detection {
                    min_score_written, ..
                },
            ) => {
                let n = d.boxes.len() as u64;
                self.boxes += n;
                self.per_image.add(n as f64);
                if n == 0 {
                    self.zero += 1;
                }
                for ((b, &s), &c) in d.boxes.iter().zip(&d.scores).zip(&d.classes) {
                    self.scores.add(s as f64);
                    self.score_hist.add(s as f64);
                    if s < *min_score_written {
                        self.below += 1;
                    }
                    let (w, h) = ((b[2] - b[0]) as f64, (b[3] - b[1]) as f64);
                    self.width.add(w);
                    self.height.add(h);
                    if width > 0 && height > 0 {
                        self.area.add(w * h / (width as f64 * height as f64));
                        let tol = 0.5;
                        if b[0] < -tol
                            || b[1] < -tol
                            || b[2] > width as f32 + tol
                            || b[3] > height as f32 + tol
                        {
                            self.outside += 1;
                        }
                    }
                    if h > 0.0 {
                        self.aspect.add(w / h);
                    }
                    self.det_classes.add(c, 1);
                }
            }
            (
                Label::Segmentation(m),
                TaskKind::Segmentation {
                    dtype,
                    ignore_index,
                    ..
                },
            ) => {
                self.count_map(m.width, m.height, width);
                let mut hist = vec![0u64; dtype.max() as usize + 1];
                for v in m.values(dtype.size()) {
                    hist[v as usize] += 1;
                }
                for (v, n) in hist.into_iter().enumerate().filter(|(_, n)| *n > 0) {
                    if v as u32 == *ignore_index {
                        self.ignored += n;
                    } else {
                        self.pixel_classes.add(v as u32, n);
                    }
                }
                if let Some(conf) = &m.confidence {
                    let mut h = [0u64; 256];
                    for &c in conf {
                        h[c as usize] += 1;
                    }
                    for (c, n) in h.iter().enumerate() {
                        self.conf_levels[c] += n;
                        self.conf_hist.bins[((c as f64 / 255.0 * 10.0) as usize).min(9)] += n;
                    }
                }
            }
            (Label::Depth(d), TaskKind::Depth { .. }) => {
                self.count_map(d.width, d.height, width);
                for v in d.to_f32() {
                    if v.is_nan() {
                        self.nan += 1;
                    } else {
                        self.values.add(v as f64);
                    }
                }
            }
            _ => {}
        }
    }

    fn count_map(&mut self, w: u32, h: u32, image_width: u32) {
        // Sizes come from the file (checked only by `validate`): no wrap.
        self.pixels = self.pixels.saturating_add(w as u64 * h as u64);
        *self.sizes.entry((w, h)).or_default() += 1;
        if w > 0 && image_width > 0 {
            self.ratio.add(image_width as f64 / w as f64);
        }
    }

    fn finish(self, task: &TaskDef) -> TaskStats {
        match &task.kind {
            TaskKind::Classification { .. } => {
                let top = self.top1.top(task, 20);
                let shown: u64 = top.iter().map(|c| c.count).sum();
                TaskStats::Classification(ClassificationStats {
                    labeled: self.labeled,
                    long_tail_rows: self.top1.total() - shown,
                    distinct_top1: self.top1.0.len() as u64,
                    top1_classes: top,
                    top1_prob: self.top1_prob.summary(),
                    top1_prob_histogram: self.top1_hist,
                    entropy_bits: self.entropy.summary(),
                    kept_mass: self.kept.summary(),
                })
            }
            TaskKind::Detection {
                min_score_written, ..
            } => TaskStats::Detection(DetectionStats {
                labeled: self.labeled,
                boxes: self.boxes,
                boxes_per_image: self.per_image.summary(),
                zero_box_images: self.zero,
                scores: self.scores.summary(),
                score_histogram: self.score_hist,
                min_score_written: *min_score_written,
                below_min_score: self.below,
                width_px: self.width.summary(),
                height_px: self.height.summary(),
                relative_area: self.area.summary(),
                aspect: self.aspect.summary(),
                classes: self.det_classes.top(task, 20),
                outside_image: self.outside,
            }),
            TaskKind::Segmentation { num_classes, .. } => {
                TaskStats::Segmentation(SegmentationStats {
                    labeled: self.labeled,
                    pixels: self.pixels,
                    ignore_fraction: self.ignored as f64 / self.pixels.max(1) as f64,
                    classes: {
                        // Shares of all pixels, ignored ones included.
                        let mut v = self.pixel_classes.top(task, *num_classes as usize);
                        for c in &mut v {
                            c.fraction = c.count as f64 / self.pixels.max(1) as f64;
                        }
                        v
                    },
                    confidence: levels_summary(&self.conf_levels),
                    confidence_histogram: self.conf_hist,
                    map_sizes: top_sizes(&self.sizes),
                    image_to_map_ratio: self.ratio.summary(),
                })
            }
            TaskKind::Depth { .. } => TaskStats::Depth(DepthStats {
                labeled: self.labeled,
                pixels: self.pixels,
                values: self.values.summary(),
                nan_fraction: self.nan as f64 / self.pixels.max(1) as f64,
                map_sizes: top_sizes(&self.sizes),
                image_to_map_ratio: self.ratio.summary(),
            }),
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
    let mut accs: Vec<Acc> = tasks
        .iter()
        .map(|_| Acc {
            conf_levels: vec![0; 256],
            ..Default::default()
        })
        .collect();
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
                acc.add(t, labels[r].as_ref(), img.width, img.height);
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
    let mut acc = Acc {
        conf_levels: vec![0; 256],
        ..Default::default()
    };
    let mut rows = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| crate::Error::arrow(file, e))?;
        let (_, labels) = crate::codec::batch_to_labels(&task, &batch, &loc, rows)?;
        for l in &labels {
            acc.add(&task, l.as_ref(), 0, 0);
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
