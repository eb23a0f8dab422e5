//! The state of a dataset at one version: what replaying the log yields.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::format::{
    Action, AddImages, AddLabels, Commit, DatasetInfo, Protocol, TaskDef, FEATURES, READER_VERSION,
};

/// The live state of a dataset as of `version`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The version this state is at.
    pub version: u64,
    /// The protocol in force.
    pub protocol: Protocol,
    /// Dataset name and description.
    pub info: DatasetInfo,
    /// Tasks by name.
    pub tasks: BTreeMap<String, TaskDef>,
    /// Image shards by id.
    pub images: BTreeMap<u64, AddImages>,
    /// Label files by (task, shard).
    pub labels: BTreeMap<(String, u64), AddLabels>,
    /// The next image shard id to assign (ids are never reused).
    pub next_shard: u64,
    /// Timestamp of the newest commit applied.
    pub timestamp: String,
}

/// Checks that this build can read a dataset with `p`.
pub fn check_protocol(p: &Protocol, file: &str) -> Result<()> {
    let unsupported = |what: String| Error::UnsupportedProtocol {
        file: file.to_owned(),
        what,
        supported: READER_VERSION,
        features: FEATURES.iter().map(|s| s.to_string()).collect(),
    };
    if p.reader_version > READER_VERSION {
        return Err(unsupported(format!("reader version {}", p.reader_version)));
    }
    if let Some(f) = p.features.iter().find(|f| !FEATURES.contains(&f.as_str())) {
        return Err(unsupported(format!("feature {f:?}")));
    }
    Ok(())
}

impl Snapshot {
    /// Applies one action read from `file`. A log that contradicts itself is corrupt.
    pub fn apply_action(&mut self, action: &Action, file: &str) -> Result<()> {
        let corrupt = |reason: String| Error::CorruptLog {
            file: file.to_owned(),
            reason,
        };
        match action {
            Action::Protocol(p) => {
                check_protocol(p, file)?;
                self.protocol = p.clone();
            }
            Action::Dataset(d) => self.info = d.clone(),
            Action::Task(t) => {
                if let Some(old) = self.tasks.get(&t.name) {
                    if old != t {
                        return Err(corrupt(format!("task {:?} redefined differently", t.name)));
                    }
                }
                self.tasks.insert(t.name.clone(), t.clone());
            }
            Action::AddImages(a) => {
                if self.images.contains_key(&a.shard) {
                    return Err(corrupt(format!("image shard {} added twice", a.shard)));
                }
                if a.row_groups.iter().sum::<u64>() != a.rows {
                    return Err(corrupt(format!(
                        "image shard {}: row_groups add up to {} but rows is {}",
                        a.shard,
                        a.row_groups.iter().sum::<u64>(),
                        a.rows
                    )));
                }
                self.next_shard = self.next_shard.max(a.shard + 1);
                self.images.insert(a.shard, a.clone());
            }
            Action::AddLabels(l) => {
                if !self.tasks.contains_key(&l.task) {
                    return Err(corrupt(format!("labels for undefined task {:?}", l.task)));
                }
                if !self.images.contains_key(&l.shard) {
                    return Err(corrupt(format!(
                        "labels of task {:?} for missing image shard {}",
                        l.task, l.shard
                    )));
                }
                let key = (l.task.clone(), l.shard);
                if self.labels.contains_key(&key) && !l.replace {
                    return Err(corrupt(format!(
                        "second labels of task {:?} for shard {} without replace",
                        l.task, l.shard
                    )));
                }
                // `replace` describes the commit, not the state.
                self.labels.insert(
                    key,
                    AddLabels {
                        replace: false,
                        ..l.clone()
                    },
                );
            }
            Action::Remove(r) => {
                if let Some(shard) = self
                    .images
                    .iter()
                    .find(|(_, a)| a.path == r.path)
                    .map(|(k, _)| *k)
                {
                    self.images.remove(&shard);
                    self.labels.retain(|(_, s), _| *s != shard);
                } else {
                    self.labels.retain(|_, l| l.path != r.path);
                }
            }
        }
        Ok(())
    }

    /// Applies a whole commit, which must be the next version.
    pub fn apply(&mut self, commit: &Commit, file: &str) -> Result<()> {
        for a in &commit.actions {
            self.apply_action(a, file)?;
        }
        self.version = commit.version;
        self.timestamp = commit.timestamp.clone();
        Ok(())
    }

    /// The live actions that rebuild this state (what a checkpoint stores).
    pub fn live_actions(&self) -> Vec<Action> {
        let mut out = vec![
            Action::Protocol(self.protocol.clone()),
            Action::Dataset(self.info.clone()),
        ];
        out.extend(self.tasks.values().cloned().map(Action::Task));
        out.extend(self.images.values().cloned().map(Action::AddImages));
        out.extend(self.labels.values().cloned().map(Action::AddLabels));
        out
    }

    /// Total image rows.
    pub fn total_rows(&self) -> u64 {
        self.images.values().map(|a| a.rows).sum()
    }

    /// The task named `name`, or an error listing the defined ones.
    pub fn task(&self, name: &str) -> Result<&TaskDef> {
        self.tasks.get(name).ok_or_else(|| Error::UnknownTask {
            task: name.to_owned(),
            defined: self.tasks.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// Image shard `shard`, or an error.
    pub fn shard(&self, shard: u64) -> Result<&AddImages> {
        self.images.get(&shard).ok_or(Error::UnknownShard {
            shard,
            version: self.version,
            count: self.images.len(),
        })
    }

    /// Whether `path` is a data file of this version.
    pub fn is_live(&self, path: &str) -> bool {
        self.images.values().any(|a| a.path == path) || self.labels.values().any(|l| l.path == path)
    }
}
