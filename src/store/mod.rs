//! The store: dataset URL → object store, the commit log, checkpoints and
//! the snapshot of a version. Opening reads the newest checkpoint and the
//! log files after it; it never lists data files.

pub mod checkpoint;
mod commit;
pub mod counting;
pub mod layout;
pub mod log;
pub mod retry;
mod snapshot;
mod url;
pub mod vacuum;

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

pub use commit::Transaction;
pub use snapshot::{check_protocol, Snapshot};
pub use url::{open_location, open_location_with, Location};

use crate::error::{Error, Result};
use crate::format::{Action, Commit, DatasetInfo, Protocol, TaskDef};

/// How a [`Dataset`] commits.
#[derive(Debug, Clone)]
pub struct DatasetOptions {
    /// Write a checkpoint every this many versions (0: never). Default 100.
    pub checkpoint_interval: u64,
    /// Give up committing after this many lost races. Default 500.
    pub max_commit_attempts: u32,
    /// The `writer` field of commits.
    pub writer: String,
    /// Object-store settings for cloud URLs, over the environment's (see
    /// [`open_location_with`]).
    pub storage_options: std::collections::BTreeMap<String, String>,
}

impl Default for DatasetOptions {
    /// The checkpoint interval can be set for every command with the
    /// environment variable `MUST_CHECKPOINT_INTERVAL`.
    fn default() -> Self {
        Self {
            checkpoint_interval: std::env::var("MUST_CHECKPOINT_INTERVAL")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(100),
            max_commit_attempts: 500,
            writer: format!("must-ds {}", env!("CARGO_PKG_VERSION")),
            storage_options: Default::default(),
        }
    }
}

impl DatasetOptions {
    /// Sets the checkpoint interval.
    pub fn with_checkpoint_interval(mut self, every: u64) -> Self {
        self.checkpoint_interval = every;
        self
    }
}

/// An opened dataset at one version. Clone it freely: clones share the store.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) root: Path,
    pub(crate) url: String,
    pub(crate) snapshot: Snapshot,
    pub(crate) options: DatasetOptions,
}

impl Dataset {
    /// Creates a dataset at `url` (commit 0: protocol and dataset info).
    pub async fn init(url: &str, info: DatasetInfo) -> Result<Dataset> {
        Self::init_with(url, info, DatasetOptions::default()).await
    }

    /// [`Dataset::init`] with options.
    pub async fn init_with(
        url: &str,
        info: DatasetInfo,
        options: DatasetOptions,
    ) -> Result<Dataset> {
        Self::init_location(
            open_location_with(url, true, &options.storage_options)?,
            info,
            options,
        )
        .await
    }

    /// Creates a dataset in an already built object store (wrappers, tests).
    pub async fn init_location(
        loc: Location,
        info: DatasetInfo,
        options: DatasetOptions,
    ) -> Result<Dataset> {
        let commit = Commit {
            version: 0,
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            operation: "init".into(),
            writer: options.writer.clone(),
            actions: vec![Action::Protocol(Protocol::default()), Action::Dataset(info)],
            transaction: Some(uuid::Uuid::new_v4().to_string()),
        };
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let path = layout::join(&loc.root, &layout::log_file(0));
        let found = first_entries(&loc, 5).await?;
        if found.iter().any(|f| f == "_must") {
            return Err(Error::DatasetExists { url: loc.url });
        }
        if !found.is_empty() {
            return Err(Error::LocationNotEmpty {
                url: loc.url,
                found,
            });
        }
        match loc
            .store
            .put_opts(&path, PutPayload::from(commit.to_bytes()), opts)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(Error::DatasetExists { url: loc.url })
            }
            Err(e) => return Err(e.into()),
        }
        let mut snapshot = Snapshot::default();
        if let Some(dir) = local_dir(&loc.url) {
            // The new folders too: `_must/log`, `_must` and the root.
            let rel = layout::log_file(0);
            tokio::task::spawn_blocking(move || sync_path(&dir, &rel))
                .await
                .map_err(|e| Error::io(&loc.url, std::io::Error::other(e)))??;
        }
        snapshot.apply(&commit, &layout::log_file(0))?;
        Ok(Dataset::from_parts(loc, snapshot, options))
    }

    fn from_parts(loc: Location, snapshot: Snapshot, options: DatasetOptions) -> Dataset {
        Dataset {
            store: loc.store,
            root: loc.root,
            url: loc.url,
            snapshot,
            options,
        }
    }

    /// Opens the latest version at `url`.
    pub async fn open(url: &str) -> Result<Dataset> {
        Self::open_with(url, None, DatasetOptions::default()).await
    }

    /// Opens `version` at `url`.
    pub async fn open_at(url: &str, version: u64) -> Result<Dataset> {
        Self::open_with(url, Some(version), DatasetOptions::default()).await
    }

    /// Opens `version` (latest when `None`) with options.
    pub async fn open_with(
        url: &str,
        version: Option<u64>,
        options: DatasetOptions,
    ) -> Result<Dataset> {
        let loc = open_location_with(url, false, &options.storage_options)?;
        Self::open_location(loc, version, options).await
    }

    /// Opens a dataset in an already built object store (wrappers, tests).
    pub async fn open_location(
        loc: Location,
        version: Option<u64>,
        options: DatasetOptions,
    ) -> Result<Dataset> {
        let snapshot = match version {
            None => load_latest(&loc).await?,
            Some(v) => load_version(&loc, v).await?,
        };
        Ok(Dataset::from_parts(loc, snapshot, options))
    }

    /// Brings this handle to the newest version (reads only new log files).
    pub async fn refresh(&mut self) -> Result<()> {
        let from = Some(self.snapshot.version);
        catch_up(&self.store, &self.root, &self.url, &mut self.snapshot, from).await
    }

    /// The state at this handle's version.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// This handle's version.
    pub fn version(&self) -> u64 {
        self.snapshot.version
    }

    /// The dataset URL (no credentials).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The object store and root prefix, for readers.
    pub fn store(&self) -> (&Arc<dyn ObjectStore>, &Path) {
        (&self.store, &self.root)
    }

    /// The object path of a dataset-relative path.
    pub fn object_path(&self, rel: &str) -> Path {
        layout::join(&self.root, rel)
    }

    /// Defines a task. `Ok(None)` when the same definition is already there;
    /// a different one is a [`Error::Conflict`].
    pub async fn define_task(&mut self, task: TaskDef) -> Result<Option<Commit>> {
        task.validate()?;
        self.refresh().await?;
        if self.snapshot.tasks.get(&task.name) == Some(&task) {
            return Ok(None);
        }
        self.commit(commit::define_task_txn(task)).await.map(Some)
    }

    /// Uploads a new data file under a fresh name; never overwrites.
    pub async fn put_data_file(&self, rel: &str, bytes: bytes::Bytes) -> Result<()> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let path = self.object_path(rel);
        let len = bytes.len() as u64;
        match self
            .store
            .put_opts(&path, PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => {}
            // Names are fresh UUIDs: an object already there is this very
            // upload, retried below after its answer was lost. Its size
            // must agree (a commit also records the checksum).
            Err(object_store::Error::AlreadyExists { .. })
                if self.store.head(&path).await.is_ok_and(|m| m.size == len) => {}
            Err(e) => return Err(e.into()),
        }
        self.sync_local(rel).await
    }

    /// Deletes a data file this writer uploaded and never committed
    /// (best effort: a failure leaves an orphan for `vacuum`).
    pub(crate) async fn delete_data_file(&self, rel: &str) -> Result<()> {
        self.store.delete(&self.object_path(rel)).await?;
        Ok(())
    }

    /// On a local folder, flushes the file at `rel` and the folder holding
    /// it to disk (`fsync`), so that what is reported written survives a
    /// power loss. Nothing to do on object stores, whose writes are durable
    /// when acknowledged.
    pub(crate) async fn sync_local(&self, rel: &str) -> Result<()> {
        let Some(dir) = local_dir(&self.url) else {
            return Ok(());
        };
        let rel = rel.to_owned();
        let url = self.url.clone();
        tokio::task::spawn_blocking(move || sync_path(&dir, &rel))
            .await
            .map_err(|e| Error::io(url, std::io::Error::other(e)))?
    }

    /// Reads a whole data file.
    pub async fn get_file(&self, rel: &str) -> Result<bytes::Bytes> {
        Ok(self
            .store
            .get(&self.object_path(rel))
            .await?
            .bytes()
            .await?)
    }

    /// Every commit from 0 to this handle's version, in order.
    pub async fn history(&self) -> Result<Vec<Commit>> {
        let versions: Vec<u64> = (0..=self.snapshot.version).collect();
        log::read_commits(&self.store, &self.root, &versions).await
    }
}

/// Up to `n` names at the top of a location (`_must` first when present).
async fn first_entries(loc: &Location, n: usize) -> Result<Vec<String>> {
    let mut names = std::collections::BTreeSet::new();
    if let Some(dir) = local_dir(&loc.url) {
        // Everything, folders and links included.
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&loc.url, e))?;
        for e in entries {
            let e = e.map_err(|e| Error::io(&loc.url, e))?;
            names.insert(e.file_name().to_string_lossy().into_owned());
        }
    } else {
        use futures::StreamExt;
        let prefix = (!loc.root.as_ref().is_empty()).then_some(&loc.root);
        let mut listing = loc.store.list(prefix);
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            let rel = meta
                .location
                .prefix_match(&loc.root)
                .and_then(|mut parts| parts.next())
                .map(|p| p.as_ref().to_owned())
                .unwrap_or_else(|| meta.location.to_string());
            let done = rel == "_must";
            names.insert(rel);
            if done || names.len() >= n {
                break;
            }
        }
    }
    let mut out: Vec<String> = names.iter().filter(|s| *s == "_must").cloned().collect();
    out.extend(names.into_iter().filter(|s| s != "_must").take(n));
    out.truncate(n);
    Ok(out)
}

/// The folder of a local dataset (its URL is an absolute path).
fn local_dir(url: &str) -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(url);
    (!url.contains("://") && p.is_absolute() && p.is_dir()).then(|| p.to_path_buf())
}

static LOCAL_SYNCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many `fsync`s of local files and folders this process has done
/// (commits and data files; for tests of durability).
#[doc(hidden)]
pub fn local_syncs() -> u64 {
    LOCAL_SYNCS.load(std::sync::atomic::Ordering::Relaxed)
}

/// `fsync`s `root/rel`, then every folder above it up to `root` (a folder
/// made for it is durable only once its parent is flushed).
fn sync_path(root: &std::path::Path, rel: &str) -> Result<()> {
    let file = root.join(rel);
    let sync = |p: &std::path::Path| {
        LOCAL_SYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::fs::File::open(p)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(p.display().to_string(), e))
    };
    sync(&file)?;
    let mut dir = file.parent();
    while let Some(d) = dir {
        sync(d)?;
        if d == root || !d.starts_with(root) {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

async fn load_latest(loc: &Location) -> Result<Snapshot> {
    let hinted = match checkpoint::read_hint(&loc.store, &loc.root).await {
        Ok(Some(v)) => Some(v),
        // No or unreadable hint: one listing finds the newest checkpoint.
        _ => checkpoint::list(&loc.store, &loc.root)
            .await?
            .last()
            .copied(),
    };
    // A checkpoint this build cannot decode (another writer's layout, a
    // damaged file) is skipped: the log is complete, so replay it instead.
    let snap = match hinted {
        Some(v) => checkpoint::read(&loc.store, &loc.root, v)
            .await
            .unwrap_or(None),
        None => None,
    };
    let after = snap.as_ref().map(|s| s.version);
    let mut state = snap.unwrap_or_default();
    catch_up(&loc.store, &loc.root, &loc.url, &mut state, after).await?;
    Ok(state)
}

/// Applies to `state` the commits after `after` (all when `None`, and then
/// commit 0 must exist), found with one listing from an offset; the log
/// must have no gap.
async fn catch_up(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    url: &str,
    state: &mut Snapshot,
    after: Option<u64>,
) -> Result<()> {
    let versions = log::list_versions_after(store, root, after).await?;
    if after.is_none() && versions.first() != Some(&0) {
        return Err(Error::NotADataset {
            url: url.to_owned(),
        });
    }
    log::check_contiguous(after, &versions)?;
    for commit in log::read_commits(store, root, &versions).await? {
        state.apply(&commit, &layout::log_file(commit.version))?;
    }
    Ok(())
}

async fn load_version(loc: &Location, version: u64) -> Result<Snapshot> {
    let base = checkpoint::list(&loc.store, &loc.root)
        .await?
        .into_iter()
        .rfind(|v| *v <= version);
    let (mut state, start) = match base {
        Some(v) => match checkpoint::read(&loc.store, &loc.root, v).await {
            Ok(Some(s)) => (s, v + 1),
            _ => (Snapshot::default(), 0),
        },
        None => (Snapshot::default(), 0),
    };
    for v in start..=version {
        let Some(commit) = log::read_commit(&loc.store, &loc.root, v).await? else {
            if v == 0 {
                return Err(Error::NotADataset {
                    url: loc.url.clone(),
                });
            }
            let latest = log::list_versions_after(&loc.store, &loc.root, None)
                .await?
                .last()
                .copied()
                .unwrap_or(0);
            return Err(Error::NoSuchVersion { version, latest });
        };
        state.apply(&commit, &layout::log_file(v))?;
    }
    Ok(state)
}
