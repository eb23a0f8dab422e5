//! Fetching row groups (I/O only, on the runtime) and decoding them (on the
//! decode workers), in blocks of pages, each block decoded once and dropped
//! as soon as the plan has no more rows of it.
//!
//! The fetch keeps the *compressed* column chunks of the columns the options
//! need, nothing else. A file's row group is cut into blocks at the page
//! boundaries of its largest column (read from the page headers, so files
//! without a page index work too); a block is decompressed and parsed by
//! the first worker that needs one of its rows, shared by the others, and
//! freed once every row the plan takes from it was used. With must-ds's
//! writer a full-resolution map is one page, so a block is one sample; a
//! file whose pages hold many rows (pyarrow writes up to 1,024 values a
//! page) costs as much memory as those pages while their rows are in use.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::DataType;
use bytes::{Buf, Bytes};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::ProjectionMask;
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::serialized_reader::SerializedPageReader;

use crate::codec::{normalize_column, LabelColumns};
use crate::error::{Error, Location, Result};
use crate::format::TaskDef;
use crate::read::{FooterCache, StoreReader};
use crate::store::Dataset;

use super::plan::Rows;

/// Byte ranges of one file held in memory, read as a Parquet file.
#[derive(Clone)]
pub(crate) struct Chunks {
    len: u64,
    parts: Arc<Vec<(u64, Bytes)>>,
}

impl Chunks {
    fn tail_at(&self, start: u64) -> parquet::errors::Result<Bytes> {
        let i = self.parts.partition_point(|(s, _)| *s <= start);
        let (s, b) = i
            .checked_sub(1)
            .and_then(|i| self.parts.get(i))
            .filter(|(s, b)| start < s + b.len() as u64)
            .ok_or_else(|| {
                ParquetError::General(format!(
                    "offset {start} is outside the fetched column chunks"
                ))
            })?;
        Ok(b.slice((start - s) as usize..))
    }
}

impl Length for Chunks {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for Chunks {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(self.tail_at(start)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let b = self.tail_at(start)?;
        if b.len() < length {
            return Err(ParquetError::General(format!(
                "{length} bytes at offset {start} reach past the fetched column chunk"
            )));
        }
        Ok(b.slice(..length))
    }
}

/// The decoded columns of one block.
pub(crate) enum Decoded {
    /// Image shard columns.
    Images {
        ids: StringArray,
        source: Option<ArrayRef>,
        image: Option<ArrayRef>,
        uri: Option<ArrayRef>,
    },
    /// A task's label columns.
    Labels(LabelColumns),
}

struct Block {
    start: usize,
    end: usize,
    /// Rows of the plan in this block not used yet.
    remaining: AtomicU32,
    data: Mutex<Option<Arc<Decoded>>>,
}

/// Columns whose values are large (encoded images, maps): decoded block by
/// block. The others are decoded once for the whole row group.
const BLOB_COLUMNS: &[&str] = &["image", "mask", "confidence", "depth"];

/// One file's row group: its compressed column chunks and its blocks.
pub(crate) struct FileGroup {
    /// The file (relative path).
    pub path: Arc<str>,
    meta: ArrowReaderMetadata,
    row_group: usize,
    first_row: usize,
    rows: usize,
    /// The small columns, decoded once for the group by the first worker.
    small_mask: ProjectionMask,
    small: std::sync::OnceLock<std::result::Result<RecordBatch, String>>,
    /// The blob columns, decoded per block (`None`: the file has none).
    blob_mask: Option<ProjectionMask>,
    chunks: Chunks,
    task: Option<TaskDef>,
    blocks: Vec<Block>,
}

impl FileGroup {
    /// Compressed bytes held.
    pub fn fetched_bytes(&self) -> u64 {
        self.chunks.parts.iter().map(|p| p.1.len() as u64).sum()
    }

    fn block_of(&self, row: usize) -> Option<&Block> {
        let i = self.blocks.partition_point(|b| b.end <= row);
        self.blocks.get(i).filter(|b| b.start <= row)
    }

    /// The decoded block holding `row` (within the row group) and the row's
    /// index in it; decodes the block if no worker has yet.
    pub fn get(&self, row: usize) -> std::result::Result<(Arc<Decoded>, usize), String> {
        let b = self
            .block_of(row)
            .ok_or_else(|| format!("row {row} is past the row group's {} rows", self.rows))?;
        let mut slot = b.data.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = &*slot {
            return Ok((d.clone(), row - b.start));
        }
        let d = Arc::new(self.decode(b.start, b.end)?);
        // Keep it for the block's other rows, unless this was its last.
        if b.remaining.load(Ordering::Acquire) > 1 {
            *slot = Some(d.clone());
        }
        Ok((d, row - b.start))
    }

    /// `row` was used (or given up): its block is freed after its last row.
    pub fn release(&self, row: usize) {
        if let Some(b) = self.block_of(row) {
            let before = b
                .remaining
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .unwrap_or(0);
            if before <= 1 {
                *b.data.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
        }
    }

    /// Rows `start..end` of the columns in `mask`.
    fn read(
        &self,
        mask: &ProjectionMask,
        start: usize,
        end: usize,
    ) -> std::result::Result<RecordBatch, String> {
        let mut b = ParquetRecordBatchReaderBuilder::new_with_metadata(
            self.chunks.clone(),
            self.meta.clone(),
        )
        .with_row_groups(vec![self.row_group])
        .with_projection(mask.clone())
        .with_batch_size((end - start).max(1));
        if (start, end) != (0, self.rows) {
            b = b.with_row_selection(RowSelection::from_consecutive_ranges(
                std::iter::once(start..end),
                self.rows,
            ));
        }
        let reader = b.build().map_err(|e| e.to_string())?;
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let batch = match batches.len() {
            1 => batches.into_iter().next().expect("one batch"),
            _ => {
                let schema = match batches.first() {
                    Some(b) => b.schema(),
                    None => return Err(format!("rows {start}..{end} decoded to nothing")),
                };
                arrow_select::concat::concat_batches(&schema, &batches)
                    .map_err(|e| e.to_string())?
            }
        };
        if batch.num_rows() != end - start {
            return Err(format!(
                "rows {start}..{end} decoded to {} rows",
                batch.num_rows()
            ));
        }
        Ok(batch)
    }

    fn decode(&self, start: usize, end: usize) -> std::result::Result<Decoded, String> {
        let small = self
            .small
            .get_or_init(|| self.read(&self.small_mask, 0, self.rows))
            .clone()?
            .slice(start, end - start);
        let batch = match &self.blob_mask {
            None => small,
            Some(mask) => {
                let blobs = self.read(mask, start, end)?;
                let (mut fields, mut cols) = (vec![], vec![]);
                for b in [&small, &blobs] {
                    fields.extend(b.schema().fields().iter().cloned());
                    cols.extend(b.columns().iter().cloned());
                }
                RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), cols)
                    .map_err(|e| e.to_string())?
            }
        };
        let loc = Location::file(&*self.path);
        let r = match &self.task {
            Some(t) => {
                LabelColumns::new(t, &batch, &loc, self.first_row + start).map(Decoded::Labels)
            }
            None => (|| {
                Ok(Decoded::Images {
                    ids: crate::codec::image_ids(&batch, &loc)?,
                    source: normalize_column(&batch, "source", &DataType::Utf8, &loc, false)?,
                    image: normalize_column(&batch, "image", &DataType::Binary, &loc, false)?,
                    uri: normalize_column(&batch, "uri", &DataType::Utf8, &loc, false)?,
                })
            })(),
        };
        r.map_err(|e: Error| e.to_string())
    }
}

/// Where blocks start: the data page boundaries of the column chunk `col`
/// (from the page headers), or one block for the whole group when the
/// headers cannot be read or do not add up.
fn block_bounds(
    chunks: &Chunks,
    meta: &parquet::file::metadata::ColumnChunkMetaData,
    rows: usize,
) -> Vec<(usize, usize)> {
    let whole = vec![(0, rows)];
    let Ok(mut pages) = SerializedPageReader::new(Arc::new(chunks.clone()), meta, rows, None)
    else {
        return whole;
    };
    use parquet::column::page::PageReader;
    let mut out = Vec::new();
    let mut at = 0usize;
    loop {
        match pages.peek_next_page() {
            Ok(Some(m)) => {
                if !m.is_dict {
                    let Some(n) = m.num_rows.or(m.num_levels) else {
                        return whole;
                    };
                    if n > 0 {
                        out.push((at, at + n));
                        at += n;
                    }
                }
                if pages.skip_next_page().is_err() {
                    return whole;
                }
            }
            Ok(None) => break,
            Err(_) => return whole,
        }
        if at > rows {
            return whole;
        }
    }
    if at != rows || out.is_empty() {
        return whole;
    }
    out
}

/// Fetches row group `row_group` of the file at `path` (`size` bytes),
/// keeping the named top-level columns (all when `None`). `rows` are the
/// rows the plan takes from it, which size the blocks' use counts.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn fetch_file(
    ds: &Dataset,
    path: &str,
    size: u64,
    row_group: usize,
    first_row: usize,
    columns: Option<&[&str]>,
    task: Option<TaskDef>,
    footers: &FooterCache,
    rows: &Rows,
) -> Result<FileGroup> {
    let mut reader = StoreReader::new(ds.store.clone(), ds.object_path(path), Some(size));
    let meta = FooterCache::load(Some(footers), &mut reader, path).await?;
    let md = meta.metadata().clone();
    if row_group >= md.num_row_groups() {
        return Err(Error::value(
            Location::file(path),
            format!(
                "row group {row_group} does not exist (file has {})",
                md.num_row_groups()
            ),
        ));
    }
    let wanted = |name: &str| columns.is_none_or(|c| c.contains(&name));
    let roots = |blob: bool| -> Vec<usize> {
        meta.schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| wanted(f.name()) && BLOB_COLUMNS.contains(&f.name().as_str()) == blob)
            .map(|(i, _)| i)
            .collect()
    };
    let descr = md.file_metadata().schema_descr();
    let (small_roots, blob_roots) = (roots(false), roots(true));
    let small_mask = ProjectionMask::roots(descr, small_roots.iter().copied());
    let blob_mask =
        (!blob_roots.is_empty()).then(|| ProjectionMask::roots(descr, blob_roots.iter().copied()));
    let mask = ProjectionMask::roots(descr, small_roots.into_iter().chain(blob_roots));
    let rg = md.row_group(row_group);
    let n_rows = usize::try_from(rg.num_rows()).unwrap_or(0);
    let leaves: Vec<usize> = (0..rg.num_columns())
        .filter(|&i| mask.leaf_included(i))
        .collect();
    let mut ranges = Vec::with_capacity(leaves.len());
    for &i in &leaves {
        let (start, len) = rg.column(i).byte_range();
        match start.checked_add(len).filter(|&e| e <= size) {
            Some(end) => ranges.push(start..end),
            None => {
                return Err(Error::value(
                    Location::file(path),
                    format!(
                        "row group {row_group}: column chunk {i} at {start}+{len} is outside the file's {size} bytes"
                    ),
                ))
            }
        }
    }
    let data = reader
        .get_byte_ranges(ranges.clone())
        .await
        .map_err(|e| Error::parquet(path, e))?;
    let mut parts: Vec<(u64, Bytes)> = ranges.iter().map(|r| r.start).zip(data).collect();
    parts.sort_by_key(|p| p.0);
    let chunks = Chunks {
        len: size,
        parts: Arc::new(parts),
    };
    // Blocks follow the pages of the largest blob column (one block
    // without blobs: the small columns are decoded once anyway).
    let bounds = leaves
        .iter()
        .filter(|&&i| blob_mask.as_ref().is_some_and(|m| m.leaf_included(i)))
        .max_by_key(|&&i| rg.column(i).compressed_size())
        .map_or_else(
            || vec![(0, n_rows)],
            |&i| block_bounds(&chunks, rg.column(i), n_rows),
        );
    let mut counts = vec![0u32; bounds.len()];
    let mut count = |r: usize| {
        let i = bounds.partition_point(|b| b.1 <= r);
        if let Some(c) = counts.get_mut(i) {
            *c += 1;
        }
    };
    match rows {
        Rows::All => (0..n_rows).for_each(&mut count),
        Rows::Some(rs) => rs.iter().for_each(|&r| count(r as usize)),
    }
    let blocks = bounds
        .into_iter()
        .zip(counts)
        .map(|((start, end), n)| Block {
            start,
            end,
            remaining: AtomicU32::new(n),
            data: Mutex::new(None),
        })
        .collect();
    Ok(FileGroup {
        path: path.into(),
        meta,
        row_group,
        first_row,
        rows: n_rows,
        small_mask,
        small: std::sync::OnceLock::new(),
        blob_mask,
        chunks,
        task,
        blocks,
    })
}
