//! Where things live under a dataset root (FORMAT.md section 1).

use object_store::path::Path;

/// Folder of commit files.
pub const LOG_DIR: &str = "_must/log";
/// Folder of checkpoints.
pub const CHECKPOINT_DIR: &str = "_must/checkpoint";
/// The newest-checkpoint hint.
pub const LAST_CHECKPOINT: &str = "_must/last_checkpoint.json";

/// Joins a dataset-relative path (`a/b/c`) onto the root prefix.
pub fn join(root: &Path, rel: &str) -> Path {
    rel.split('/')
        .filter(|s| !s.is_empty())
        .fold(root.clone(), |p, part| p.join(part))
}

/// `_must/log/{version:020}.json`.
pub fn log_file(version: u64) -> String {
    format!("{LOG_DIR}/{version:020}.json")
}

/// `_must/checkpoint/{version:020}.parquet`.
pub fn checkpoint_file(version: u64) -> String {
    format!("{CHECKPOINT_DIR}/{version:020}.parquet")
}

/// A fresh image shard path.
pub fn new_image_file() -> String {
    format!("images/part-{}.parquet", uuid::Uuid::new_v4())
}

/// A fresh label file path for `task`.
pub fn new_label_file(task: &str) -> String {
    format!("labels/{task}/part-{}.parquet", uuid::Uuid::new_v4())
}

/// The version of a log or checkpoint file name (`…/00000000000000000012.json` → 12).
pub fn version_of(name: &str, ext: &str) -> Option<u64> {
    let base = name.rsplit('/').next()?;
    let digits = base.strip_suffix(ext)?;
    if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_names_round_trip() {
        assert_eq!(log_file(7), "_must/log/00000000000000000007.json");
        assert_eq!(version_of(&log_file(123), ".json"), Some(123));
        assert_eq!(version_of("_must/log/7.json", ".json"), None);
        assert_eq!(
            version_of("_must/log/00000000000000000007.json.tmp", ".json"),
            None
        );
        assert_eq!(
            join(&Path::from("a/b"), "images/x.parquet").as_ref(),
            "a/b/images/x.parquet"
        );
    }
}
