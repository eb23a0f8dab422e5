//! Reading aligned files: row group g of image shard k together with row
//! group g of any set of tasks, with column projection, as typed records.

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use bytes::Bytes;
use futures::TryStreamExt;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;

use crate::codec::{batch_to_labels, normalize_column, Label};
use crate::error::{Error, Location, Result};
use crate::store::Dataset;

mod object;
pub use object::{StoreReader, FOOTER_HINT};

/// One row of an image shard. Columns left out by the projection are `None`
/// (or 0 for the sizes).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    /// The image id.
    pub image_id: String,
    /// The source corpus.
    pub source: Option<String>,
    /// The encoded image, when embedded.
    pub image: Option<Bytes>,
    /// Where the image lives, when not embedded.
    pub uri: Option<String>,
    /// Pixel width.
    pub width: u32,
    /// Pixel height.
    pub height: u32,
}

/// Row group `row_group` of an image shard with the same row group of each requested task.
#[derive(Debug, Clone)]
pub struct RowGroupData {
    /// Image shard id.
    pub shard: u64,
    /// Row group index.
    pub row_group: usize,
    /// Index in the shard of this group's first row.
    pub first_row: u64,
    /// The images.
    pub images: Vec<ImageRecord>,
    /// Per task, one label per image (`None`: no label).
    pub labels: BTreeMap<String, Vec<Option<Label>>>,
}

/// Parsed footers of recently read files, shared by concurrent reads
/// (least recently inserted dropped first past `capacity`).
#[derive(Debug)]
pub struct FooterCache {
    capacity: usize,
    inner: std::sync::Mutex<(
        std::collections::HashMap<String, ArrowReaderMetadata>,
        std::collections::VecDeque<String>,
    )>,
}

impl FooterCache {
    /// A cache of at most `capacity` footers.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Default::default(),
        }
    }

    /// The footer of `file` from `cache` when it is there, else read
    /// through `reader` (and kept in `cache`).
    pub(crate) async fn load(
        cache: Option<&FooterCache>,
        reader: &mut StoreReader,
        file: &str,
    ) -> Result<ArrowReaderMetadata> {
        if let Some(m) = cache.and_then(|c| c.get(file)) {
            return Ok(m);
        }
        let m = ArrowReaderMetadata::load_async(reader, Default::default())
            .await
            .map_err(|e| Error::parquet(file, e))?;
        check_footer_counts(m.metadata(), file)?;
        if let Some(c) = cache {
            c.put(file, m.clone());
        }
        Ok(m)
    }

    fn get(&self, file: &str) -> Option<ArrowReaderMetadata> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0.get(file).cloned()
    }

    fn put(&self, file: &str, meta: ArrowReaderMetadata) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.0.insert(file.to_owned(), meta).is_none() {
            g.1.push_back(file.to_owned());
        }
        while g.1.len() > self.capacity {
            if let Some(old) = g.1.pop_front() {
                g.0.remove(&old);
            }
        }
    }
}

pub use crate::format::check_footer_counts;

/// Image shard columns, all of them.
pub const IMAGE_COLUMNS: &[&str] = &["image_id", "source", "image", "uri", "width", "height"];

impl Dataset {
    /// Reads row groups of a data file (all when `row_groups` is `None`),
    /// keeping only the named top-level columns (all when `None`).
    pub async fn read_batches(
        &self,
        rel: &str,
        size: Option<u64>,
        row_groups: Option<Vec<usize>>,
        columns: Option<&[&str]>,
    ) -> Result<Vec<RecordBatch>> {
        self.read_batches_cached(rel, size, row_groups, columns, None)
            .await
    }

    /// [`read_batches`](Self::read_batches) keeping each file's footer in
    /// `footers`, so that reading more row groups of it costs no footer request.
    pub async fn read_batches_cached(
        &self,
        rel: &str,
        size: Option<u64>,
        row_groups: Option<Vec<usize>>,
        columns: Option<&[&str]>,
        footers: Option<&FooterCache>,
    ) -> Result<Vec<RecordBatch>> {
        let mut reader = StoreReader::new(self.store.clone(), self.object_path(rel), size);
        let meta = FooterCache::load(footers, &mut reader, rel).await?;
        let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta);
        let mut builder = builder.with_batch_size(1 << 20);
        if let Some(cols) = columns {
            let fields = builder.schema().fields();
            let idx: Vec<usize> = fields
                .iter()
                .enumerate()
                .filter(|(_, f)| cols.contains(&f.name().as_str()))
                .map(|(i, _)| i)
                .collect();
            let mask = ProjectionMask::roots(builder.parquet_schema(), idx);
            builder = builder.with_projection(mask);
        }
        if let Some(groups) = row_groups {
            let have = builder.metadata().num_row_groups();
            if let Some(g) = groups.iter().find(|g| **g >= have) {
                return Err(Error::value(
                    Location::file(rel),
                    format!("row group {g} does not exist (file has {have})"),
                ));
            }
            builder = builder.with_row_groups(groups);
        }
        let stream = builder.build().map_err(|e| Error::parquet(rel, e))?;
        stream
            .try_collect()
            .await
            .map_err(|e| Error::parquet(rel, e))
    }

    /// The rows of each row group of a data file, from its footer.
    pub async fn file_row_groups(
        &self,
        rel: &str,
        size: Option<u64>,
        footers: Option<&FooterCache>,
    ) -> Result<Vec<u64>> {
        let mut reader = StoreReader::new(self.store.clone(), self.object_path(rel), size);
        let meta = FooterCache::load(footers, &mut reader, rel).await?;
        Ok(meta
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows().max(0) as u64)
            .collect())
    }

    /// The image ids of shard `shard`, in order.
    pub async fn read_image_ids(&self, shard: u64) -> Result<Vec<String>> {
        let a = self.snapshot.shard(shard)?.clone();
        let batches = self
            .read_batches(&a.path, Some(a.bytes), None, Some(&["image_id"]))
            .await?;
        let loc = Location::file(&a.path);
        // The log's count is a hint, not a promise: bounded.
        let mut ids = Vec::with_capacity(a.rows.min(1 << 20) as usize);
        for b in &batches {
            let col = crate::codec::image_ids(b, &loc)?;
            ids.extend(col.iter().map(|s| s.unwrap_or_default().to_owned()));
        }
        Ok(ids)
    }

    /// Reads row group `row_group` of image shard `shard` and of each task in
    /// `tasks`, keeping the image columns in `image_columns` (all when `None`;
    /// `image_id` always). Labels are checked to be aligned with the images.
    pub async fn read_row_group(
        &self,
        shard: u64,
        row_group: usize,
        tasks: &[&str],
        image_columns: Option<&[&str]>,
    ) -> Result<RowGroupData> {
        self.read_row_group_cached(shard, row_group, tasks, image_columns, None)
            .await
    }

    /// [`read_row_group`](Self::read_row_group) with a footer cache.
    pub async fn read_row_group_cached(
        &self,
        shard: u64,
        row_group: usize,
        tasks: &[&str],
        image_columns: Option<&[&str]>,
        footers: Option<&FooterCache>,
    ) -> Result<RowGroupData> {
        let a = self.snapshot.shard(shard)?.clone();
        let first_row = a.row_groups.iter().take(row_group).sum();
        let mut cols: Vec<&str> = image_columns.unwrap_or(IMAGE_COLUMNS).to_vec();
        if !cols.contains(&"image_id") {
            cols.push("image_id");
        }
        // The image row group and the same row group of every task, fetched together.
        let mut files = vec![];
        for &task_name in tasks {
            let task = self.snapshot.task(task_name)?.clone();
            let file = self
                .snapshot
                .labels
                .get(&(task_name.to_owned(), shard))
                .cloned();
            files.push((task_name, task, file));
        }
        let label_reads = files.iter().map(|(_, _, file)| async move {
            match file {
                Some(l) => self
                    .read_batches_cached(
                        &l.path,
                        Some(l.bytes),
                        Some(vec![row_group]),
                        None,
                        footers,
                    )
                    .await
                    .map(Some),
                None => Ok(None),
            }
        });
        let (batches, label_batches) = futures::future::try_join(
            self.read_batches_cached(
                &a.path,
                Some(a.bytes),
                Some(vec![row_group]),
                Some(&cols),
                footers,
            ),
            futures::future::try_join_all(label_reads),
        )
        .await?;
        let images = image_records(&batches, &Location::file(&a.path))?;
        let mut labels = BTreeMap::new();
        for ((task_name, task, file), batches) in files.into_iter().zip(label_batches) {
            let (Some(l), Some(batches)) = (file, batches) else {
                labels.insert(task_name.to_owned(), vec![None; images.len()]);
                continue;
            };
            let loc = Location::file(&l.path);
            let mut ids = Vec::new();
            let mut values = Vec::new();
            let mut offset = first_row as usize;
            for b in &batches {
                let (i, v) = batch_to_labels(&task, b, &loc, offset)?;
                offset += b.num_rows();
                ids.extend(i);
                values.extend(v);
            }
            if let Some(row) = (0..ids.len().max(images.len()))
                .find(|&r| ids.get(r) != images.get(r).map(|i| &i.image_id))
            {
                return Err(Error::Misaligned {
                    location: loc.at(first_row as usize + row, ids.get(row).map(|s| s.as_str())),
                    shard,
                    reason: format!(
                        "row group {row_group}: image shard has {:?} here",
                        images.get(row).map(|i| i.image_id.as_str())
                    ),
                });
            }
            labels.insert(task_name.to_owned(), values);
        }
        Ok(RowGroupData {
            shard,
            row_group,
            first_row,
            images,
            labels,
        })
    }
}

impl Dataset {
    /// Row group `row_group` of image shard `shard` with the same row group
    /// of each task in `tasks`, as one Arrow record batch: the image columns
    /// with the types of FORMAT.md section 3 (a column the file lacks is
    /// all null), then each task's label columns named `<task>.<column>`
    /// with the types of section 4, null where the image has no label (every
    /// row, when the task has no file for the shard). Whatever wrote the
    /// files, the types are the same; labels are checked as
    /// [`read_row_group`](Self::read_row_group) checks them (types, values,
    /// alignment).
    pub async fn read_row_group_arrow(
        &self,
        shard: u64,
        row_group: usize,
        tasks: &[&str],
    ) -> Result<RecordBatch> {
        let a = self.snapshot.shard(shard)?.clone();
        let first_row: u64 = a.row_groups.iter().take(row_group).sum();
        let mut defs = Vec::new();
        for &t in tasks {
            let task = self.snapshot.task(t)?.clone();
            let file = self.snapshot.labels.get(&(t.to_owned(), shard)).cloned();
            defs.push((task, file));
        }
        let label_reads = defs.iter().map(|(_, file)| async move {
            match file {
                Some(l) => self
                    .read_batches(&l.path, Some(l.bytes), Some(vec![row_group]), None)
                    .await
                    .map(Some),
                None => Ok(None),
            }
        });
        let (image_batches, label_batches) = futures::future::try_join(
            self.read_batches(&a.path, Some(a.bytes), Some(vec![row_group]), None),
            futures::future::try_join_all(label_reads),
        )
        .await?;
        let loc = Location::file(&a.path);
        let images = concat(&image_batches, &loc)?;
        let ids = crate::codec::image_ids(&images, &loc)?;
        let rows = images.num_rows();
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        let schema = crate::format::image_schema();
        for f in schema.fields() {
            let required = !f.is_nullable();
            let col = normalize_column(&images, f.name(), f.data_type(), &loc, required)?
                .unwrap_or_else(|| arrow_array::new_null_array(f.data_type(), rows));
            fields.push(f.as_ref().clone());
            columns.push(col);
        }
        for ((task, file), batches) in defs.iter().zip(label_batches) {
            let (Some(l), Some(batches)) = (file, batches) else {
                for f in crate::format::label_schema(task, false)
                    .fields()
                    .iter()
                    .skip(1)
                {
                    fields.push(arrow_schema::Field::new(
                        format!("{}.{}", task.name, f.name()),
                        f.data_type().clone(),
                        true,
                    ));
                    columns.push(arrow_array::new_null_array(f.data_type(), rows));
                }
                continue;
            };
            let lloc = Location::file(&l.path);
            let b = concat(&batches, &lloc)?;
            let label_ids = crate::codec::image_ids(&b, &lloc)?;
            if let Some(row) = (0..label_ids.len().max(rows)).find(|&r| {
                (r < label_ids.len()).then(|| label_ids.value(r))
                    != (r < rows).then(|| ids.value(r))
            }) {
                return Err(Error::Misaligned {
                    location: lloc.at(
                        first_row as usize + row,
                        (row < label_ids.len()).then(|| label_ids.value(row)),
                    ),
                    shard,
                    reason: format!(
                        "row group {row_group}: image shard has {:?} here",
                        (row < rows).then(|| ids.value(row))
                    ),
                });
            }
            // Types, row structure and values, as every reader checks them.
            batch_to_labels(task, &b, &lloc, first_row as usize)?;
            let with_conf = b.column_by_name("confidence").is_some();
            for f in crate::format::label_schema(task, with_conf)
                .fields()
                .iter()
                .skip(1)
            {
                let col = normalize_column(&b, f.name(), f.data_type(), &lloc, true)?
                    .unwrap_or_else(|| arrow_array::new_null_array(f.data_type(), rows));
                fields.push(arrow_schema::Field::new(
                    format!("{}.{}", task.name, f.name()),
                    f.data_type().clone(),
                    true,
                ));
                columns.push(col);
            }
        }
        RecordBatch::try_new(
            std::sync::Arc::new(arrow_schema::Schema::new(fields)),
            columns,
        )
        .map_err(|e| Error::value(loc, format!("assembling row group {row_group}: {e}")))
    }
}

/// The batches of one row group as one batch.
fn concat(batches: &[RecordBatch], loc: &Location) -> Result<RecordBatch> {
    match batches {
        [one] => Ok(one.clone()),
        _ => {
            let Some(first) = batches.first() else {
                return Err(Error::value(loc.clone(), "the row group has no rows"));
            };
            arrow_select::concat::concat_batches(&first.schema(), batches)
                .map_err(|e| Error::value(loc.clone(), e.to_string()))
        }
    }
}

fn image_records(batches: &[RecordBatch], loc: &Location) -> Result<Vec<ImageRecord>> {
    let mut out = Vec::new();
    for b in batches {
        let ids = crate::codec::image_ids(b, loc)?;
        let source = normalize_column(b, "source", &DataType::Utf8, loc, false)?;
        let image = normalize_column(b, "image", &DataType::Binary, loc, false)?;
        let uri = normalize_column(b, "uri", &DataType::Utf8, loc, false)?;
        let width = normalize_column(b, "width", &DataType::UInt32, loc, false)?;
        let height = normalize_column(b, "height", &DataType::UInt32, loc, false)?;
        for i in 0..b.num_rows() {
            let s = |c: &Option<arrow_array::ArrayRef>| {
                c.as_ref()
                    .filter(|c| !c.is_null(i))
                    .map(|c| c.as_string::<i32>().value(i).to_owned())
            };
            let n = |c: &Option<arrow_array::ArrayRef>| {
                c.as_ref()
                    .filter(|c| !c.is_null(i))
                    .map_or(0, |c| c.as_primitive::<UInt32Type>().value(i))
            };
            out.push(ImageRecord {
                image_id: ids.value(i).to_owned(),
                source: s(&source),
                image: image
                    .as_ref()
                    .filter(|c| !c.is_null(i))
                    .map(|c| Bytes::copy_from_slice(c.as_binary::<i32>().value(i))),
                uri: s(&uri),
                width: n(&width),
                height: n(&height),
            });
        }
    }
    Ok(out)
}

/// Opens a lone label file and reads its task from the `must.task`
/// metadata (`why` says what the metadata is needed for, in the error).
pub fn lone_label_file(
    bytes: Bytes,
    file: &str,
    why: &str,
) -> Result<(
    crate::format::TaskDef,
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder<Bytes>,
)> {
    let loc = Location::file(file);
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| Error::parquet(file, e))?;
    check_footer_counts(builder.metadata(), file)?;
    let text = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| {
            kv.iter()
                .find(|e| e.key == crate::format::META_TASK)
                .and_then(|e| e.value.clone())
        })
        .ok_or_else(|| Error::schema(loc.clone(), format!("no must.task metadata: {why}")))?;
    let task =
        crate::format::TaskDef::from_json(&text).map_err(|e| Error::schema(loc, e.to_string()))?;
    Ok((task, builder))
}
