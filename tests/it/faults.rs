//! Flaky and broken stores: with 5 % of requests failing (before or after
//! they take effect), ingest and labeling complete with the same content as
//! without faults; a loader epoch through a store failing half the requests
//! is unchanged; a create-if-absent whose answer is lost is recognised by
//! its retry; a permanent failure ends with an error naming the object.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::BoxStream;
use object_store::path::Path as ObjPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

use must_ds::codec::{ClassLabel, Label};
use must_ds::format::TaskDef;
use must_ds::ingest::{ingest, IngestOptions};
use must_ds::store::retry::{FaultyStore, RetryPolicy, RetryStore};
use must_ds::store::Location;
use must_ds::write::LabelWriter;
use must_ds::{Dataset, DatasetOptions};
use object_store::local::LocalFileSystem;

use crate::util;

const TASK: &str = r#"{"name":"cls","kind":"classification","num_classes":7,"encoding":"topk","teacher":"ground-truth"}"#;

fn faulty(dir: &std::path::Path, faults: FaultyStore) -> (Location, Arc<FaultyStore>) {
    faulty_with(dir, faults, 6)
}

/// A location over `faults` with `attempts` tries per request.
fn faulty_with(
    dir: &std::path::Path,
    faults: FaultyStore,
    attempts: u32,
) -> (Location, Arc<FaultyStore>) {
    let faults = Arc::new(faults);
    let policy = RetryPolicy {
        attempts,
        first_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
    };
    let store = Arc::new(RetryStore::new(faults.clone(), policy));
    (
        Location {
            store,
            root: Default::default(),
            url: dir.display().to_string(),
        },
        faults,
    )
}

fn local(dir: &std::path::Path) -> Arc<LocalFileSystem> {
    std::fs::create_dir_all(dir).unwrap();
    Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap())
}

/// Ingests 30 photos and labels every shard; returns image id → label.
fn job(rt: &tokio::runtime::Runtime, loc: Location) -> BTreeMap<String, Option<Label>> {
    let opts = DatasetOptions::default().with_checkpoint_interval(3);
    let mut ds = rt
        .block_on(Dataset::init_location(
            loc.clone(),
            Default::default(),
            opts.clone(),
        ))
        .unwrap();
    rt.block_on(ds.define_task(TaskDef::from_json(TASK).unwrap()))
        .unwrap();
    let mut io = IngestOptions::new("flaky");
    io.workers = 2;
    io.shard.shard_rows = 4;
    io.shard.row_group_rows = 2;
    ingest(rt.handle(), &ds, util::inputs(30), &io, None).unwrap();
    rt.block_on(ds.refresh()).unwrap();
    for shard in ds.snapshot().images.keys().copied().collect::<Vec<_>>() {
        let mut w = rt
            .block_on(LabelWriter::for_shard(&ds, "cls", shard))
            .unwrap();
        for id in w.image_ids().to_vec() {
            let n: u32 = id.trim_start_matches("img-").parse().unwrap();
            w.set(
                &id,
                Label::Classification(ClassLabel::TopK {
                    classes: vec![n % 7],
                    probs: vec![0.5],
                }),
            )
            .unwrap();
        }
        rt.block_on(ds.add_label_file("cls", shard, w.finish().unwrap(), false))
            .unwrap();
    }
    // Read everything back through the same store.
    let ds = rt
        .block_on(Dataset::open_location(loc, None, opts))
        .unwrap();
    let mut out = BTreeMap::new();
    for (shard, a) in &ds.snapshot().images {
        for g in 0..a.row_groups.len() {
            let rg = rt
                .block_on(ds.read_row_group(*shard, g, &["cls"], None))
                .unwrap();
            for (r, l) in rg.images.iter().zip(&rg.labels["cls"]) {
                assert!(
                    out.insert(r.image_id.clone(), l.clone()).is_none(),
                    "{} twice",
                    r.image_id
                );
            }
        }
    }
    out
}

#[test]
fn five_percent_failing_requests_change_nothing() {
    let rt = util::rt();
    let clean = tempfile::tempdir().unwrap();
    let (loc, _) = faulty(clean.path(), FaultyStore::new(local(clean.path()), 0.0, 1));
    let expected = job(&rt, loc);
    assert_eq!(expected.len(), 30);

    let flaky = tempfile::tempdir().unwrap();
    let (loc, faults) = faulty(flaky.path(), FaultyStore::new(local(flaky.path()), 0.05, 7));
    let got = job(&rt, loc);
    assert!(
        faults.injected.load(std::sync::atomic::Ordering::Relaxed) > 5,
        "faults were injected"
    );
    assert_eq!(got, expected);
    let v = util::must(&["validate", flaky.path().to_str().unwrap()]);
    assert!(v.status.success(), "{}", util::stdout(&v));
}

#[test]
fn a_permanent_failure_names_the_object() {
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let (loc, _) = faulty(
        dir.path(),
        FaultyStore::new(local(dir.path()), 0.0, 1).always_failing("labels/"),
    );
    let mut ds = rt
        .block_on(Dataset::init_location(
            loc,
            Default::default(),
            Default::default(),
        ))
        .unwrap();
    rt.block_on(ds.define_task(TaskDef::from_json(TASK).unwrap()))
        .unwrap();
    let mut io = IngestOptions::new("x");
    io.workers = 1;
    ingest(rt.handle(), &ds, util::inputs(3), &io, None).unwrap();
    rt.block_on(ds.refresh()).unwrap();
    let w = rt.block_on(LabelWriter::for_shard(&ds, "cls", 0)).unwrap();
    let err = rt
        .block_on(ds.add_label_file("cls", 0, w.finish().unwrap(), false))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("labels/cls/part-") && err.contains("failed 6 times"),
        "{err}"
    );
    // Nothing was committed for it.
    let ds = rt
        .block_on(Dataset::open(dir.path().to_str().unwrap()))
        .unwrap();
    assert!(ds.snapshot().labels.is_empty());
}

/// A loader epoch through a store where half the requests fail (retried up
/// to 20 times) yields the same batches, sample for sample and pixel for pixel,
/// as without faults; the faults counted are those of the epoch itself, not
/// of opening the dataset.
#[test]
fn a_loader_epoch_with_many_failing_requests_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    must_ds::demo::build(&root, 70).unwrap();
    let rt = util::rt();
    let epoch = |ds: Dataset| -> Vec<must_ds::loader::Batch> {
        util::with_demo_tasks(must_ds::loader::LoaderBuilder::new(ds))
            .batch_size(8)
            .output_size(32, 32)
            .seed(3)
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect()
    };
    let clean = epoch(rt.block_on(Dataset::open(root.to_str().unwrap())).unwrap());
    let (loc, faults) = faulty_with(&root, FaultyStore::new(local(&root), 0.5, 9), 20);
    let ds = rt
        .block_on(Dataset::open_location(loc, None, DatasetOptions::default()))
        .unwrap();
    let at_open = faults.injected.load(Ordering::Relaxed);
    let flaky = epoch(ds);
    let in_epoch = faults.injected.load(Ordering::Relaxed) - at_open;
    eprintln!("{in_epoch} faults injected during the epoch, {at_open} while opening");
    assert!(
        in_epoch >= 10,
        "only {in_epoch} faults were injected during the epoch ({at_open} while opening)"
    );
    assert_eq!(clean.len(), 70 / 8);
    assert_eq!(clean, flaky);
}

/// Performs every create-if-absent put under `prefix`, then loses its answer
/// the first time (per path): the write landed, the writer sees a failure.
/// With `fail_before`, the first attempt fails before writing instead.
#[derive(Debug)]
struct LosesFirstAnswer {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    fail_before: bool,
    seen: Mutex<BTreeSet<String>>,
    /// Create-if-absent puts under the prefix: (path, attempts, answers lost).
    puts: AtomicU64,
    lost: AtomicU64,
}

impl LosesFirstAnswer {
    fn new(inner: Arc<dyn ObjectStore>, prefix: &str, fail_before: bool) -> Self {
        Self {
            inner,
            prefix: prefix.to_owned(),
            fail_before,
            seen: Mutex::default(),
            puts: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Display for LosesFirstAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LosesFirstAnswer({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for LosesFirstAnswer {
    async fn put_opts(
        &self,
        location: &ObjPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let watched = matches!(opts.mode, PutMode::Create)
            && location.as_ref().contains(self.prefix.as_str());
        if !watched {
            return self.inner.put_opts(location, payload, opts).await;
        }
        self.puts.fetch_add(1, Ordering::Relaxed);
        let first = self.seen.lock().unwrap().insert(location.to_string());
        let lose = || object_store::Error::Generic {
            store: "loses-first-answer",
            source: format!("connection reset after {location}").into(),
        };
        if first && self.fail_before {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return Err(lose());
        }
        let r = self.inner.put_opts(location, payload, opts).await?;
        if first {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return Err(lose());
        }
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjPath>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&ObjPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&ObjPath>,
        offset: &ObjPath,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjPath,
        to: &ObjPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &ObjPath,
        to: &ObjPath,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

fn create() -> PutOptions {
    PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    }
}

/// The lost-answer path of create-if-absent: the write lands, its answer is
/// lost, the retry finds an object and compares its bytes: the same bytes
/// are success, other bytes (another writer's, after a failure before our
/// write) are `AlreadyExists`.
#[test]
fn a_create_whose_answer_was_lost_is_found_by_its_retry() {
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let policy = RetryPolicy {
        attempts: 3,
        first_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
    };
    let lossy = Arc::new(LosesFirstAnswer::new(local(dir.path()), "x/", false));
    let store = RetryStore::new(lossy.clone(), policy);
    let path = ObjPath::from("x/commit.json");
    let ours = PutPayload::from(b"our commit".to_vec());
    rt.block_on(store.put_opts(&path, ours, create()))
        .expect("the retry finds our own write: success, not AlreadyExists");
    assert_eq!(
        (
            lossy.puts.load(Ordering::Relaxed),
            lossy.lost.load(Ordering::Relaxed)
        ),
        (2, 1),
        "one answer lost, one retry"
    );
    assert_eq!(
        std::fs::read(dir.path().join("x/commit.json")).unwrap(),
        b"our commit"
    );

    // Another writer's object found by a retry is a lost race.
    let failing = Arc::new(LosesFirstAnswer::new(local(dir.path()), "y/", true));
    std::fs::create_dir_all(dir.path().join("y")).unwrap();
    std::fs::write(dir.path().join("y/commit.json"), b"their commit").unwrap();
    let store = RetryStore::new(failing.clone(), policy);
    let err = rt
        .block_on(store.put_opts(
            &ObjPath::from("y/commit.json"),
            PutPayload::from(b"our commit".to_vec()),
            create(),
        ))
        .expect_err("another writer's bytes are not ours");
    assert!(
        matches!(err, object_store::Error::AlreadyExists { .. }),
        "{err}"
    );
    assert_eq!(failing.puts.load(Ordering::Relaxed), 2);
    assert_eq!(
        std::fs::read(dir.path().join("y/commit.json")).unwrap(),
        b"their commit"
    );
    // On a first attempt, AlreadyExists is another writer's: no comparison.
    let plain = RetryStore::new(local(dir.path()), policy);
    let err = rt
        .block_on(plain.put_opts(
            &ObjPath::from("x/commit.json"),
            PutPayload::from(b"our commit".to_vec()),
            create(),
        ))
        .unwrap_err();
    assert!(matches!(err, object_store::Error::AlreadyExists { .. }));
}

/// Commits whose answers are all lost once: every commit lands exactly once
/// (no duplicate at the next version, no spurious conflict).
#[test]
fn commits_whose_answers_are_lost_land_exactly_once() {
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let lossy = Arc::new(LosesFirstAnswer::new(
        local(dir.path()),
        "_must/log/",
        false,
    ));
    let policy = RetryPolicy {
        attempts: 4,
        first_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
    };
    let loc = Location {
        store: Arc::new(RetryStore::new(lossy.clone(), policy)),
        root: Default::default(),
        url: dir.path().display().to_string(),
    };
    let mut ds = rt
        .block_on(Dataset::init_location(
            loc.clone(),
            Default::default(),
            DatasetOptions::default().with_checkpoint_interval(0),
        ))
        .unwrap();
    rt.block_on(ds.define_task(TaskDef::from_json(TASK).unwrap()))
        .unwrap();
    let mut io = IngestOptions::new("lossy");
    io.workers = 1;
    io.shard.shard_rows = 4;
    ingest(rt.handle(), &ds, util::inputs(10), &io, None).unwrap();
    rt.block_on(ds.refresh()).unwrap();
    for shard in ds.snapshot().images.keys().copied().collect::<Vec<_>>() {
        let w = rt
            .block_on(LabelWriter::for_shard(&ds, "cls", shard))
            .unwrap();
        rt.block_on(ds.add_label_file("cls", shard, w.finish().unwrap(), false))
            .unwrap();
    }
    let ds = rt
        .block_on(Dataset::open(dir.path().to_str().unwrap()))
        .unwrap();
    // init, define, 3 shards, 3 label files.
    assert_eq!(ds.version(), 7, "a commit landed twice or not at all");
    let lost = lossy.lost.load(Ordering::Relaxed);
    assert_eq!(lost, 8, "every commit's answer was lost once");
    let ops: Vec<String> = rt
        .block_on(ds.history())
        .unwrap()
        .iter()
        .map(|c| c.operation.clone())
        .collect();
    assert_eq!(
        ops,
        [
            "init",
            "define-task",
            "ingest",
            "ingest",
            "ingest",
            "add-labels",
            "add-labels",
            "add-labels"
        ]
    );
    assert_eq!(ds.snapshot().images.len(), 3);
    assert_eq!(ds.snapshot().labels.len(), 3);
}
