//! Many writers at once on one local dataset: threads and OS processes.

use std::collections::BTreeSet;

use must_ds::format::{Action, Commit};
use must_ds::write::{ImageShardOptions, ImageShardWriter};
use must_ds::Dataset;

use crate::util;

fn all_commits(root: &std::path::Path) -> Vec<Commit> {
    let files = util::list_dir(&root.join("_must/log"));
    files
        .iter()
        .map(|f| Commit::from_slice(&util::read(f), &f.display().to_string()).unwrap())
        .collect()
}

fn shard_ids(commits: &[Commit]) -> Vec<u64> {
    commits
        .iter()
        .flat_map(|c| c.actions.iter())
        .filter_map(|a| match a {
            Action::AddImages(a) => Some(a.shard),
            _ => None,
        })
        .collect()
}

#[test]
fn threads_committing_at_once_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap().to_owned();
    let rt = util::rt();
    rt.block_on(Dataset::init(&url, Default::default()))
        .unwrap();
    let photos = util::photos();
    const THREADS: usize = 6;
    const EACH: usize = 5;
    let reported: Vec<(String, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (url, photos) = (url.clone(), photos.clone());
                s.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    let mut ds = rt.block_on(Dataset::open(&url)).unwrap();
                    (0..EACH)
                        .map(|i| {
                            let mut w =
                                ImageShardWriter::new(ImageShardOptions::default()).unwrap();
                            let id = format!("t{t}-{i}");
                            w.add_image(&id, "threads", &photos[(t + i) % photos.len()].1)
                                .unwrap();
                            let a = rt
                                .block_on(ds.add_image_shard(w.finish().unwrap()))
                                .unwrap();
                            (a.path, a.shard)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let commits = all_commits(dir.path());
    assert_eq!(
        commits.len(),
        1 + THREADS * EACH,
        "every commit is in the log"
    );
    for (i, c) in commits.iter().enumerate() {
        assert_eq!(c.version, i as u64);
    }
    let ids = shard_ids(&commits);
    assert_eq!(
        ids.iter().copied().collect::<BTreeSet<_>>().len(),
        THREADS * EACH,
        "unique shard ids"
    );
    // What each writer was told is what the log says: nothing overwritten.
    let ds = rt.block_on(Dataset::open(&url)).unwrap();
    for (path, shard) in reported {
        assert_eq!(ds.snapshot().images[&shard].path, path);
    }
}

#[test]
fn processes_ingesting_at_once_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let root_s = root.to_str().unwrap();
    assert!(util::must(&["init", root_s]).status.success());
    const PROCS: usize = 4;
    let mut children = vec![];
    for p in 0..PROCS {
        let src = dir.path().join(format!("in{p}"));
        std::fs::create_dir_all(&src).unwrap();
        for (name, bytes) in util::photos().iter().take(6) {
            std::fs::write(src.join(format!("{name}.jpg")), bytes).unwrap();
        }
        // One image per shard: 6 commits per process, racing the others.
        children.push(
            std::process::Command::new(util::bin())
                .args([
                    "ingest",
                    root_s,
                    "--from",
                    src.to_str().unwrap(),
                    "--source",
                    &format!("proc{p}"),
                    "--shard-rows",
                    "1",
                    "--workers",
                    "2",
                ])
                .output_async(),
        );
    }
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let commits = all_commits(&root);
    assert_eq!(commits.len(), 1 + PROCS * 6);
    let ids = shard_ids(&commits);
    assert_eq!(
        ids.iter().copied().collect::<BTreeSet<_>>(),
        (0..(PROCS * 6) as u64).collect()
    );
    let ds = util::rt().block_on(Dataset::open(root_s)).unwrap();
    for p in 0..PROCS {
        let n: u64 = ds
            .snapshot()
            .images
            .values()
            .filter_map(|a| a.sources.get(&format!("proc{p}")))
            .sum();
        assert_eq!(n, 6, "proc{p}");
    }
    // Every data file on disk is referenced: no writer lost its commit.
    let on_disk = std::fs::read_dir(root.join("images")).unwrap().count();
    assert_eq!(on_disk, PROCS * 6);
}

trait SpawnOutput {
    fn output_async(&mut self) -> std::process::Child;
}

impl SpawnOutput for std::process::Command {
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}
