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
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema};

use crate::codec::{batch_to_labels, labels_to_batch, ClassLabel, Label, SegMap};
use crate::error::{Error, Location, Result};
use crate::format::{AddLabels, ClassEncoding, MaskDtype, TaskDef, TaskKind};
use crate::store::Dataset;
use crate::write::LabelWriter;

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
    spill_dir: Option<tempfile_dir::TempDir>,
}

/// A temporary folder removed on drop (spill files), without a dependency.
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(parent: &Path) -> std::io::Result<Self> {
            let p = parent.join(format!("must-ds-align-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&p)?;
            Ok(Self(p))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            // Only files this aligner wrote live here.
            if let Ok(entries) = std::fs::read_dir(&self.0) {
                for e in entries.flatten() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
            let _ = std::fs::remove_dir(&self.0);
        }
    }
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

    /// Renames mapped columns and converts alternative encodings to the
    /// format's columns.
    fn canonical(
        &self,
        batch: &RecordBatch,
        loc: &Location,
    ) -> Result<(RecordBatch, TaskDef, bool)> {
        let mut fields: Vec<Field> = vec![];
        let mut cols: Vec<ArrayRef> = vec![];
        let schema = batch.schema();
        for (to, from) in &self.opts.columns {
            if schema.column_with_name(from).is_none() {
                return Err(Error::schema(
                    loc.clone(),
                    format!("the mapping {to}={from} names no column of the input ({from:?})"),
                ));
            }
        }
        let renamed: BTreeMap<&str, &str> = self
            .opts
            .columns
            .iter()
            .map(|(to, from)| (from.as_str(), to.as_str()))
            .collect();
        for (f, c) in schema.fields().iter().zip(batch.columns()) {
            let name = match renamed.get(f.name().as_str()) {
                Some(to) => *to,
                // A column of a mapped name that the mapping replaces.
                None if self.opts.columns.contains_key(f.name()) => continue,
                None => f.name().as_str(),
            };
            fields.push(f.as_ref().clone().with_name(name));
            cols.push(c.clone());
        }
        let mut task = self.task.clone();
        let mut dense_for_topk = false;
        if let TaskKind::Classification {
            encoding: ClassEncoding::Topk,
            ..
        } = &task.kind
        {
            let has_classes = fields.iter().any(|f| f.name() == "classes");
            if !has_classes && fields.iter().any(|f| f.name() == "probs") {
                // All C probabilities for a top-k task: read as dense, keep the top k.
                if let TaskKind::Classification { encoding, .. } = &mut task.kind {
                    *encoding = ClassEncoding::Dense;
                }
                dense_for_topk = true;
            }
        }
        if matches!(task.kind, TaskKind::Segmentation { .. })
            && !fields.iter().any(|f| f.name() == "mask_height")
        {
            if let Some(i) = fields.iter().position(|f| f.name() == "mask") {
                let (mask, h, w) = decode_png_column(&cols[i], &task, loc)?;
                fields[i] = Field::new("mask", arrow_schema::DataType::Binary, true);
                cols[i] = mask;
                fields.push(Field::new(
                    "mask_height",
                    arrow_schema::DataType::UInt32,
                    true,
                ));
                cols.push(h);
                fields.push(Field::new(
                    "mask_width",
                    arrow_schema::DataType::UInt32,
                    true,
                ));
                cols.push(w);
            }
        }
        let b = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
            .map_err(|e| Error::schema(loc.clone(), e.to_string()))?;
        Ok((b, task, dense_for_topk))
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

    /// Writes the pending labels of the largest pending shard to disk.
    fn spill_largest(&mut self) -> Result<bool> {
        let Some((t, _)) = self
            .targets
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.pending.is_empty())
            .max_by_key(|(_, t)| t.pending_bytes)
        else {
            return Ok(false);
        };
        if self.spill_dir.is_none() {
            let parent = self
                .opts
                .spill_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir);
            self.spill_dir = Some(
                tempfile_dir::TempDir::new(&parent)
                    .map_err(|e| Error::io(parent.display().to_string(), e))?,
            );
        }
        let dir = self.spill_dir.as_ref().expect("set").path().to_path_buf();
        let target = &mut self.targets[t];
        let pending = std::mem::take(&mut target.pending);
        let path = dir.join(format!("{}-{}.parquet", target.shard, target.spills.len()));
        let ids: Vec<String> = pending.iter().map(|(r, _)| r.to_string()).collect();
        let labels: Vec<Option<Label>> = pending.into_iter().map(|(_, l)| Some(l)).collect();
        let with_conf = labels.iter().any(|l| {
            matches!(
                l,
                Some(Label::Segmentation(SegMap {
                    confidence: Some(_),
                    ..
                }))
            )
        });
        let batch = labels_to_batch(&self.task, &ids, &labels, with_conf)?;
        let name = path.display().to_string();
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&name, e))?;
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::LZ4_RAW)
            .build();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props))
            .map_err(|e| Error::parquet(&name, e))?;
        w.write(&batch).map_err(|e| Error::parquet(&name, e))?;
        w.close().map_err(|e| Error::parquet(&name, e))?;
        target.spills.push(path);
        self.memory -= target.pending_bytes;
        target.pending_bytes = 0;
        self.report.spills += 1;
        Ok(true)
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

/// A `mask` column of PNG images → raw masks in the task's dtype with their sizes.
fn decode_png_column(
    col: &ArrayRef,
    task: &TaskDef,
    loc: &Location,
) -> Result<(ArrayRef, ArrayRef, ArrayRef)> {
    use arrow_array::builder::{BinaryBuilder, UInt32Builder};
    let TaskKind::Segmentation { dtype, .. } = &task.kind else {
        unreachable!("segmentation only")
    };
    let bin = arrow_cast::cast(col, &arrow_schema::DataType::Binary)
        .map_err(|e| Error::schema(loc.clone(), format!("column \"mask\": {e}")))?;
    let bin = arrow_array::cast::AsArray::as_binary::<i32>(&bin);
    let (mut m, mut h, mut w) = (
        BinaryBuilder::new(),
        UInt32Builder::new(),
        UInt32Builder::new(),
    );
    for i in 0..bin.len() {
        if bin.is_null(i) {
            m.append_null();
            h.append_null();
            w.append_null();
            continue;
        }
        let bytes = bin.value(i);
        let bad = |m: String| Error::value(loc.at(i, None), format!("mask: {m}"));
        if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Err(bad(
                "no mask_height/mask_width columns and not a PNG image".into()
            ));
        }
        let mut reader =
            image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Png);
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(crate::codec::max_image_pixels().saturating_mul(2));
        reader.limits(limits);
        let img = reader.decode().map_err(|e| bad(format!("PNG: {e}")))?;
        let (iw, ih) = (img.width(), img.height());
        let raw: Vec<u8> = match (dtype, img) {
            (MaskDtype::U8, image::DynamicImage::ImageLuma8(g)) => g.into_raw(),
            (MaskDtype::U16, image::DynamicImage::ImageLuma8(g)) => g
                .into_raw()
                .into_iter()
                .flat_map(|v| (v as u16).to_le_bytes())
                .collect(),
            (MaskDtype::U16, image::DynamicImage::ImageLuma16(g)) => g
                .into_raw()
                .into_iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            (d, other) => {
                return Err(bad(format!(
                "a {:?} PNG for a {} mask (one gray channel expected: 8 bits, or 16 for u16 tasks)",
                other.color(),
                match d {
                    MaskDtype::U8 => "u8",
                    MaskDtype::U16 => "u16",
                }
            )))
            }
        };
        m.append_value(raw);
        h.append_value(ih);
        w.append_value(iw);
    }
    Ok((
        Arc::new(m.finish()),
        Arc::new(h.finish()),
        Arc::new(w.finish()),
    ))
}
