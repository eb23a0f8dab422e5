//! Writers: image shards from encoded images, aligned label files from typed
//! labels, and the checks that admit a label file made by any other tool.
//! Files are built in memory, uploaded under fresh names, then committed.

mod align;
mod check;
mod images;
mod labels;

use std::collections::BTreeMap;

use bytes::Bytes;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;

pub(crate) use align::id_hash as align_id_hash;
pub use align::{AlignOptions, AlignReport, BoxFormat, LabelAligner, ShardOutcome};
pub use check::{check_label_file, LabelFileReport};
pub use images::{ImageShardOptions, ImageShardWriter};
pub use labels::{BlobCodec, LabelWriter};

use crate::error::Result;
use crate::format::{Action, AddImages, AddLabels};
use crate::store::{layout, Dataset, Transaction};

/// A finished Parquet file, ready to upload.
#[derive(Debug, Clone)]
pub struct EncodedFile {
    /// The file's bytes.
    pub bytes: Bytes,
    /// Rows.
    pub rows: u64,
    /// Rows per row group.
    pub row_groups: Vec<u64>,
    /// Rows per source (image shards).
    pub sources: BTreeMap<String, u64>,
    /// Non-null label rows (label files).
    pub labeled: u64,
}

impl EncodedFile {
    /// The `add_images` action of this image shard stored at `path` (its
    /// shard id is assigned at commit).
    pub fn add_images(&self, path: &str) -> AddImages {
        AddImages {
            shard: 0,
            path: path.to_owned(),
            rows: self.rows,
            bytes: self.bytes.len() as u64,
            checksum: self.checksum(),
            row_groups: self.row_groups.clone(),
            sources: self.sources.clone(),
        }
    }

    /// `crc32c:…` of the bytes.
    pub fn checksum(&self) -> String {
        crate::format::checksum_of(&self.bytes)
    }
}

/// ZSTD everywhere except where set otherwise; the writers cut row groups.
pub(crate) fn base_properties(table: &str, extra: Vec<KeyValue>) -> WriterPropertiesBuilder {
    let mut kv = vec![
        KeyValue::new(
            crate::format::META_FORMAT_VERSION.into(),
            crate::format::FORMAT_VERSION.to_owned(),
        ),
        KeyValue::new(crate::format::META_TABLE.into(), table.to_owned()),
    ];
    kv.extend(extra);
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        // Row groups are cut by the writers, to the byte budget or the shard's layout.
        .set_max_row_group_row_count(None)
        .set_max_row_group_bytes(None)
        .set_key_value_metadata(Some(kv))
}

/// Most bytes of a blob column's data page: a full-resolution map is a page
/// of its own, small maps share one. The loader decodes a block of pages
/// when it needs one of its rows, so this bounds the bytes it decompresses
/// for one sample.
pub const BLOB_PAGE_BYTES: usize = 64 << 10;

/// Blob settings: no dictionary, no statistics, given compression, pages of
/// at most [`BLOB_PAGE_BYTES`] (one map a page when maps are larger), and
/// small write batches (huge pages have broken readers). The batch size is
/// per file, so files without blobs keep the default.
pub(crate) fn blob_column(
    b: WriterPropertiesBuilder,
    name: &str,
    compression: Compression,
) -> WriterPropertiesBuilder {
    let col = ColumnPath::from(name);
    b.set_write_batch_size(64)
        .set_column_compression(col.clone(), compression)
        .set_column_dictionary_enabled(col.clone(), false)
        .set_column_statistics_enabled(col.clone(), EnabledStatistics::None)
        .set_column_write_page_header_statistics(col.clone(), false)
        .set_column_data_page_size_limit(col, BLOB_PAGE_BYTES)
}

impl Dataset {
    /// Uploads an image shard and commits it; returns the action with its assigned shard id.
    pub async fn add_image_shard(&mut self, file: EncodedFile) -> Result<AddImages> {
        let path = layout::new_image_file();
        let action = Action::AddImages(file.add_images(&path));
        match self
            .upload_and_commit("ingest", &path, file.bytes, action)
            .await?
        {
            Action::AddImages(a) => Ok(a),
            _ => Err(lost_action()),
        }
    }

    /// Uploads a label file of `task` for image shard `shard` and commits it.
    /// The file must already be checked (as [`LabelWriter`] and
    /// [`check_label_file`] do).
    pub async fn add_label_file(
        &mut self,
        task: &str,
        shard: u64,
        file: EncodedFile,
        replace: bool,
    ) -> Result<AddLabels> {
        self.snapshot.task(task)?;
        self.snapshot.shard(shard)?;
        if let Some(old) = self
            .snapshot
            .labels
            .get(&(task.to_owned(), shard))
            .filter(|_| !replace)
        {
            // Refuse before uploading, so that a refused file leaves no orphan.
            return Err(crate::Error::Conflict {
                version: self.snapshot.version,
                reason: format!(
                    "task {task:?} already has labels for image shard {shard} ({}); use replace to relabel",
                    old.path
                ),
            });
        }
        let path = layout::new_label_file(task);
        let action = Action::AddLabels(AddLabels {
            task: task.to_owned(),
            shard,
            path: path.clone(),
            rows: file.rows,
            bytes: file.bytes.len() as u64,
            checksum: file.checksum(),
            labeled: file.labeled,
            replace,
        });
        match self
            .upload_and_commit("add-labels", &path, file.bytes, action)
            .await?
        {
            Action::AddLabels(a) => Ok(a),
            _ => Err(lost_action()),
        }
    }

    /// Data file first, under its fresh name; then the commit that makes it
    /// part of the dataset. Returns the committed form of `action`.
    async fn upload_and_commit(
        &mut self,
        operation: &str,
        path: &str,
        bytes: Bytes,
        action: Action,
    ) -> Result<Action> {
        self.put_data_file(path, bytes).await?;
        let commit = match self.commit(Transaction::new(operation).with(action)).await {
            Ok(c) => c,
            // Refused for certain (the log holds no commit of this
            // transaction): the file under its fresh name is this writer's
            // alone and nothing refers to it, so it goes. Any other error
            // may hide a commit that landed; then the file stays.
            Err(e @ (crate::Error::Conflict { .. } | crate::Error::InvalidCommit { .. })) => {
                let _ = self.delete_data_file(path).await;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        commit
            .actions
            .into_iter()
            .find(|a| {
                matches!(a, Action::AddImages(x) if x.path == path)
                    || matches!(a, Action::AddLabels(x) if x.path == path)
            })
            .ok_or_else(lost_action)
    }
}

/// The commit that returned holds no action for the file just committed:
/// `commit` broke its contract (a bug, not a conflict with other writers).
fn lost_action() -> crate::Error {
    crate::Error::Internal("the commit returned without the action it was given".into())
}
