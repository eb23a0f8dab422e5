//! `must-ds validate`: every data file the log names exists and has its
//! checksum; every label file is aligned with its shard and holds valid
//! values; every image decodes to its recorded size. Shards are checked in
//! parallel, one row group at a time, so memory stays bounded.
//!
//! This module walks the dataset (shards in parallel, duplicate image ids
//! across shards) and reports; `files` checks whole files (existence,
//! size, checksum, row groups) and `rows` checks them row by row.

mod files;
mod rows;

use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;

use self::files::{check_bytes, row_count_problem};
use self::rows::{check_image_group, check_label_group};
use crate::codec::batch_to_labels;
use crate::error::{Error, Location, Result};
use crate::format::AddLabels;
use crate::store::Dataset;

/// One thing wrong, with where it is.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// The data file (dataset-relative path).
    pub file: String,
    /// The row in the file, when the problem is in a row.
    pub row: Option<usize>,
    /// The image id of that row, when known.
    pub image_id: Option<String>,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(r) = self.row {
            write!(f, ", row {r}")?;
        }
        if let Some(id) = &self.image_id {
            write!(f, " (image_id {id:?})")?;
        }
        write!(f, ": {}", self.what)
    }
}

/// What `validate` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ValidateReport {
    /// Version checked.
    pub version: u64,
    /// Data files checked.
    pub files: u64,
    /// Bytes read for checksums.
    pub bytes: u64,
    /// Image rows checked.
    pub rows: u64,
    /// Images decoded.
    pub images_decoded: u64,
    /// Label rows checked.
    pub label_rows: u64,
    /// Everything wrong, by file and row.
    pub problems: Vec<Problem>,
}

/// Problems kept per file, so that one broken file cannot flood the report.
const MAX_PER_FILE: usize = 100;

fn from_error(file: &str, e: Error) -> Problem {
    let loc = match &e {
        Error::InvalidValue { location, .. }
        | Error::Schema { location, .. }
        | Error::Misaligned { location, .. } => Some(location.clone()),
        _ => None,
    };
    let what = match &e {
        Error::InvalidValue { reason, .. } | Error::Schema { reason, .. } => reason.clone(),
        Error::Misaligned { reason, shard, .. } => {
            format!("not aligned with image shard {shard}: {reason}")
        }
        other => other.to_string(),
    };
    Problem {
        file: file.to_owned(),
        row: loc.as_ref().and_then(|l| l.row),
        image_id: loc.and_then(|l| l.image_id),
        what,
    }
}

/// The problems of one file, at most [`MAX_PER_FILE`] and a line saying
/// more were left out.
struct FileCheck {
    problems: Vec<Problem>,
}

impl FileCheck {
    fn push(&mut self, p: Problem) {
        if self.problems.len() < MAX_PER_FILE {
            self.problems.push(p);
        } else if self.problems.len() == MAX_PER_FILE {
            self.problems.push(Problem {
                file: p.file,
                row: None,
                image_id: None,
                what: format!("more problems not shown (over {MAX_PER_FILE})"),
            });
        }
    }
}

/// Checks one image shard and its label files; also returns the (hashed)
/// image id of each row read, with its row.
async fn check_shard(
    ds: &Dataset,
    shard: u64,
    decode: bool,
) -> Result<(ValidateReport, Vec<(u128, u64)>)> {
    let snap = ds.snapshot();
    let a = snap.images[&shard].clone();
    let labels: Vec<AddLabels> = snap
        .labels
        .iter()
        .filter(|((_, s), _)| *s == shard)
        .map(|(_, l)| l.clone())
        .collect();
    let mut report = ValidateReport::default();
    let mut img = FileCheck { problems: vec![] };
    report.files += 1;
    let image_size = check_bytes(ds, &a.path, a.bytes, &a.checksum, &mut img, &mut report).await?;
    let mut label_checks = vec![];
    for l in &labels {
        let mut fc = FileCheck { problems: vec![] };
        report.files += 1;
        let size = check_bytes(ds, &l.path, l.bytes, &l.checksum, &mut fc, &mut report).await?;
        label_checks.push((l, fc, size));
    }
    let mut ids = vec![];
    let footers = crate::read::FooterCache::new(1 + labels.len());
    let mut groups = a.row_groups.len();
    if let Some(size) = image_size {
        match ds
            .file_row_groups(&a.path, Some(size), Some(&footers))
            .await
        {
            Ok(rg) => {
                if let Some(p) = row_count_problem(&a.path, &rg, &a.row_groups, "the log says") {
                    img.push(p);
                }
                groups = groups.min(rg.len());
            }
            Err(e) => img.push(from_error(&a.path, e)),
        }
    }
    for (l, fc, size) in label_checks.iter_mut() {
        let Some(s) = *size else { continue };
        match ds.file_row_groups(&l.path, Some(s), Some(&footers)).await {
            Ok(rg) => {
                let what = format!("image shard {} has", l.shard);
                if let Some(p) = row_count_problem(&l.path, &rg, &a.row_groups, &what) {
                    fc.push(p);
                    // Misaligned row groups cannot be compared row by row.
                    *size = None;
                }
            }
            Err(e) => {
                fc.push(from_error(&l.path, e));
                *size = None;
            }
        }
    }
    if let Some(image_size) = image_size {
        let mut first = 0usize;
        for (g, &n) in a.row_groups.iter().enumerate().take(groups) {
            let group =
                check_image_group(ds, &a, image_size, g, first, &mut img, &mut report, decode)
                    .await;
            if let Some(group) = group {
                for (i, id) in group.ids.iter().enumerate() {
                    ids.push((crate::write::align_id_hash(id), (first + i) as u64));
                }
                for (l, fc, size) in label_checks.iter_mut() {
                    if let Some(s) = *size {
                        if !check_label_group(ds, l, s, g, first, &group.ids, fc, &mut report).await
                        {
                            *size = None;
                        }
                    }
                }
            }
            first += n as usize;
        }
    }
    report.problems = img.problems;
    for (_, fc, _) in label_checks {
        report.problems.extend(fc.problems);
    }
    Ok((report, ids))
}

/// Validates every data file of `ds`, `parallel` image shards at a time;
/// `decode` also decodes every embedded image. `progress` gets (shards done, shards).
pub async fn validate(
    ds: &Dataset,
    parallel: usize,
    decode: bool,
    progress: Option<Arc<dyn Fn(u64, u64) + Send + Sync>>,
) -> Result<ValidateReport> {
    let shards: Vec<u64> = ds.snapshot().images.keys().copied().collect();
    let total = shards.len() as u64;
    let mut report = ValidateReport {
        version: ds.version(),
        ..Default::default()
    };
    let mut stream = futures::stream::iter(shards)
        .map(|s| async move { check_shard(ds, s, decode).await.map(|r| (s, r)) })
        .buffer_unordered(parallel.max(1));
    let mut done = 0;
    // Image ids are unique in a dataset (FORMAT.md section 3): the first
    // place each was seen.
    let mut seen: std::collections::HashMap<u128, (u64, u64)> = Default::default();
    let mut dups = vec![];
    while let Some(r) = stream.next().await {
        let (shard, (r, ids)) = r?;
        for (h, row) in ids {
            if let Some(&(s0, r0)) = seen.get(&h) {
                dups.push((shard, row, s0, r0));
            } else {
                seen.insert(h, (shard, row));
            }
        }
        report.files += r.files;
        report.bytes += r.bytes;
        report.rows += r.rows;
        report.images_decoded += r.images_decoded;
        report.label_rows += r.label_rows;
        report.problems.extend(r.problems);
        done += 1;
        if let Some(p) = &progress {
            p(done, total);
        }
    }
    drop(seen);
    let total_dups = dups.len();
    dups.sort_unstable();
    let mut ids_of: std::collections::HashMap<u64, Vec<String>> = Default::default();
    for (shard, row, s0, r0) in dups.into_iter().take(MAX_PER_FILE) {
        let snap = ds.snapshot();
        // Report both places, the later in shard order with the id.
        let ((sa, ra), (sb, rb)) = if (s0, r0) < (shard, row) {
            ((s0, r0), (shard, row))
        } else {
            ((shard, row), (s0, r0))
        };
        if let std::collections::hash_map::Entry::Vacant(e) = ids_of.entry(sb) {
            e.insert(ds.read_image_ids(sb).await.unwrap_or_default());
        }
        let image_id = ids_of
            .get(&sb)
            .and_then(|ids| ids.get(rb as usize).cloned());
        report.problems.push(Problem {
            file: snap.images[&sb].path.clone(),
            row: Some(rb as usize),
            image_id,
            what: format!(
                "duplicate image_id: image shard {sa} ({}) has it at row {ra}; ids must be unique in a dataset",
                snap.images[&sa].path
            ),
        });
    }
    if total_dups > MAX_PER_FILE {
        report.problems.push(Problem {
            file: "(dataset)".into(),
            row: None,
            image_id: None,
            what: format!(
                "{total_dups} duplicate image ids in all; the first {MAX_PER_FILE} are listed"
            ),
        });
    }
    report
        .problems
        .sort_by(|a, b| (&a.file, a.row).cmp(&(&b.file, b.row)));
    Ok(report)
}

/// Validates one lone label file from its `must.task` metadata: readable
/// Parquet, columns of the task's kind, every value in range. Alignment and
/// checksums need the dataset.
pub fn validate_label_file(bytes: bytes::Bytes, file: &str) -> ValidateReport {
    let mut report = ValidateReport {
        files: 1,
        bytes: bytes.len() as u64,
        ..Default::default()
    };
    let mut out = FileCheck { problems: vec![] };
    let loc = Location::file(file);
    let run = |out: &mut FileCheck, report: &mut ValidateReport| -> Result<()> {
        let (task, builder) =
            crate::read::lone_label_file(bytes, file, "validate it inside its dataset")?;
        let mut row = 0;
        for batch in builder.build().map_err(|e| Error::parquet(file, e))? {
            let batch = batch.map_err(|e| Error::arrow(file, e))?;
            let (ids, labels) = batch_to_labels(&task, &batch, &loc, row)?;
            for (i, (id, l)) in ids.iter().zip(&labels).enumerate() {
                if let Some(Err(what)) = l.as_ref().map(|l| l.check(&task)) {
                    out.push(Problem {
                        file: file.into(),
                        row: Some(row + i),
                        image_id: Some(id.clone()),
                        what,
                    });
                }
            }
            row += ids.len();
        }
        report.label_rows = row as u64;
        Ok(())
    };
    if let Err(e) = run(&mut out, &mut report) {
        out.push(from_error(file, e));
    }
    report.problems = out.problems;
    report
}
