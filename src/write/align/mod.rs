//! Labels from any engine: rows matched to image shards by `image_id`, in
//! any order and row grouping, from any number of record batches (files of
//! DuckDB, Spark, Ray, BigQuery, or batches handed over in memory). Each
//! shard's labels are written as an aligned file and committed on their own,
//! so that an interrupted run leaves whole shards.
//!
//! Memory: an index of 32 bytes per image id of the target shards (a
//! 128-bit hash and the place), plus the labels waiting for their shard to
//! be complete, up to [`AlignOptions::memory_bytes`]; past that the largest
//! pending shard is spilled to a temporary Parquet file and read back when
//! the shard is written.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use arrow_array::{Array, RecordBatch};

use crate::codec::{batch_to_labels, ClassLabel, Label};
use crate::error::{Error, Location, Result};
use crate::format::{AddLabels, TaskDef};
use crate::store::Dataset;
use crate::write::LabelWriter;

mod input;
mod spill;

/// How boxes are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BoxFormat {
    /// `[x0, y0, x1, y1]` in pixels of the stored image (the format's own).
    #[default]
    Xyxy,
    /// `[x, y, width, height]` in pixels.
    Xywh,
    /// `[x0, y0, x1, y1]` as fractions of the image's width and height.
    XyxyNormalized,
}

impl std::str::FromStr for BoxFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "xyxy" => Ok(BoxFormat::Xyxy),
            "xywh" => Ok(BoxFormat::Xywh),
            "xyxy-normalized" => Ok(BoxFormat::XyxyNormalized),
            _ => Err(format!(
                "unknown box format {s:?} (xyxy, xywh or xyxy-normalized)"
            )),
        }
    }
}

/// What [`LabelAligner`] does.
#[derive(Debug, Clone)]
pub struct AlignOptions {
    /// Only this image shard (ids of other shards are unknown ids).
    pub shard: Option<u64>,
    /// Relabel shards that already have labels for the task.
    pub replace: bool,
    /// Leave shards that already have labels as they are (their rows are
    /// counted and ignored).
    pub skip_labeled: bool,
    /// Column names: format name → name in the input (`boxes` → `pred_boxes`).
    pub columns: BTreeMap<String, String>,
    /// How boxes are given.
    pub box_format: BoxFormat,
    /// For a top-k task given all C probabilities (a dense `probs` column and
    /// no `classes`): how many to keep.
    pub top_k: usize,
    /// Labels held in memory before the largest pending shard is spilled to
    /// disk. Default 1 GiB.
    pub memory_bytes: u64,
    /// Where spill files go (default: the system's temporary folder).
    pub spill_dir: Option<PathBuf>,
}

impl Default for AlignOptions {
    fn default() -> Self {
        Self {
            shard: None,
            replace: false,
            skip_labeled: false,
            columns: BTreeMap::new(),
            box_format: BoxFormat::Xyxy,
            top_k: 5,
            memory_bytes: 1 << 30,
            spill_dir: None,
        }
    }
}

/// What happened to one image shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardOutcome {
    /// Image shard id.
    pub shard: u64,
    /// Its rows.
    pub rows: u64,
    /// Rows the input labeled (the others are absent labels, null rows).
    pub labeled: u64,
    /// The committed label file (empty when skipped).
    pub path: String,
    /// The shard already had labels and `skip_labeled` left it alone.
    pub skipped: bool,
}

/// What [`LabelAligner::finish`] reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlignReport {
    /// Input rows read.
    pub rows_in: u64,
    /// Input rows of skipped shards.
    pub rows_skipped: u64,
    /// Shards labeled or skipped, in the order they were committed.
    pub shards: Vec<ShardOutcome>,
    /// Times a pending shard was spilled to disk.
    pub spills: u64,
}

impl AlignReport {
    /// Image ids of committed shards that the input did not label.
    pub fn missing(&self) -> u64 {
        self.shards
            .iter()
            .filter(|s| !s.skipped)
            .map(|s| s.rows - s.labeled)
            .sum()
    }
}

/// One target shard.
struct Target {
    shard: u64,
    rows: u32,
    /// Image width and height per row (normalized boxes only).
    sizes: Vec<(u32, u32)>,
    /// One bit per row: labeled by the input so far.
    seen: Vec<u64>,
    count: u32,
    /// Labels waiting for the shard's file: (row, label).
    pending: Vec<(u32, Label)>,
    pending_bytes: u64,
    /// Spilled chunks.
    spills: Vec<PathBuf>,
    /// Already has labels for the task.
    labeled: bool,
    /// Already labeled, left alone.
    skip: bool,
    /// Input rows of a skipped shard.
    skipped_rows: u64,
    done: bool,
}

/// Aligns labels to image shards by image id and commits one file per shard.
pub struct LabelAligner<'a> {
    ds: &'a mut Dataset,
    task: TaskDef,
    opts: AlignOptions,
    index: HashMap<u128, (u32, u32)>,
    targets: Vec<Target>,
    memory: u64,
    report: AlignReport,
    spill_dir: Option<spill::TempDir>,
}

/// The 128-bit hash the index keys ids by (the audit's duplicate check keys them the same way).
pub(crate) fn id_hash(id: &str) -> u128 {
    use std::hash::{Hash, Hasher};
    let mut a = std::hash::DefaultHasher::new();
    id.hash(&mut a);
    let mut b = std::hash::DefaultHasher::new();
    (0xA5u8, id).hash(&mut b);
    ((a.finish() as u128) << 64) | b.finish() as u128
}

/// Approximate heap bytes of a label.
fn label_bytes(l: &Label) -> u64 {
    let n = match l {
        Label::Classification(ClassLabel::TopK { classes, probs }) => {
            4 * (classes.len() + probs.len())
        }
        Label::Classification(ClassLabel::Dense(p)) => 4 * p.len(),
        Label::Detection(d) => 16 * d.boxes.len() + 4 * (d.classes.len() + d.scores.len()),
        Label::Segmentation(m) => m.mask.len() + m.confidence.as_ref().map_or(0, Vec::len),
        Label::Depth(d) => d.depth.len(),
    };
    n as u64 + 64
}

impl<'a> LabelAligner<'a> {
    /// Reads the image ids of the target shards (all live shards, or
    /// `opts.shard`) and indexes them.
    pub async fn new(ds: &'a mut Dataset, task: &str, opts: AlignOptions) -> Result<Self> {
        let def = ds.snapshot().task(task)?.clone();
        if opts.replace && opts.skip_labeled {
            return Err(Error::value(
                Location::file(format!("labels of task {task:?}")),
                "replace and skip_labeled contradict each other",
            ));
        }
        let shards: Vec<u64> = match opts.shard {
            Some(s) => {
                ds.snapshot().shard(s)?;
                vec![s]
            }
            None => ds.snapshot().images.keys().copied().collect(),
        };
        let mut index: HashMap<u128, (u32, u32)> = HashMap::new();
        let mut targets = Vec::with_capacity(shards.len());
        for (ti, &shard) in shards.iter().enumerate() {
            let a = ds.snapshot().shard(shard)?.clone();
            let labeled = ds
                .snapshot()
                .labels
                .contains_key(&(def.name.clone(), shard));
            let need_sizes = opts.box_format == BoxFormat::XyxyNormalized;
            let cols: &[&str] = if need_sizes {
                &["image_id", "width", "height"]
            } else {
                &["image_id"]
            };
            let rg = ds
                .read_batches(&a.path, Some(a.bytes), None, Some(cols))
                .await?;
            let loc = Location::file(&a.path);
            let mut row = 0u32;
            let mut sizes = vec![];
            for b in &rg {
                let ids = crate::codec::image_ids(b, &loc)?;
                for i in 0..ids.len() {
                    let id = ids.value(i);
                    if let Some((t, r)) = index.insert(id_hash(id), (ti as u32, row)) {
                        return Err(Error::value(
                            loc.at(row as usize, Some(id)),
                            format!(
                                "the image id is also at row {r} of image shard {}: labels cannot be matched by id",
                                shards[t as usize]
                            ),
                        ));
                    }
                    row = row.checked_add(1).ok_or_else(|| {
                        Error::value(loc.clone(), "more than 2^32 rows in one shard")
                    })?;
                }
                if need_sizes {
                    let w = crate::codec::normalize_column(
                        b,
                        "width",
                        &arrow_schema::DataType::UInt32,
                        &loc,
                        true,
                    )?;
                    let h = crate::codec::normalize_column(
                        b,
                        "height",
                        &arrow_schema::DataType::UInt32,
                        &loc,
                        true,
                    )?;
                    if let (Some(w), Some(h)) = (w, h) {
                        use arrow_array::cast::AsArray;
                        let (w, h) = (
                            w.as_primitive::<arrow_array::types::UInt32Type>(),
                            h.as_primitive::<arrow_array::types::UInt32Type>(),
                        );
                        sizes.extend((0..w.len()).map(|i| (w.value(i), h.value(i))));
                    }
                }
            }
            targets.push(Target {
                shard,
                rows: row,
                sizes,
                seen: vec![0; (row as usize).div_ceil(64)],
                count: 0,
                pending: vec![],
                pending_bytes: 0,
                spills: vec![],
                labeled,
                skip: labeled && opts.skip_labeled,
                skipped_rows: 0,
                done: false,
            });
        }
        Ok(Self {
            ds,
            task: def,
            opts,
            index,
            targets,
            memory: 0,
            report: AlignReport::default(),
            spill_dir: None,
        })
    }

    /// The task being labeled.
    pub fn task(&self) -> &TaskDef {
        &self.task
    }

    /// Takes one batch of input rows; `source` names where they come from
    /// (a file) and `first_row` is the batch's first row in it, for errors.
    /// Shards whose every row is now labeled are written and committed.
    pub async fn push(
        &mut self,
        batch: &RecordBatch,
        source: &str,
        first_row: usize,
    ) -> Result<()> {
        let loc = Location::file(source);
        let (batch, decode_as, dense_for_topk) = self.canonical(batch, &loc)?;
        let (ids, labels) = batch_to_labels(&decode_as, &batch, &loc, first_row)?;
        self.report.rows_in += ids.len() as u64;
        let mut complete = vec![];
        for (i, (id, label)) in ids.iter().zip(labels).enumerate() {
            let row_loc = || loc.at(first_row + i, Some(id));
            let Some(&(t, r)) = self.index.get(&id_hash(id)) else {
                let where_ = match self.opts.shard {
                    Some(s) => format!("image shard {s}"),
                    None => "the dataset".into(),
                };
                return Err(Error::value(
                    row_loc(),
                    format!("image_id is not in {where_}"),
                ));
            };
            let target = &mut self.targets[t as usize];
            if target.skip {
                target.skipped_rows += 1;
                self.report.rows_skipped += 1;
                continue;
            }
            if target.labeled && !self.opts.replace {
                let old = self
                    .ds
                    .snapshot()
                    .labels
                    .get(&(self.task.name.clone(), target.shard))
                    .map(|l| l.path.clone())
                    .unwrap_or_default();
                return Err(Error::Conflict {
                    version: self.ds.version(),
                    reason: format!(
                        "{}: task {:?} already has labels for image shard {} ({old}); replace to relabel, or skip labeled shards",
                        row_loc(),
                        self.task.name,
                        target.shard
                    ),
                });
            }
            let (word, bit) = (r as usize / 64, 1u64 << (r % 64));
            if target.seen[word] & bit != 0 {
                return Err(Error::value(
                    row_loc(),
                    format!(
                        "image_id appears twice in the input (row {r} of image shard {})",
                        target.shard
                    ),
                ));
            }
            if target.done {
                return Err(Error::value(
                    row_loc(),
                    "image_id of a shard already committed",
                ));
            }
            target.seen[word] |= bit;
            target.count += 1;
            let Some(mut label) = label else {
                // A null row: an absent label, counted as seen.
                if target.count == target.rows {
                    complete.push(t);
                }
                continue;
            };
            if dense_for_topk {
                if let Label::Classification(ClassLabel::Dense(p)) = &label {
                    label = Label::Classification(ClassLabel::top_k(p, self.opts.top_k.max(1)));
                }
            }
            if let Label::Detection(d) = &mut label {
                match self.opts.box_format {
                    BoxFormat::Xyxy => {}
                    BoxFormat::Xywh => {
                        for b in &mut d.boxes {
                            b[2] += b[0];
                            b[3] += b[1];
                        }
                    }
                    BoxFormat::XyxyNormalized => {
                        let (w, h) = target.sizes.get(r as usize).copied().unwrap_or((0, 0));
                        for b in &mut d.boxes {
                            b[0] *= w as f32;
                            b[2] *= w as f32;
                            b[1] *= h as f32;
                            b[3] *= h as f32;
                        }
                    }
                }
            }
            label.validate(&self.task, &row_loc())?;
            let n = label_bytes(&label);
            target.pending.push((r, label));
            target.pending_bytes += n;
            self.memory += n;
            if target.count == target.rows {
                complete.push(t);
            }
        }
        for t in complete {
            self.commit(t as usize).await?;
        }
        while self.memory > self.opts.memory_bytes {
            if !self.spill_largest()? {
                break;
            }
        }
        Ok(())
    }

    /// Writes and commits target `t`'s file.
    async fn commit(&mut self, t: usize) -> Result<()> {
        let (shard, spills, pending, bytes) = {
            let target = &mut self.targets[t];
            target.done = true;
            (
                target.shard,
                std::mem::take(&mut target.spills),
                std::mem::take(&mut target.pending),
                std::mem::replace(&mut target.pending_bytes, 0),
            )
        };
        self.memory -= bytes;
        let mut w = LabelWriter::for_shard(self.ds, &self.task.name, shard).await?;
        let mut labeled = 0u64;
        for path in &spills {
            let name = path.display().to_string();
            let f = std::fs::File::open(path).map_err(|e| Error::io(&name, e))?;
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .and_then(|b| b.build())
                .map_err(|e| Error::parquet(&name, e))?;
            for b in reader {
                let b = b.map_err(|e| Error::arrow(&name, e))?;
                let (rows, labels) = batch_to_labels(&self.task, &b, &Location::file(&name), 0)?;
                for (r, l) in rows.iter().zip(labels) {
                    let r: usize = r
                        .parse()
                        .map_err(|_| Error::value(Location::file(&name), "a spill row"))?;
                    if let Some(l) = l {
                        // Checked when it came in, before the spill.
                        w.set_row_checked(r, l)?;
                        labeled += 1;
                    }
                }
            }
            let _ = std::fs::remove_file(path);
        }
        for (r, l) in pending {
            w.set_row_checked(r as usize, l)?;
            labeled += 1;
        }
        let rows = self.targets[t].rows as u64;
        let file = w.finish()?;
        let added: AddLabels = self
            .ds
            .add_label_file(&self.task.name, shard, file, self.opts.replace)
            .await?;
        debug_assert_eq!(added.labeled, labeled);
        self.report.shards.push(ShardOutcome {
            shard,
            rows,
            labeled: added.labeled,
            path: added.path,
            skipped: false,
        });
        Ok(())
    }

    /// Commits every shard the input labeled (rows it did not mention are
    /// absent labels) and reports.
    pub async fn finish(mut self) -> Result<AlignReport> {
        if self.report.rows_in == 0 {
            return Err(Error::value(
                Location::file(format!("labels of task {:?}", self.task.name)),
                "the input has no rows",
            ));
        }
        for t in 0..self.targets.len() {
            let tg = &self.targets[t];
            if tg.skip {
                if tg.skipped_rows > 0 {
                    self.report.shards.push(ShardOutcome {
                        shard: tg.shard,
                        rows: tg.rows as u64,
                        labeled: 0,
                        path: String::new(),
                        skipped: true,
                    });
                }
                continue;
            }
            if !tg.done && tg.count > 0 {
                self.commit(t).await?;
            }
        }
        Ok(self.report)
    }
}
