//! Committing: a transaction is resolved against the newest state (shard ids
//! assigned, real conflicts detected), written with create-if-absent, and
//! on a lost race rebased and retried with jittered backoff.

use std::time::Duration;

use object_store::{PutMode, PutOptions, PutPayload};
use rand::Rng;

use crate::error::{Error, Result};
use crate::format::{Action, AddImages, AddLabels, Commit, Remove, TaskDef};
use crate::store::{layout, Dataset, Snapshot};

/// What a writer wants to commit. Image shard ids in `add_images` are
/// placeholders: the commit assigns the next free ids.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// The operation name shown by `must-ds log` (`ingest`, `add-labels`...).
    pub operation: String,
    /// The actions, in order.
    pub actions: Vec<Action>,
}

impl Transaction {
    /// An empty transaction for `operation`.
    pub fn new(operation: impl Into<String>) -> Self {
        Self {
            operation: operation.into(),
            actions: Vec::new(),
        }
    }

    /// Adds an action.
    pub fn with(mut self, action: Action) -> Self {
        self.actions.push(action);
        self
    }

    /// Resolves the actions against `snap`: assigns shard ids, drops task
    /// definitions that are already there, removes files that `replace`
    /// labels supersede, and refuses real conflicts. Then applies them to a
    /// copy of `snap` with the readers' own checks
    /// ([`Snapshot::apply_action`]), so that a commit no reader could open
    /// is refused ([`Error::InvalidCommit`]); returns the actions and the
    /// state they make (version and timestamp not yet set).
    pub(crate) fn resolve(&self, snap: &Snapshot) -> Result<(Vec<Action>, Snapshot)> {
        let out = self.resolve_actions(snap)?;
        let mut next = snap.clone();
        for a in &out {
            next.apply_action(a, "the new commit")
                .map_err(|e| match e {
                    Error::CorruptLog { reason, .. } => Error::InvalidCommit {
                        version: snap.version,
                        reason,
                    },
                    other => other,
                })?;
        }
        Ok((out, next))
    }

    fn resolve_actions(&self, snap: &Snapshot) -> Result<Vec<Action>> {
        let version = snap.version;
        let conflict = |reason: String| Error::Conflict { version, reason };
        let mut next = snap.next_shard;
        let mut out = Vec::with_capacity(self.actions.len());
        let mut new_tasks = std::collections::BTreeMap::new();
        for action in &self.actions {
            match action {
                Action::Task(t) => match snap.tasks.get(&t.name).or(new_tasks.get(&t.name)) {
                    Some(old) if old == t => {}
                    Some(_) => {
                        return Err(conflict(format!(
                            "task {:?} is already defined differently",
                            t.name
                        )))
                    }
                    None => {
                        new_tasks.insert(t.name.clone(), t.clone());
                        out.push(action.clone());
                    }
                },
                Action::AddImages(a) => {
                    out.push(Action::AddImages(AddImages {
                        shard: next,
                        ..a.clone()
                    }));
                    next += 1;
                }
                Action::AddLabels(l) => {
                    if !snap.tasks.contains_key(&l.task) && !new_tasks.contains_key(&l.task) {
                        return Err(snap
                            .task(&l.task)
                            .err()
                            .unwrap_or_else(|| conflict("unknown task".into())));
                    }
                    let shard = snap.shard(l.shard)?;
                    if shard.rows != l.rows {
                        return Err(conflict(format!(
                            "labels of task {:?} have {} rows but image shard {} has {}",
                            l.task, l.rows, l.shard, shard.rows
                        )));
                    }
                    match snap.labels.get(&(l.task.clone(), l.shard)) {
                        Some(old) if !l.replace => {
                            return Err(conflict(format!(
                                "task {:?} already has labels for image shard {} ({}); use replace to relabel",
                                l.task, l.shard, old.path
                            )))
                        }
                        Some(old) => out.push(Action::Remove(Remove { path: old.path.clone() })),
                        None => {}
                    }
                    out.push(Action::AddLabels(AddLabels {
                        replace: snap.labels.contains_key(&(l.task.clone(), l.shard)),
                        ..l.clone()
                    }));
                }
                Action::Remove(r) => {
                    if !snap.is_live(&r.path) {
                        return Err(conflict(format!("{} is not part of the dataset", r.path)));
                    }
                    out.push(action.clone());
                }
                Action::Protocol(_) | Action::Dataset(_) => out.push(action.clone()),
            }
        }
        Ok(out)
    }
}

/// Builder for a task definition commit.
pub(crate) fn define_task_txn(task: TaskDef) -> Transaction {
    Transaction::new("define-task").with(Action::Task(task))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn backoff(attempt: u32) -> Duration {
    let cap_ms = (5u64 << attempt.min(8)).min(1_000);
    Duration::from_millis(rand::rng().random_range(1..=cap_ms))
}

impl Dataset {
    /// Commits `txn` on top of the newest version, retrying lost races.
    /// Returns the committed commit (with assigned shard ids).
    ///
    /// Each commit carries a fresh transaction id: when a create-if-absent
    /// answers "already exists" or fails, though the request landed (a
    /// retry below this layer, a lost answer), the commit found at that
    /// version is read back, and when it carries this id it is this
    /// writer's own, not a lost race. So a transaction is committed once.
    /// On a local folder the commit file and its folder are flushed to disk
    /// before it is reported.
    pub async fn commit(&mut self, txn: Transaction) -> Result<Commit> {
        let max = self.options.max_commit_attempts.max(1);
        let id = uuid::Uuid::new_v4().to_string();
        for attempt in 0..max {
            let (actions, mut next) = txn.resolve(&self.snapshot)?;
            let version = self.snapshot.version + 1;
            let commit = Commit {
                version,
                timestamp: now(),
                operation: txn.operation.clone(),
                writer: self.options.writer.clone(),
                actions,
                transaction: Some(id.clone()),
            };
            let rel = layout::log_file(version);
            let path = layout::join(&self.root, &rel);
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            let put = self
                .store
                .put_opts(&path, PutPayload::from(commit.to_bytes()), opts)
                .await;
            let landed = match put {
                Ok(_) => true,
                // Whose commit is there? When that cannot be read, stop
                // rather than guess: a guess could commit twice.
                Err(object_store::Error::AlreadyExists { .. }) => {
                    self.is_own_commit(version, &id).await?
                }
                Err(e) => match self.is_own_commit(version, &id).await {
                    Ok(true) => true,
                    _ => return Err(e.into()),
                },
            };
            if landed {
                self.sync_local(&rel).await?;
                next.version = version;
                next.timestamp = commit.timestamp.clone();
                self.snapshot = next;
                self.maybe_checkpoint().await;
                return Ok(commit);
            }
            tokio::time::sleep(backoff(attempt)).await;
            self.refresh().await?;
        }
        Err(Error::CommitRetriesExhausted {
            attempts: max,
            version: self.snapshot.version + 1,
        })
    }

    /// Whether the commit at `version` carries transaction id `id`.
    async fn is_own_commit(&self, version: u64, id: &str) -> Result<bool> {
        let c = crate::store::log::read_commit(&self.store, &self.root, version).await?;
        Ok(c.is_some_and(|c| c.transaction.as_deref() == Some(id)))
    }

    async fn maybe_checkpoint(&self) {
        let every = self.options.checkpoint_interval;
        if every > 0 && self.snapshot.version.is_multiple_of(every) {
            // A checkpoint only speeds up opening; the commit is already
            // durable, so a failed checkpoint must not fail it. The next
            // interval writes a new one.
            let _ = crate::store::checkpoint::write(&self.store, &self.root, &self.snapshot).await;
        }
    }
}
