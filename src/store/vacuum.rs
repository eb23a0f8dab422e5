//! Vacuum: delete data files that no commit references (left by crashed or
//! losing writers) once they are older than a grace period. Files that any
//! commit references, even one a later commit removed, are kept so that
//! every version stays readable.

use std::collections::HashSet;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde::Serialize;

use crate::error::Result;
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
    (n >= 0.0).then(|| Duration::from_secs_f64(n * secs))
}

impl Dataset {
    /// On a local folder, a writer killed inside an upload leaves the
    /// store's staging file (`part-….parquet#N`), which listings do not
    /// show: find those on disk.
    fn vacuum_local_staging(
        &self,
        older_than: Duration,
        dry_run: bool,
        report: &mut VacuumReport,
    ) -> Result<()> {
        let root = std::path::Path::new(&self.url);
        if !root.is_absolute() || !root.join("_must").is_dir() {
            return Ok(());
        }
        for dir in ["images", "labels"] {
            for entry in walkdir::WalkDir::new(root.join(dir))
                .into_iter()
                .filter_map(|e| e.ok())
            {
                let name = entry.file_name().to_string_lossy();
                if !entry.file_type().is_file() || !name.contains('#') {
                    continue;
                }
                let meta = entry
                    .metadata()
                    .map_err(|e| crate::Error::io(entry.path().display().to_string(), e.into()))?;
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .unwrap_or_default();
                let rel = entry
                    .path()
                    .strip_prefix(root)
                    .unwrap_or(entry.path())
                    .to_string_lossy()
                    .replace('\\', "/");
                if age < older_than {
                    report.too_young.push(rel);
                    continue;
                }
                if !dry_run {
                    std::fs::remove_file(entry.path())
                        .map_err(|e| crate::Error::io(entry.path().display().to_string(), e))?;
                }
                report.bytes += meta.len();
                report.deleted.push(rel);
            }
        }
        Ok(())
    }

    /// Deletes data files under `images/` and `labels/` that no commit
    /// references and that are older than `older_than`.
    pub async fn vacuum(&mut self, older_than: Duration, dry_run: bool) -> Result<VacuumReport> {
        // List the data first, then read the log: a file committed in
        // between is in the log, a file written after is not listed.
        let mut files = vec![];
        for dir in ["images", "labels"] {
            let prefix = layout::join(&self.root, dir);
            let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
            files.extend(metas);
        }
        self.refresh().await?;
        let versions: Vec<u64> = (0..=self.snapshot.version).collect();
        let mut referenced = HashSet::new();
        for c in log::read_commits(&self.store, &self.root, &versions).await? {
            for a in c.actions {
                match a {
                    Action::AddImages(x) => referenced.insert(x.path),
                    Action::AddLabels(x) => referenced.insert(x.path),
                    _ => false,
                };
            }
        }
        let root = self.root.as_ref().to_owned();
        let now = chrono::Utc::now();
        let grace = chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        let mut report = VacuumReport {
            referenced: referenced.len(),
            dry_run,
            ..Default::default()
        };
        for meta in files {
            let full = meta.location.as_ref();
            let rel = if root.is_empty() {
                full
            } else {
                full.strip_prefix(&root)
                    .unwrap_or(full)
                    .trim_start_matches('/')
            };
            if referenced.contains(rel) {
                continue;
            }
            if now - meta.last_modified < grace {
                report.too_young.push(rel.to_owned());
                continue;
            }
            if !dry_run {
                match self.store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            report.bytes += meta.size;
            report.deleted.push(rel.to_owned());
        }
        self.vacuum_local_staging(older_than, dry_run, &mut report)?;
        report.deleted.sort();
        report.too_young.sort();
        Ok(report)
    }
}
