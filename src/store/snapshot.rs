//! The state of a dataset at one version: what replaying the log yields.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::format::{
    Action, AddImages, AddLabels, Commit, DatasetInfo, Protocol, TaskDef, FEATURES, READER_VERSION,
};
use crate::store::layout::{check_data_path, DataKind};

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
    /// Live data paths and what they are (an index of `images` and `labels`).
    paths: BTreeMap<String, Owner>,
}

fn describe(owner: &Owner) -> String {
    match owner {
        Owner::Image(s) => format!("image shard {s}"),
        Owner::Label(t, s) => format!("labels of task {t:?} for shard {s}"),
    }
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

/// What a live data path belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    Image(u64),
    Label(String, u64),
}

impl Snapshot {
    /// Applies one action read from `file`. These are the invariants of the
    /// log, the same on both sides: a commit breaking one is refused by
    /// [`Dataset::commit`](crate::Dataset::commit), and a log holding one is
    /// corrupt for readers.
    ///
    /// * a task is valid and never redefined differently;
    /// * an image shard id is added once, its path is canonical and not
    ///   live, and its row groups add up to its rows;
    /// * labels are for a defined task and a live shard, have the shard's
    ///   rows (and no more labeled rows than that), a canonical path under
    ///   `labels/<task>/` that is not live, and replace existing labels of
    ///   that (task, shard) only with `replace`;
    /// * a remove names a live data file by its canonical path.
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
                t.validate().map_err(|e| corrupt(e.to_string()))?;
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
                let next = a.shard.checked_add(1).ok_or_else(|| {
                    corrupt(format!("image shard id {} is out of range", a.shard))
                })?;
                check_data_path(&a.path, Some(DataKind::Images)).map_err(corrupt)?;
                if let Some(owner) = self.paths.get(&a.path) {
                    return Err(corrupt(format!(
                        "image shard {}: {} is already live ({})",
                        a.shard,
                        a.path,
                        describe(owner)
                    )));
                }
                let sum = a
                    .row_groups
                    .iter()
                    .try_fold(0u64, |acc, &n| acc.checked_add(n));
                if sum != Some(a.rows) {
                    return Err(corrupt(format!(
                        "image shard {}: row_groups ({} of them) add up to {} but rows is {}",
                        a.shard,
                        a.row_groups.len(),
                        sum.map_or("more than 2^64".into(), |s| s.to_string()),
                        a.rows
                    )));
                }
                if a.row_groups.contains(&0) {
                    return Err(corrupt(format!(
                        "image shard {}: an empty row group",
                        a.shard
                    )));
                }
                let sources = a
                    .sources
                    .values()
                    .try_fold(0u64, |acc, &n| acc.checked_add(n));
                if !a.sources.is_empty() && sources != Some(a.rows) {
                    return Err(corrupt(format!(
                        "image shard {}: sources add up to {} but rows is {}",
                        a.shard,
                        sources.map_or("more than 2^64".into(), |s| s.to_string()),
                        a.rows
                    )));
                }
                self.next_shard = self.next_shard.max(next);
                self.paths.insert(a.path.clone(), Owner::Image(a.shard));
                self.images.insert(a.shard, a.clone());
            }
            Action::AddLabels(l) => {
                if !self.tasks.contains_key(&l.task) {
                    return Err(corrupt(format!("labels for undefined task {:?}", l.task)));
                }
                let Some(shard) = self.images.get(&l.shard) else {
                    return Err(corrupt(format!(
                        "labels of task {:?} for image shard {}, which is not live",
                        l.task, l.shard
                    )));
                };
                if l.rows != shard.rows {
                    return Err(corrupt(format!(
                        "labels of task {:?} have {} rows but image shard {} has {}",
                        l.task, l.rows, l.shard, shard.rows
                    )));
                }
                if l.labeled > l.rows {
                    return Err(corrupt(format!(
                        "labels of task {:?} for shard {}: {} labeled rows of {}",
                        l.task, l.shard, l.labeled, l.rows
                    )));
                }
                check_data_path(&l.path, Some(DataKind::Labels(&l.task))).map_err(corrupt)?;
                if let Some(owner) = self.paths.get(&l.path) {
                    return Err(corrupt(format!(
                        "labels of task {:?} for shard {}: {} is already live ({})",
                        l.task,
                        l.shard,
                        l.path,
                        describe(owner)
                    )));
                }
                let key = (l.task.clone(), l.shard);
                if let Some(old) = self.labels.get(&key) {
                    if !l.replace {
                        return Err(corrupt(format!(
                            "second labels of task {:?} for shard {} without replace",
                            l.task, l.shard
                        )));
                    }
                    self.paths.remove(&old.path);
                }
                self.paths
                    .insert(l.path.clone(), Owner::Label(l.task.clone(), l.shard));
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
                check_data_path(&r.path, None).map_err(corrupt)?;
                match self.paths.remove(&r.path) {
                    Some(Owner::Image(shard)) => {
                        self.images.remove(&shard);
                        let gone: Vec<_> = self
                            .labels
                            .iter()
                            .filter(|((_, s), _)| *s == shard)
                            .map(|(k, l)| (k.clone(), l.path.clone()))
                            .collect();
                        for (k, path) in gone {
                            self.labels.remove(&k);
                            self.paths.remove(&path);
                        }
                    }
                    Some(Owner::Label(task, shard)) => {
                        self.labels.remove(&(task, shard));
                    }
                    None => {
                        return Err(corrupt(format!(
                            "remove of {}, which is not a live data file",
                            r.path
                        )))
                    }
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
        self.images
            .values()
            .fold(0u64, |acc, a| acc.saturating_add(a.rows))
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
        self.paths.contains_key(path)
    }
}
