//! Reading the log: listing commit files after a version and fetching them.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt};

use crate::error::{Error, Result};
use crate::format::Commit;
use crate::store::layout;

/// Versions of the log files after `after` (all when `None`), sorted, found
/// with one listing from an offset.
pub async fn list_versions_after(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    after: Option<u64>,
) -> Result<Vec<u64>> {
    let dir = layout::join(root, layout::LOG_DIR);
    let listing = match after {
        Some(v) => store.list_with_offset(Some(&dir), &layout::join(root, &layout::log_file(v))),
        None => store.list(Some(&dir)),
    };
    let metas: Vec<_> = listing.try_collect().await?;
    let mut versions: Vec<u64> = metas
        .iter()
        .filter_map(|m| layout::version_of(m.location.as_ref(), ".json"))
        .filter(|v| after.is_none_or(|a| *v > a))
        .collect();
    versions.sort_unstable();
    Ok(versions)
}

/// The largest commit file read (256 MiB): a commit lists a few actions
/// (thousands for a large ingest), so anything near this is not one, and
/// reading it whole could exhaust memory.
pub const MAX_COMMIT_BYTES: u64 = 256 << 20;

fn too_large(rel: &str, what: String) -> Error {
    Error::CorruptLog {
        file: rel.to_owned(),
        reason: format!(
            "{what}, more than the {} MiB a commit file may have: not read",
            MAX_COMMIT_BYTES >> 20
        ),
    }
}

/// Reads commit `version`; `Ok(None)` when it does not exist. A file over
/// [`MAX_COMMIT_BYTES`] is refused from the size the store reports, before
/// its body is read, and its body is never read past that size (whatever
/// the store said).
pub async fn read_commit(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    version: u64,
) -> Result<Option<Commit>> {
    let rel = layout::log_file(version);
    let r = match store.get(&layout::join(root, &rel)).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if r.meta.size > MAX_COMMIT_BYTES {
        return Err(too_large(
            &rel,
            format!("the file has {} bytes", r.meta.size),
        ));
    }
    let bytes = if matches!(r.payload, GetResultPayload::Stream(_)) {
        // A remote body may be longer than its reported size: stop at the bound.
        let mut body = r.into_stream();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.try_next().await? {
            let size = (bytes.len() + chunk.len()) as u64;
            if size > MAX_COMMIT_BYTES {
                return Err(too_large(
                    &rel,
                    format!("the file has at least {size} bytes"),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        bytes::Bytes::from(bytes)
    } else {
        // A local file: read in one go, exactly the size checked above.
        r.bytes().await?
    };
    let commit = Commit::from_slice(&bytes, &rel)?;
    if commit.version != version {
        return Err(Error::CorruptLog {
            file: rel,
            reason: format!("file says version {}", commit.version),
        });
    }
    Ok(Some(commit))
}

/// Reads the given versions, several requests at a time, in order.
pub async fn read_commits(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    versions: &[u64],
) -> Result<Vec<Commit>> {
    futures::stream::iter(versions.iter().copied())
        .map(|v| async move {
            read_commit(store, root, v)
                .await?
                .ok_or_else(|| Error::CorruptLog {
                    file: layout::log_file(v),
                    reason: "listed but could not be read".into(),
                })
        })
        .buffered(16)
        .try_collect()
        .await
}

/// Checks that `versions` continue `from` without a gap.
pub fn check_contiguous(from: Option<u64>, versions: &[u64]) -> Result<()> {
    for (expect, &v) in (from.map_or(0, |v| v + 1)..).zip(versions) {
        if v != expect {
            return Err(Error::CorruptLog {
                file: layout::log_file(expect),
                reason: format!("missing: the log jumps to version {v}"),
            });
        }
    }
    Ok(())
}
