//! Spilling: the largest pending shard's labels written to a temporary
//! Parquet file when the pending labels pass the memory budget.

use super::LabelAligner;
use crate::codec::{labels_to_batch, Label, SegMap};
use crate::error::{Error, Result};

pub(super) use tempfile_dir::TempDir;

/// A temporary folder removed on drop (spill files), without a dependency.
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(parent: &Path) -> std::io::Result<Self> {
            let p = parent.join(format!("must-ds-align-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&p)?;
            Ok(Self(p))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            // Only files this aligner wrote live here.
            if let Ok(entries) = std::fs::read_dir(&self.0) {
                for e in entries.flatten() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
            let _ = std::fs::remove_dir(&self.0);
        }
    }
}

impl LabelAligner<'_> {
    /// Writes the pending labels of the largest pending shard to disk.
    pub(super) fn spill_largest(&mut self) -> Result<bool> {
        let Some((t, _)) = self
            .targets
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.pending.is_empty())
            .max_by_key(|(_, t)| t.pending_bytes)
        else {
            return Ok(false);
        };
        if self.spill_dir.is_none() {
            let parent = self
                .opts
                .spill_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir);
            self.spill_dir = Some(
                tempfile_dir::TempDir::new(&parent)
                    .map_err(|e| Error::io(parent.display().to_string(), e))?,
            );
        }
        let dir = self.spill_dir.as_ref().expect("set").path().to_path_buf();
        let target = &mut self.targets[t];
        let pending = std::mem::take(&mut target.pending);
        let path = dir.join(format!("{}-{}.parquet", target.shard, target.spills.len()));
        let ids: Vec<String> = pending.iter().map(|(r, _)| r.to_string()).collect();
        let labels: Vec<Option<Label>> = pending.into_iter().map(|(_, l)| Some(l)).collect();
        let with_conf = labels.iter().any(|l| {
            matches!(
                l,
                Some(Label::Segmentation(SegMap {
                    confidence: Some(_),
                    ..
                }))
            )
        });
        let batch = labels_to_batch(&self.task, &ids, &labels, with_conf)?;
        let name = path.display().to_string();
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&name, e))?;
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::LZ4_RAW)
            .build();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props))
            .map_err(|e| Error::parquet(&name, e))?;
        w.write(&batch).map_err(|e| Error::parquet(&name, e))?;
        w.close().map_err(|e| Error::parquet(&name, e))?;
        target.spills.push(path);
        self.memory -= target.pending_bytes;
        target.pending_bytes = 0;
        self.report.spills += 1;
        Ok(true)
    }
}
