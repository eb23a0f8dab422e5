//! Which folders `must-ds demo` may replace: only a dataset it made itself.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{demo_info, demo_tasks};
use crate::format::TaskDef;
use crate::store::Dataset;

/// The files of the demo dataset at `dir`, which the demo may replace:
/// empty when `dir` is empty, and a reason when `dir` holds anything the
/// demo did not make. A dataset counts as the demo's only when its name,
/// description and tasks are the demo's, every commit is one the demo
/// makes (init, the demo's task definitions, ingest, labels without
/// replace or remove), and every file under `dir` is its log, a checkpoint
/// or a data file its log references: a folder, link or file of anyone
/// else, or any relabeling, makes it somebody's data.
pub(super) fn demo_files(dir: &Path, rt: &tokio::runtime::Runtime) -> Result<Vec<PathBuf>, String> {
    let entries: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot be read ({e})"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot be read ({e})"))?;
    if entries.is_empty() {
        return Ok(vec![]);
    }
    let others: Vec<&String> = entries
        .iter()
        .filter(|e| !["_must", "images", "labels"].contains(&e.as_str()))
        .collect();
    if !others.is_empty() {
        return Err(format!("holds files the demo did not make ({others:?})"));
    }
    let url = dir.to_string_lossy().to_string();
    let ds = rt
        .block_on(Dataset::open(&url))
        .map_err(|e| format!("holds something that is not a readable must-ds dataset ({e})"))?;
    let snap = ds.snapshot();
    let what = format!(
        "holds the dataset {:?} (version {}, {} image shards, tasks: {})",
        snap.info.name,
        snap.version,
        snap.images.len(),
        snap.tasks.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    let tasks: std::collections::BTreeMap<String, TaskDef> = demo_tasks()
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    if snap.info != demo_info() || snap.tasks != tasks {
        return Err(format!("{what}, which the demo did not make"));
    }
    let history = rt
        .block_on(ds.history())
        .map_err(|e| format!("{what}: {e}"))?;
    let mut data = std::collections::HashSet::new();
    for c in &history {
        let ours = matches!(
            c.operation.as_str(),
            "init" | "define-task" | "ingest" | "add-labels"
        );
        if !ours {
            return Err(format!(
                "{what}, changed by {:?} (version {})",
                c.operation, c.version
            ));
        }
        for a in &c.actions {
            match a {
                crate::format::Action::AddImages(x) => {
                    data.insert(x.path.clone());
                }
                crate::format::Action::AddLabels(x) if !x.replace => {
                    data.insert(x.path.clone());
                }
                crate::format::Action::Remove(_) | crate::format::Action::AddLabels(_) => {
                    return Err(format!("{what}, relabeled at version {}", c.version))
                }
                _ => {}
            }
        }
    }
    let mut files = vec![];
    for entry in walkdir::WalkDir::new(dir).follow_links(false).min_depth(1) {
        let entry = entry.map_err(|e| format!("cannot be read ({e})"))?;
        let rel = entry
            .path()
            .strip_prefix(dir)
            .unwrap_or(entry.path())
            .to_string_lossy()
            .replace(std::path::MAIN_SEPARATOR, "/");
        if entry.file_type().is_dir() {
            continue;
        }
        let known = entry.file_type().is_file()
            && (data.contains(&rel)
                || (rel.starts_with("_must/log/")
                    && crate::store::layout::version_of(&rel, ".json")
                        .is_some_and(|v| v <= snap.version))
                || (rel.starts_with("_must/checkpoint/")
                    && crate::store::layout::version_of(&rel, ".parquet").is_some())
                || rel == crate::store::layout::LAST_CHECKPOINT);
        if !known {
            return Err(format!("{what}, and {rel:?}, which the demo did not write"));
        }
        files.push(entry.path().to_path_buf());
    }
    Ok(files)
}

/// Removes exactly `files` of the demo dataset at `dir`, then the folders
/// they leave empty (never a folder that still holds something).
pub(super) fn remove_demo(dir: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    for f in files {
        std::fs::remove_file(f).with_context(|| format!("removing {}", f.display()))?;
    }
    let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .min_depth(1)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect();
    // Deepest first.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        std::fs::remove_dir(&d).with_context(|| format!("removing the folder {}", d.display()))?;
    }
    Ok(())
}
