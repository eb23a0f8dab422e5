//! Checks of whole files: each exists, has the size and checksum the log
//! records, and row groups of the sizes its image shard has.

use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use super::{FileCheck, Problem, ValidateReport};
use crate::error::Result;
use crate::store::Dataset;

/// Streams the file through crc32c; returns its actual size, `None` when
/// it is missing (reported).
pub(super) async fn check_bytes(
    ds: &Dataset,
    path: &str,
    bytes: u64,
    checksum: &str,
    out: &mut FileCheck,
    report: &mut ValidateReport,
) -> Result<Option<u64>> {
    let (store, _) = ds.store();
    let get = match store.get(&ds.object_path(path)).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => {
            out.push(Problem {
                file: path.into(),
                row: None,
                image_id: None,
                what: "the log names this file but it does not exist".into(),
            });
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let mut stream = get.into_stream();
    let mut crc = 0u32;
    let mut len = 0u64;
    while let Some(chunk) = stream.try_next().await? {
        crc = crc32c::crc32c_append(crc, &chunk);
        len += chunk.len() as u64;
    }
    report.bytes += len;
    let actual = format!("crc32c:{crc:08x}");
    if len != bytes {
        out.push(Problem {
            file: path.into(),
            row: None,
            image_id: None,
            what: format!("size is {len} bytes, the log says {bytes}"),
        });
    }
    if actual != checksum {
        out.push(Problem {
            file: path.into(),
            row: None,
            image_id: None,
            what: format!("checksum mismatch: the log says {checksum}, the file has {actual}"),
        });
    }
    Ok(Some(len))
}

/// A problem when a file's row groups (`found`, from its footer) differ
/// from `expected` (the log's, or the image shard's).
pub(super) fn row_count_problem(
    file: &str,
    found: &[u64],
    expected: &[u64],
    whose: &str,
) -> Option<Problem> {
    if found == expected {
        return None;
    }
    let total = |v: &[u64]| v.iter().fold(0u64, |a, &n| a.saturating_add(n));
    let what = if total(found) != total(expected) {
        format!(
            "the file has {} rows, {whose} {}",
            total(found),
            total(expected)
        )
    } else if found.len() != expected.len() {
        format!(
            "the file has {} row groups, {whose} {}",
            found.len(),
            expected.len()
        )
    } else {
        let g = (0..found.len())
            .find(|&g| found[g] != expected[g])
            .unwrap_or_default();
        format!(
            "row group {g} has {} rows, {whose} {}",
            found[g], expected[g]
        )
    };
    Some(Problem {
        file: file.to_owned(),
        row: None,
        image_id: None,
        what,
    })
}
