//! The label writer a teacher calls: typed labels for the image ids of one
//! shard in, one aligned Parquet file out (same ids, order and row groups).

use std::collections::HashMap;
use std::sync::OnceLock;

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::EnabledStatistics;
use parquet::schema::types::ColumnPath;

use crate::codec::{labels_to_batch, Label, SegMap};
use crate::error::{Error, Location, Result};
use crate::format::{label_schema, TaskDef, META_TASK};
use crate::store::Dataset;
use crate::write::{base_properties, blob_column, EncodedFile};

/// Collects the labels of one task for one image shard. Rows never set are
/// written as null ("no label").
#[derive(Debug, Clone)]
pub struct LabelWriter {
    task: TaskDef,
    shard: u64,
    ids: Vec<String>,
    row_groups: Vec<u64>,
    /// image id → row, built on the first [`LabelWriter::set`].
    index: OnceLock<HashMap<String, usize>>,
    labels: Vec<Option<Label>>,
    blob_codec: BlobCodec,
}

/// Parquet compression of blob columns (`mask`, `confidence`, `depth`).
/// FORMAT.md allows ZSTD or LZ4_RAW; readers accept any standard codec.
/// LZ4_RAW is the default: on full-resolution maps it made files 27 %
/// larger than ZSTD level 1 but read 63 % faster, which the loader pays
/// every epoch (BENCHMARKS.md, "Codec of blob columns").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlobCodec {
    /// ZSTD level 1: the smallest files.
    Zstd,
    /// LZ4_RAW: larger files, cheaper to read.
    #[default]
    Lz4Raw,
    /// No compression.
    None,
}

impl BlobCodec {
    fn compression(self) -> Compression {
        match self {
            BlobCodec::Zstd => Compression::ZSTD(ZstdLevel::default()),
            BlobCodec::Lz4Raw => Compression::LZ4_RAW,
            BlobCodec::None => Compression::UNCOMPRESSED,
        }
    }
}

impl std::str::FromStr for BlobCodec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "zstd" => Ok(BlobCodec::Zstd),
            "lz4" | "lz4_raw" => Ok(BlobCodec::Lz4Raw),
            "none" => Ok(BlobCodec::None),
            _ => Err(format!("unknown blob codec {s:?} (zstd, lz4 or none)")),
        }
    }
}

impl LabelWriter {
    /// A writer for the given shard layout: its image ids in order and its row group sizes.
    pub fn new(task: TaskDef, shard: u64, ids: Vec<String>, row_groups: Vec<u64>) -> Result<Self> {
        task.validate()?;
        if row_groups.iter().sum::<u64>() != ids.len() as u64 {
            return Err(Error::value(
                Location::file(format!("image shard {shard}")),
                format!(
                    "row groups {row_groups:?} do not add up to {} ids",
                    ids.len()
                ),
            ));
        }
        let labels = vec![None; ids.len()];
        Ok(Self {
            task,
            shard,
            ids,
            row_groups,
            index: OnceLock::new(),
            labels,
            blob_codec: BlobCodec::default(),
        })
    }

    /// Compression of the blob columns (default [`BlobCodec::Zstd`]).
    pub fn blob_codec(mut self, codec: BlobCodec) -> Self {
        self.blob_codec = codec;
        self
    }

    /// A writer for image shard `shard` of `ds`, reading its image ids.
    pub async fn for_shard(ds: &Dataset, task: &str, shard: u64) -> Result<Self> {
        let def = ds.snapshot().task(task)?.clone();
        let groups = ds.snapshot().shard(shard)?.row_groups.clone();
        let ids = ds.read_image_ids(shard).await?;
        Self::new(def, shard, ids, groups)
    }

    /// The image ids of the shard, in order.
    pub fn image_ids(&self) -> &[String] {
        &self.ids
    }

    /// The task.
    pub fn task(&self) -> &TaskDef {
        &self.task
    }

    /// The image shard id.
    pub fn shard(&self) -> u64 {
        self.shard
    }

    fn location(&self, row: usize) -> Location {
        self.file().at(row, self.ids.get(row).map(|s| s.as_str()))
    }

    /// What errors call the file being written.
    fn file(&self) -> Location {
        Location::file(format!(
            "labels of task {:?} for image shard {}",
            self.task.name, self.shard
        ))
    }

    /// Sets the label of row `row` after checking every value.
    pub fn set_row(&mut self, row: usize, label: Label) -> Result<()> {
        if row >= self.ids.len() {
            return Err(Error::value(
                self.location(row),
                format!("the shard has {} rows", self.ids.len()),
            ));
        }
        // The location is only built for an error: this is the hot path.
        label
            .check(&self.task)
            .map_err(|reason| Error::value(self.location(row), reason))?;
        self.labels[row] = Some(label);
        Ok(())
    }

    /// Sets the label of row `row`, already checked with
    /// [`Label::validate`] against this writer's task (the aligner checks
    /// each input row where it can name the input's file and row).
    pub(crate) fn set_row_checked(&mut self, row: usize, label: Label) -> Result<()> {
        let Some(slot) = self.labels.get_mut(row) else {
            return Err(Error::value(
                self.location(row),
                format!("the shard has {} rows", self.ids.len()),
            ));
        };
        *slot = Some(label);
        Ok(())
    }

    /// Sets the label of `image_id` after checking every value.
    pub fn set(&mut self, image_id: &str, label: Label) -> Result<()> {
        let index = self.index.get_or_init(|| {
            self.ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), i))
                .collect()
        });
        let row = *index.get(image_id).ok_or_else(|| {
            Error::value(
                Location {
                    image_id: Some(image_id.to_owned()),
                    ..self.file()
                },
                format!("image_id is not in image shard {}", self.shard),
            )
        })?;
        self.set_row(row, label)
    }

    /// Writes the file: one row group per row group of the shard.
    pub fn finish(self) -> Result<EncodedFile> {
        let file = format!(
            "labels of task {:?} for image shard {}",
            self.task.name, self.shard
        );
        let with_conf = self.labels.iter().any(|l| {
            matches!(
                l,
                Some(Label::Segmentation(SegMap {
                    confidence: Some(_),
                    ..
                }))
            )
        });
        let schema = std::sync::Arc::new(label_schema(&self.task, with_conf));
        let mut props = base_properties(
            "labels",
            vec![KeyValue::new(META_TASK.into(), self.task.to_json())],
        );
        for blob in ["mask", "depth", "confidence"] {
            if schema.field_with_name(blob).is_ok() {
                props = blob_column(props, blob, self.blob_codec.compression());
            }
        }
        // Probabilities, scores and coordinates rarely repeat and their
        // min/max say nothing: no dictionary (it would fall back to plain
        // pages anyway) and no statistics.
        for (column, leaf) in [
            ("probs", "probs.list.item"),
            ("scores", "scores.list.item"),
            ("boxes", "boxes.list.item.list.item"),
        ] {
            if schema.field_with_name(column).is_ok() {
                let path = ColumnPath::from(leaf.split('.').map(str::to_owned).collect::<Vec<_>>());
                props = props
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_statistics_enabled(path, EnabledStatistics::None);
            }
        }
        let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(props.build()))
            .map_err(|e| Error::parquet(&file, e))?;
        let mut start = 0usize;
        for &n in &self.row_groups {
            let end = start + n as usize;
            let batch = labels_to_batch(
                &self.task,
                &self.ids[start..end],
                &self.labels[start..end],
                with_conf,
            )?;
            writer.write(&batch).map_err(|e| Error::parquet(&file, e))?;
            writer.flush().map_err(|e| Error::parquet(&file, e))?;
            start = end;
        }
        let bytes = writer.into_inner().map_err(|e| Error::parquet(&file, e))?;
        Ok(EncodedFile {
            bytes: bytes.into(),
            rows: self.ids.len() as u64,
            row_groups: self.row_groups,
            sources: Default::default(),
            labeled: self.labels.iter().filter(|l| l.is_some()).count() as u64,
        })
    }
}
