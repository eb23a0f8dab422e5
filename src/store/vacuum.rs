//! Vacuum: delete data files that no commit references (left by crashed or
//! losing writers) once they are older than a grace period.
//!
//! What it never deletes:
//! * a file that any commit references, even one a later commit removed,
//!   so that every version stays readable (paths are compared in canonical
//!   form, FORMAT.md section 1);
//! * a file named by an image row's `uri` (relative to the root);
//! * a file whose name must-ds writers do not produce
//!   ([`layout::is_writer_name`]: `images/part-<uuid>.parquet`,
//!   `labels/<task>/part-<uuid>.parquet` and a local store's staging files
//!   of those): such files are listed as `foreign` and kept;
//! * on a local folder, anything reached through a symbolic link: links
//!   are neither followed nor deleted.

use std::collections::HashSet;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::Array;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::Action;
use crate::store::{layout, log, Dataset};

/// What a vacuum did (or would do, with `dry_run`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct VacuumReport {
    /// Orphaned files deleted (or to delete).
    pub deleted: Vec<String>,
    /// Their bytes.
    pub bytes: u64,
    /// Orphaned files kept because they are younger than the grace period.
    pub too_young: Vec<String>,
    /// Files under `images/` and `labels/` that must-ds did not write (by
    /// their name), symbolic links, and files whose name is not UTF-8:
    /// kept, whatever their age.
    pub foreign: Vec<String>,
    /// Data files referenced by the log (kept).
    pub referenced: usize,
    /// Whether nothing was deleted.
    pub dry_run: bool,
}

/// Parses `30s`, `15m`, `2h`, `7d`, `1w` (or plain seconds).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (num, unit) = t.split_at(
        t.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len()),
    );
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        "w" => 7.0 * 86400.0,
        _ => return None,
    };
    let s = n * secs;
    (s.is_finite() && (0.0..=1e15).contains(&s)).then(|| Duration::from_secs_f64(s))
}

/// A file found under `images/` or `labels/`.
struct Found {
    rel: String,
    bytes: u64,
    age: Duration,
}

/// `rel` with empty and `.` segments dropped; `None` when it climbs with
/// `..` or is absolute: such a reference cannot be compared safely.
fn normalize(rel: &str) -> Option<String> {
    if rel.starts_with('/') || rel.contains('\\') {
        return None;
    }
    let mut parts = vec![];
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

impl Dataset {
    /// Walks `images/` and `labels/` of a local dataset without following
    /// symbolic links.
    fn local_files(root: &std::path::Path, foreign: &mut Vec<String>) -> Result<Vec<Found>> {
        let mut out = vec![];
        for dir in ["images", "labels"] {
            let top = root.join(dir);
            if std::fs::symlink_metadata(&top).is_ok_and(|m| m.file_type().is_symlink()) {
                foreign.push(dir.to_owned());
                continue;
            }
            if !top.is_dir() {
                continue;
            }
            for entry in walkdir::WalkDir::new(&top).follow_links(false) {
                let entry = entry.map_err(|e| {
                    let path = e
                        .path()
                        .map_or_else(|| top.display().to_string(), |p| p.display().to_string());
                    Error::io(path, e.into())
                })?;
                let ft = entry.file_type();
                if ft.is_dir() {
                    continue;
                }
                let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
                let Some(rel) = rel
                    .to_str()
                    .map(|r| r.replace(std::path::MAIN_SEPARATOR, "/"))
                else {
                    foreign.push(rel.to_string_lossy().into_owned());
                    continue;
                };
                if !ft.is_file() {
                    // Symbolic links (never followed) and special files.
                    foreign.push(rel);
                    continue;
                }
                let meta = entry
                    .metadata()
                    .map_err(|e| Error::io(entry.path().display().to_string(), e.into()))?;
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .unwrap_or_default();
                out.push(Found {
                    rel,
                    bytes: meta.len(),
                    age,
                });
            }
        }
        Ok(out)
    }

    /// Files under `images/` and `labels/` of an object store.
    async fn listed_files(&self) -> Result<Vec<Found>> {
        let root = self.root.as_ref().to_owned();
        let now = chrono::Utc::now();
        let mut out = vec![];
        for dir in ["images", "labels"] {
            let prefix = layout::join(&self.root, dir);
            let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
            for meta in metas {
                let full = meta.location.as_ref();
                let rel = if root.is_empty() {
                    full
                } else {
                    full.strip_prefix(&root)
                        .unwrap_or(full)
                        .trim_start_matches('/')
                };
                out.push(Found {
                    rel: rel.to_owned(),
                    bytes: meta.size,
                    age: (now - meta.last_modified).to_std().unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }

    /// Paths named by the `uri` column of the live image shards, relative
    /// to the root and normalized (other URLs point outside the dataset).
    async fn uri_references(&self, out: &mut HashSet<String>) -> Result<()> {
        let shards: Vec<_> = self.snapshot.images.values().cloned().collect();
        let mut reads = futures::stream::iter(shards)
            .map(|a| async move {
                let batches = self
                    .read_batches(&a.path, Some(a.bytes), None, Some(&["uri"]))
                    .await?;
                let mut uris = vec![];
                for b in batches {
                    let Some(col) = b.column_by_name("uri") else {
                        continue;
                    };
                    let col = arrow_cast::cast(col, &arrow_schema::DataType::Utf8)
                        .map_err(|e| Error::arrow(&a.path, e))?;
                    let col = col.as_string::<i32>();
                    for i in 0..col.len() {
                        if col.is_valid(i) {
                            uris.push(col.value(i).to_owned());
                        }
                    }
                }
                Ok::<_, Error>(uris)
            })
            .buffer_unordered(16);
        while let Some(uris) = reads.next().await {
            for u in uris? {
                let rel = match u.strip_prefix("file://") {
                    Some(abs) => match abs.strip_prefix(self.url.as_str()) {
                        Some(r) if r.starts_with('/') => r.trim_start_matches('/').to_owned(),
                        _ => continue,
                    },
                    None if u.contains("://") => continue,
                    None => u,
                };
                if let Some(n) = normalize(&rel) {
                    out.insert(n);
                }
            }
        }
        Ok(())
    }

    /// Deletes data files under `images/` and `labels/` that no commit
    /// references, whose names must-ds writers produce, and that are older
    /// than `older_than` (see the module docs for what is never deleted).
    pub async fn vacuum(&mut self, older_than: Duration, dry_run: bool) -> Result<VacuumReport> {
        let mut report = VacuumReport {
            dry_run,
            ..Default::default()
        };
        // List the data first, then read the log: a file committed in
        // between is in the log, a file written after is not listed.
        let local = {
            let p = std::path::Path::new(&self.url);
            (!self.url.contains("://") && p.is_absolute() && p.join("_must").is_dir())
                .then(|| p.to_path_buf())
        };
        let files = match &local {
            Some(root) => Self::local_files(root, &mut report.foreign)?,
            None => self.listed_files().await?,
        };
        self.refresh().await?;
        let versions: Vec<u64> = (0..=self.snapshot.version).collect();
        let mut referenced = HashSet::new();
        for c in log::read_commits(&self.store, &self.root, &versions).await? {
            for a in c.actions {
                let path = match a {
                    Action::AddImages(x) => x.path,
                    Action::AddLabels(x) => x.path,
                    _ => continue,
                };
                let Some(n) = normalize(&path) else {
                    return Err(Error::CorruptLog {
                        file: layout::log_file(c.version),
                        reason: format!(
                            "data path {path:?} is not relative to the root; vacuum deletes nothing"
                        ),
                    });
                };
                referenced.insert(n);
            }
        }
        report.referenced = referenced.len();
        self.uri_references(&mut referenced).await?;
        let mut doomed = vec![];
        for f in files {
            // A staging file (`#N`) is never referenced, even when the
            // file it became is.
            if normalize(&f.rel).is_some_and(|n| referenced.contains(&n)) {
                continue;
            }
            if !layout::is_writer_name(&f.rel) {
                report.foreign.push(f.rel);
                continue;
            }
            if f.age < older_than {
                report.too_young.push(f.rel);
                continue;
            }
            doomed.push(f);
        }
        for f in doomed {
            if !dry_run {
                match &local {
                    Some(root) => {
                        let path = root.join(&f.rel);
                        // Checked again right before: never a link.
                        let meta = std::fs::symlink_metadata(&path);
                        if !meta.as_ref().is_ok_and(|m| m.file_type().is_file()) {
                            report.foreign.push(f.rel);
                            continue;
                        }
                        match std::fs::remove_file(&path) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(Error::io(path.display().to_string(), e)),
                        }
                    }
                    None => match self.store.delete(&self.object_path(&f.rel)).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    },
                }
            }
            report.bytes += f.bytes;
            report.deleted.push(f.rel);
        }
        report.deleted.sort();
        report.too_young.sort();
        report.foreign.sort();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_compare_in_canonical_form() {
        assert_eq!(
            normalize("images//./part-1.parquet").as_deref(),
            Some("images/part-1.parquet")
        );
        assert_eq!(normalize("images/../x.parquet"), None);
        assert_eq!(normalize("/images/x.parquet"), None);
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("1e400"), None);
        assert_eq!(parse_duration("-1s"), None);
    }
}
