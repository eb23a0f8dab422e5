//! Log actions and commits (FORMAT.md section 2).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::TaskDef;

/// The reader version of format v1.
pub const READER_VERSION: u32 = 1;
/// The writer version of format v1.
pub const WRITER_VERSION: u32 = 1;
/// Protocol features this build understands (none are defined yet).
pub const FEATURES: &[&str] = &[];

/// Reader/writer versions and features a dataset needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protocol {
    /// Minimum reader version.
    pub reader_version: u32,
    /// Minimum writer version.
    pub writer_version: u32,
    /// Features a reader must understand.
    #[serde(default)]
    pub features: Vec<String>,
}

impl Default for Protocol {
    fn default() -> Self {
        Self {
            reader_version: READER_VERSION,
            writer_version: WRITER_VERSION,
            features: vec![],
        }
    }
}

/// Human metadata about the dataset.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Dataset name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// A new image shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddImages {
    /// Shard id, assigned at commit time (next free id).
    pub shard: u64,
    /// Path relative to the dataset root, `images/part-<uuid>.parquet`.
    pub path: String,
    /// Number of rows.
    pub rows: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// `crc32c:` and 8 lowercase hex digits, of the whole file.
    pub checksum: String,
    /// Rows in each row group, in order.
    pub row_groups: Vec<u64>,
    /// Rows per source corpus.
    #[serde(default)]
    pub sources: BTreeMap<String, u64>,
}

/// Labels of one task for one image shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddLabels {
    /// Task name.
    pub task: String,
    /// Image shard id.
    pub shard: u64,
    /// Path relative to the dataset root, `labels/<task>/part-<uuid>.parquet`.
    pub path: String,
    /// Number of rows (equal to the shard's).
    pub rows: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// `crc32c:` and 8 lowercase hex digits, of the whole file.
    pub checksum: String,
    /// Rows whose label is not null.
    pub labeled: u64,
    /// Whether this replaces existing labels of (task, shard).
    #[serde(default)]
    pub replace: bool,
}

/// A data file leaves the dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remove {
    /// Path relative to the dataset root.
    pub path: String,
}

/// One entry of a commit's `actions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Reader/writer versions and features.
    Protocol(Protocol),
    /// Dataset name and description.
    Dataset(DatasetInfo),
    /// A task definition.
    Task(TaskDef),
    /// A new image shard.
    AddImages(AddImages),
    /// A label file.
    AddLabels(AddLabels),
    /// A data file removed.
    Remove(Remove),
}

const ACTION_NAMES: &[&str] = &[
    "protocol",
    "dataset",
    "task",
    "add_images",
    "add_labels",
    "remove",
];

impl Action {
    /// The action's key in JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Protocol(_) => "protocol",
            Action::Dataset(_) => "dataset",
            Action::Task(_) => "task",
            Action::AddImages(_) => "add_images",
            Action::AddLabels(_) => "add_labels",
            Action::Remove(_) => "remove",
        }
    }

    /// Parses one action, refusing unknown kinds by name.
    pub fn from_value(value: serde_json::Value, file: &str) -> Result<Self> {
        let obj = value.as_object().ok_or_else(|| Error::CorruptLog {
            file: file.into(),
            reason: format!("an action must be a JSON object with one key, found {value}"),
        })?;
        if obj.len() != 1 {
            return Err(Error::CorruptLog {
                file: file.into(),
                reason: format!("an action must have exactly one key, found {}", obj.len()),
            });
        }
        let key = obj.keys().next().cloned().unwrap_or_default();
        if !ACTION_NAMES.contains(&key.as_str()) {
            return Err(Error::UnknownAction {
                file: file.into(),
                action: key,
            });
        }
        let action: Action = serde_json::from_value(value).map_err(|e| Error::CorruptLog {
            file: file.into(),
            reason: format!("action {key:?}: {e}"),
        })?;
        if let Action::Task(t) = &action {
            t.validate().map_err(|e| Error::CorruptLog {
                file: file.into(),
                reason: e.to_string(),
            })?;
        }
        Ok(action)
    }
}

/// One commit: the JSON object at `_must/log/{version:020}.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    /// The version this commit creates.
    pub version: u64,
    /// RFC 3339 UTC time of the commit.
    pub timestamp: String,
    /// What made it: `init`, `ingest`, `add-labels`, `define-task`...
    pub operation: String,
    /// The writing program and its version.
    pub writer: String,
    /// The actions, applied in order.
    pub actions: Vec<Action>,
    /// A unique id of the transaction (a UUID), so that a writer whose
    /// create-if-absent was retried below it recognises its own commit.
    /// Optional for other writers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
}

impl Commit {
    /// Parses a log file's bytes; `file` names it in errors.
    pub fn from_slice(bytes: &[u8], file: &str) -> Result<Self> {
        let corrupt = |reason: String| Error::CorruptLog {
            file: file.into(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| corrupt("not a JSON object".into()))?;
        let version = obj
            .get("version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| corrupt("missing or invalid \"version\"".into()))?;
        let text = |k: &str| {
            obj.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let actions = obj
            .get("actions")
            .and_then(|v| v.as_array())
            .ok_or_else(|| corrupt("missing \"actions\" list".into()))?
            .iter()
            .map(|a| Action::from_value(a.clone(), file))
            .collect::<Result<Vec<_>>>()?;
        Ok(Commit {
            version,
            timestamp: text("timestamp"),
            operation: text("operation"),
            writer: text("writer"),
            actions,
            transaction: obj
                .get("transaction")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
        })
    }

    /// The commit as pretty JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("commits always serialize");
        v.push(b'\n');
        v
    }
}

/// The checksum string of FORMAT.md: `crc32c:` and 8 lowercase hex digits.
pub fn checksum_of(bytes: &[u8]) -> String {
    format!("crc32c:{:08x}", crc32c::crc32c(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_externally_tagged() {
        let a = Action::Remove(Remove {
            path: "images/x.parquet".into(),
        });
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"remove":{"path":"images/x.parquet"}}"#
        );
        let v: serde_json::Value = serde_json::from_str(r#"{"add_mystery":{}}"#).unwrap();
        match Action::from_value(v, "_must/log/1.json") {
            Err(Error::UnknownAction { action, file }) => {
                assert_eq!(action, "add_mystery");
                assert_eq!(file, "_must/log/1.json");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn checksum_is_crc32c_hex() {
        // Known CRC-32C of "123456789".
        assert_eq!(checksum_of(b"123456789"), "crc32c:e3069283");
    }
}
