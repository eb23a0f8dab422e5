//! Metadata at JFT-300M scale, measured: a dataset of 30,000 image shards
//! of 10,000 images (300 M images) labeled for 4 tasks, 150,000 data files
//! in all, as a log and a checkpoint on disk (see `corpus.rs`: every
//! shard's data file is served by one small real template shard). Measures
//! the time and memory to open it, the time to build one rank's plan (world
//! size 256), and the requests a rank makes before its first batch.
//!
//!     cargo run --release --example scale -- [--dir DIR] [--shards 30000]
//!         [--rows 10000] [--groups 10] [--world 256] [--per-commit 100]
//!
//! Prints a table, then one JSON line.

#[path = "corpus.rs"]
mod corpus;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use must_ds::loader::LoaderBuilder;
use must_ds::store::counting::CountingStore;
use must_ds::store::{checkpoint, layout, Location};
use must_ds::{Dataset, DatasetOptions};

/// The system allocator, counting live heap bytes and their peak, so that
/// what opening and planning hold is measured exactly (RSS would show what
/// the allocator kept from earlier steps).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            if new >= l.size() {
                let now = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Heap MiB live now, and the peak since the last call (reset to now).
fn heap() -> (f64, f64) {
    let live = LIVE.load(Ordering::Relaxed);
    let peak = PEAK.swap(live, Ordering::Relaxed);
    (live as f64 / 1048576.0, peak as f64 / 1048576.0)
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut dir, mut shards, mut rows, mut groups, mut world, mut per_commit) = (
        std::env::temp_dir().join("must-scale"),
        30_000u64,
        10_000usize,
        10usize,
        256usize,
        100u64,
    );
    while let Some(a) = args.next() {
        let mut v = || args.next().expect("a value after the flag");
        match a.as_str() {
            "--dir" => dir = v().into(),
            "--shards" => shards = v().parse().expect("--shards N"),
            "--rows" => rows = v().parse().expect("--rows N"),
            "--groups" => groups = v().parse().expect("--groups N"),
            "--world" => world = v().parse().expect("--world N"),
            "--per-commit" => per_commit = v().parse().expect("--per-commit N"),
            other => panic!("unknown argument {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let tpl = corpus::template(&rt, &dir.join("template"), rows, groups);
    let root = dir.join("corpus");
    let t = Instant::now();
    let last = corpus::write_log(&root, &tpl, shards, per_commit);
    let log_s = t.elapsed().as_secs_f64();
    let log_bytes = dir_bytes(&root.join(layout::LOG_DIR));
    let files = shards * (1 + tpl.tasks.len() as u64);
    println!(
        "{} images in {shards} image shards of {rows} rows ({groups} row groups), {} tasks: {files} data files, {} commits ({:.1} MiB of log, written in {log_s:.1} s)",
        shards * rows as u64,
        tpl.tasks.len(),
        last + 1,
        log_bytes as f64 / 1048576.0
    );

    let counting = CountingStore::new(Arc::new(corpus::Redirect::new(&root, &tpl)));
    let url = root.to_str().expect("utf-8").to_owned();
    let loc = || Location {
        store: Arc::new(counting.clone()),
        root: Default::default(),
        url: url.clone(),
    };
    let open = || {
        rt.block_on(Dataset::open_location(
            loc(),
            None,
            DatasetOptions::default(),
        ))
        .expect("open")
    };

    // Replaying the whole log (what the first reader after a writer without
    // checkpoints would pay), then the checkpoint.
    let t = Instant::now();
    let ds = open();
    let replay_s = t.elapsed().as_secs_f64();
    let replay_requests = counting.total();
    let t = Instant::now();
    rt.block_on(checkpoint::write(ds.store().0, ds.store().1, ds.snapshot()))
        .expect("checkpoint");
    let checkpoint_s = t.elapsed().as_secs_f64();
    let checkpoint_bytes = std::fs::metadata(root.join(layout::checkpoint_file(ds.version())))
        .map(|m| m.len())
        .unwrap_or(0);
    drop(ds);

    // Opening from the checkpoint, as every rank does.
    counting.reset();
    let (heap0, _) = heap();
    let t = Instant::now();
    let ds = open();
    let open_s = t.elapsed().as_secs_f64();
    let open_requests = counting.counts();
    let (heap1, open_peak) = heap();
    let snapshot_mib = heap1 - heap0;
    let open_peak_mib = open_peak - heap0;
    assert_eq!(ds.snapshot().images.len() as u64, shards);
    assert_eq!(
        ds.snapshot().labels.len() as u64,
        shards * tpl.tasks.len() as u64
    );
    println!(
        "replay of the log: {replay_s:.2} s, {replay_requests} requests; checkpoint: {:.1} MiB, written in {checkpoint_s:.2} s",
        checkpoint_bytes as f64 / 1048576.0
    );
    println!(
        "open from the checkpoint: {open_s:.2} s, {} requests {open_requests:?}; the opened dataset holds {snapshot_mib:.0} MiB of heap (peak {open_peak_mib:.0} MiB while opening)",
        open_requests.values().sum::<u64>()
    );
    drop(ds);

    // Ranks of a world: each opens the dataset, plans, and takes a batch;
    // with the loader's default prefetch budget (64 MiB, which holds ~80 of
    // the template's small row groups), and with the least budget (1 MiB),
    // which holds what real ~100 MB row groups would: the k = 4 of the
    // shuffle buffer and one more.
    let mut ranks = vec![];
    for (budget, label) in [
        (64u64 << 20, "default prefetch"),
        (1 << 20, "1 MiB prefetch"),
    ] {
        for rank in [0, world / 2, world - 1] {
            counting.reset();
            let (heap0, _) = heap();
            let t = Instant::now();
            let ds = open();
            let open_s = t.elapsed().as_secs_f64();
            let opened = counting.total();
            let (heap1, _) = heap();
            let t = Instant::now();
            let mut b = LoaderBuilder::new(ds)
                .batch_size(32)
                .output_size(32, 24)
                .workers(1)
                .prefetch_bytes(budget)
                .rank(rank, world);
            for task in ["cls", "det", "seg", "depth"] {
                b = b.task(task, false);
            }
            let mut loader = b.build().expect("loader");
            let plan_s = t.elapsed().as_secs_f64();
            let (heap2, plan_peak) = heap();
            let batches = loader.batches_per_epoch();
            let t = Instant::now();
            let batch = loader.next().expect("a batch").expect("a good batch");
            let first_s = t.elapsed().as_secs_f64();
            let counts = counting.counts();
            let total: u64 = counts.values().sum();
            println!(
                "rank {rank} of {world}, {label}: open {open_s:.2} s ({opened} requests), plan {plan_s:.3} s ({batches} batches an epoch; the plan holds {:.0} MiB, peak {:.0} MiB), first batch {first_s:.3} s; {total} requests before it {counts:?}",
                heap2 - heap1,
                plan_peak - heap1,
            );
            assert_eq!(batch.real(), 32);
            ranks.push(serde_json::json!({
                "rank": rank, "prefetch_bytes": budget, "open_s": open_s, "plan_s": plan_s,
                "first_batch_s": first_s, "requests_before_first_batch": total,
                "requests": counts, "batches_per_epoch": batches,
                "dataset_heap_mib": heap1 - heap0, "plan_heap_mib": heap2 - heap1,
            }));
            drop(batch);
            drop(loader);
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "images": shards * rows as u64, "shards": shards, "files": files,
            "commits": last + 1, "log_bytes": log_bytes, "replay_s": replay_s,
            "replay_requests": replay_requests, "checkpoint_bytes": checkpoint_bytes,
            "checkpoint_s": checkpoint_s, "open_s": open_s,
            "open_requests": open_requests.values().sum::<u64>(),
            "dataset_heap_mib": snapshot_mib, "open_peak_heap_mib": open_peak_mib, "world": world, "ranks": ranks,
        })
    );
}
