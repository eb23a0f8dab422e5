//! Checkpoints: the live actions of a version in one Parquet file (one row
//! per action, as JSON), plus the `last_checkpoint` hint. They only speed up
//! opening; the log stays complete.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::format::{Action, META_FORMAT_VERSION, META_TABLE};
use crate::store::layout;
use crate::store::Snapshot;

const META_VERSION: &str = "must.version";
const META_NEXT_SHARD: &str = "must.next_shard";
const META_TIMESTAMP: &str = "must.timestamp";

/// Encodes `snap` as checkpoint bytes.
pub fn encode(snap: &Snapshot) -> Result<Vec<u8>> {
    let file = layout::checkpoint_file(snap.version);
    let actions: Vec<String> = snap
        .live_actions()
        .iter()
        .map(|a| serde_json::to_string(a).expect("actions serialize"))
        .collect();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "action",
        DataType::Utf8,
        false,
    )]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(actions)) as ArrayRef],
    )
    .map_err(|e| Error::arrow(&file, e))?;
    let kv = |k: &str, v: String| KeyValue::new(k.to_owned(), v);
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_key_value_metadata(Some(vec![
            kv(META_FORMAT_VERSION, "1".into()),
            kv(META_TABLE, "checkpoint".into()),
            kv(META_VERSION, snap.version.to_string()),
            kv(META_NEXT_SHARD, snap.next_shard.to_string()),
            kv(META_TIMESTAMP, snap.timestamp.clone()),
        ]))
        .build();
    let mut w = ArrowWriter::try_new(Vec::new(), schema, Some(props))
        .map_err(|e| Error::parquet(&file, e))?;
    w.write(&batch).map_err(|e| Error::parquet(&file, e))?;
    w.into_inner().map_err(|e| Error::parquet(&file, e))
}

/// Decodes checkpoint bytes into a snapshot.
pub fn decode(bytes: Bytes, version: u64) -> Result<Snapshot> {
    let file = layout::checkpoint_file(version);
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| Error::parquet(&file, e))?;
    crate::format::check_footer_counts(builder.metadata(), &file)?;
    let meta = |key: &str| -> Option<String> {
        builder
            .metadata()
            .file_metadata()
            .key_value_metadata()?
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
    };
    let corrupt = |reason: String| Error::CorruptLog {
        file: file.clone(),
        reason,
    };
    // Other writers may not write must.version; when present it must agree.
    if let Some(v) = meta(META_VERSION) {
        if v.parse::<u64>().ok() != Some(version) {
            return Err(corrupt(format!(
                "its must.version metadata says {v}, its name {version}"
            )));
        }
    }
    let timestamp = meta(META_TIMESTAMP).unwrap_or_default();
    let next_shard = meta(META_NEXT_SHARD)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let reader = builder.build().map_err(|e| Error::parquet(&file, e))?;
    let mut snap = Snapshot::default();
    for batch in reader {
        let batch = batch.map_err(|e| Error::arrow(&file, e))?;
        // FORMAT.md fixes one JSON action per row, not the column name:
        // prefer `action`, else the only string column.
        let col = batch
            .column_by_name("action")
            .or_else(|| {
                let strings: Vec<_> = batch
                    .columns()
                    .iter()
                    .filter(|c| c.data_type() == &DataType::Utf8)
                    .collect();
                (strings.len() == 1).then(|| strings[0])
            })
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| corrupt("no Utf8 column of JSON actions".into()))?;
        for text in col.iter().flatten() {
            let value: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| corrupt(format!("action is not JSON: {e}")))?;
            let action = Action::from_value(value, &file)?;
            snap.apply_action(&action, &file)?;
        }
    }
    snap.version = version;
    snap.timestamp = timestamp;
    snap.next_shard = snap.next_shard.max(next_shard);
    Ok(snap)
}

/// Writes the checkpoint of `snap` and then the hint.
pub async fn write(store: &Arc<dyn ObjectStore>, root: &Path, snap: &Snapshot) -> Result<()> {
    let bytes = encode(snap)?;
    store
        .put(
            &layout::join(root, &layout::checkpoint_file(snap.version)),
            PutPayload::from(bytes),
        )
        .await?;
    let hint = serde_json::json!({ "version": snap.version });
    store
        .put(
            &layout::join(root, layout::LAST_CHECKPOINT),
            PutPayload::from(hint.to_string().into_bytes()),
        )
        .await?;
    Ok(())
}

/// The hinted newest checkpoint version, if the hint exists and parses.
pub async fn read_hint(store: &Arc<dyn ObjectStore>, root: &Path) -> Result<Option<u64>> {
    match store
        .get(&layout::join(root, layout::LAST_CHECKPOINT))
        .await
    {
        // The hint is a few bytes; anything large is not one.
        Ok(r) if r.meta.size > 4096 => Ok(None),
        Ok(r) => {
            let bytes = r.bytes().await?;
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|source| Error::Json {
                    file: layout::LAST_CHECKPOINT.into(),
                    source,
                })?;
            Ok(v.get("version").and_then(|v| v.as_u64()))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// All checkpoint versions, sorted (one listing).
pub async fn list(store: &Arc<dyn ObjectStore>, root: &Path) -> Result<Vec<u64>> {
    let metas: Vec<_> = store
        .list(Some(&layout::join(root, layout::CHECKPOINT_DIR)))
        .try_collect()
        .await?;
    let mut v: Vec<u64> = metas
        .iter()
        .filter_map(|m| layout::version_of(m.location.as_ref(), ".parquet"))
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// Reads checkpoint `version`; `Ok(None)` when it is absent.
pub async fn read(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    version: u64,
) -> Result<Option<Snapshot>> {
    match store
        .get(&layout::join(root, &layout::checkpoint_file(version)))
        .await
    {
        Ok(r) if r.meta.size > MAX_CHECKPOINT_BYTES => Err(Error::CorruptLog {
            file: layout::checkpoint_file(version),
            reason: format!(
                "{} bytes, over the limit of {MAX_CHECKPOINT_BYTES}; the log is replayed instead",
                r.meta.size
            ),
        }),
        Ok(r) => Ok(Some(decode(r.bytes().await?, version)?)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The largest checkpoint read (a 300M-image dataset's is about 50 MB):
/// a larger one is not read, and readers replay the log instead.
pub const MAX_CHECKPOINT_BYTES: u64 = 1 << 30;
