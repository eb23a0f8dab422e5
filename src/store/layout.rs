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

/// What a data path names, by its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind<'a> {
    /// An image shard, `images/<name>.parquet`.
    Images,
    /// A label file of this task, `labels/<task>/<name>.parquet`.
    Labels(&'a str),
}

/// Checks that `rel` is a data path in canonical form (FORMAT.md section
/// 1): relative, `/`-separated, every segment non-empty and neither `.`
/// nor `..`, no `\\` and no control characters, and exactly
/// `images/<name>.parquet` or `labels/<task>/<name>.parquet` (`Labels(task)`),
/// or either form (`None`). Two canonical paths name the same object only
/// when they are equal, so a reference can be compared as a string.
pub fn check_data_path(rel: &str, kind: Option<DataKind<'_>>) -> Result<(), String> {
    let bad = |why: &str| Err(format!("data path {rel:?} is not in canonical form: {why}"));
    if rel.is_empty() {
        return bad("it is empty");
    }
    if rel.len() > 1024 {
        return bad("it is longer than 1024 bytes");
    }
    if rel.starts_with('/') || rel.contains("://") {
        return bad("it must be relative to the dataset root");
    }
    if rel.contains('\\') {
        return bad("it must use / only");
    }
    if rel.chars().any(|c| c.is_control()) {
        return bad("it holds a control character");
    }
    let parts: Vec<&str> = rel.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return bad("it has an empty segment (// or a trailing /)");
    }
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return bad("it has a . or .. segment");
    }
    let name = parts[parts.len() - 1];
    if !name.ends_with(".parquet") || name.len() == ".parquet".len() {
        return bad("the file name must end in .parquet");
    }
    match (parts.as_slice(), kind) {
        (["images", _], None | Some(DataKind::Images)) => Ok(()),
        (["labels", task, _], None) => {
            crate::format::validate_task_name(task).map_err(|e| format!("{rel:?}: {e}"))
        }
        (["labels", task, _], Some(DataKind::Labels(t))) if *task == t => Ok(()),
        (_, Some(DataKind::Images)) => bad("an image shard is images/<name>.parquet"),
        (_, Some(DataKind::Labels(t))) => bad(&format!(
            "a label file of task {t:?} is labels/{t}/<name>.parquet"
        )),
        (_, None) => bad("a data file is images/<name>.parquet or labels/<task>/<name>.parquet"),
    }
}

/// Whether `rel` is a name that must-ds writers produce for a data file:
/// `images/part-<uuid>.parquet` or `labels/<task>/part-<uuid>.parquet`
/// (lowercase hyphenated UUID), optionally followed by a local store's
/// staging suffix `#<digits>`. Vacuum deletes nothing else.
pub fn is_writer_name(rel: &str) -> bool {
    let base = match rel.rsplit_once('#') {
        Some((b, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => b,
        Some(_) => return false,
        None => rel,
    };
    if check_data_path(base, None).is_err() {
        return false;
    }
    let name = base.rsplit('/').next().unwrap_or_default();
    let Some(id) = name
        .strip_prefix("part-")
        .and_then(|n| n.strip_suffix(".parquet"))
    else {
        return false;
    };
    id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        })
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

    #[test]
    fn canonical_data_paths() {
        let img = new_image_file();
        let lab = new_label_file("det");
        assert!(check_data_path(&img, Some(DataKind::Images)).is_ok());
        assert!(check_data_path(&lab, Some(DataKind::Labels("det"))).is_ok());
        assert!(check_data_path(&lab, None).is_ok());
        assert!(check_data_path(&lab, Some(DataKind::Labels("seg"))).is_err());
        assert!(check_data_path(&lab, Some(DataKind::Images)).is_err());
        for bad in [
            "",
            "/images/a.parquet",
            "images//a.parquet",
            "images/./a.parquet",
            "images/../images/a.parquet",
            "images/a.parquet/",
            "images\\a.parquet",
            "images/a\u{1b}.parquet",
            "images/a.json",
            "images/.parquet",
            "images/sub/a.parquet",
            "labels/Det/a.parquet",
            "s3://b/images/a.parquet",
            "other/a.parquet",
        ] {
            assert!(check_data_path(bad, None).is_err(), "{bad:?} accepted");
        }
        assert!(is_writer_name(&img));
        assert!(is_writer_name(&lab));
        assert!(is_writer_name(&format!("{img}#17")));
        assert!(!is_writer_name(&format!("{img}#")));
        assert!(!is_writer_name("images/photo.jpg"));
        assert!(!is_writer_name("images/part-1.parquet"));
        assert!(!is_writer_name(&img.to_uppercase()));
        assert!(!is_writer_name(&img.replace("images/", "images//")));
    }
}
