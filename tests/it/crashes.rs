//! Writers killed with SIGKILL at moments found by watching the dataset
//! (after the k-th commit, between a data file and its commit): the
//! dataset always opens, no partial file is ever part of it, rerunning the
//! same job finishes it, and vacuum removes exactly the orphans.

use std::collections::BTreeSet;
use std::time::Duration;

use must_ds::Dataset;
use rand::{Rng, SeedableRng};

use crate::util;

const IMAGES: usize = 40;

#[test]
fn killed_writers_lose_nothing_and_leave_only_orphans() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("photos");
    std::fs::create_dir_all(&src).unwrap();
    let photos = util::photos();
    for i in 0..IMAGES {
        std::fs::write(
            src.join(format!("img{i:03}.jpg")),
            &photos[i % photos.len()].1,
        )
        .unwrap();
    }
    let rt = util::rt();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let (mut killed, mut orphans_seen, mut partial) = (0, 0, 0);
    for round in 0..12 {
        let root = work.path().join(format!("ds{round}"));
        let root_s = root.to_str().unwrap();
        assert!(util::must(&["init", root_s]).status.success());
        let spawn = || {
            std::process::Command::new(util::bin())
                .args([
                    "ingest",
                    root_s,
                    "--from",
                    src.to_str().unwrap(),
                    "--source",
                    "crash",
                    "--skip-existing",
                    "--shard-rows",
                    "2",
                    "--workers",
                    "2",
                ])
                // Checkpoints every 2 commits, so that kills land during them too.
                .env("MUST_CHECKPOINT_INTERVAL", "2")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        // Kills are aimed by watching the dataset, not the clock: even rounds
        // after the k-th commit (k random), odd rounds as soon as an image
        // shard is on disk that no commit references yet.
        let kill_at = if round % 2 == 0 {
            Kill::AfterCommit(rng.random_range(1..IMAGES / 2))
        } else {
            Kill::BeforeCommit
        };
        let mut child = spawn();
        let landed = loop {
            if child.try_wait().unwrap().is_some() {
                break false;
            }
            let commits = count(&root.join("_must/log"), ".json").saturating_sub(1); // after init
            let shards = count(&root.join("images"), ".parquet");
            let now = match kill_at {
                Kill::AfterCommit(k) => commits >= k,
                Kill::BeforeCommit => shards > commits,
            };
            if now {
                let _ = child.kill(); // SIGKILL
                break true;
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        let _ = child.wait();
        killed += landed as usize;
        // It always opens, and everything it references is whole.
        let ds = rt
            .block_on(Dataset::open(root_s))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let v = util::must(&["validate", root_s, "--no-decode"]);
        assert!(v.status.success(), "round {round}: {}", util::stdout(&v));
        let ids = |ds: &Dataset| -> Vec<String> {
            ds.snapshot()
                .images
                .keys()
                .flat_map(|s| rt.block_on(ds.read_image_ids(*s)).unwrap())
                .collect()
        };
        let before = ids(&ds);
        if landed && !before.is_empty() && before.len() < IMAGES {
            partial += 1;
        }
        assert_eq!(
            before.iter().collect::<BTreeSet<_>>().len(),
            before.len(),
            "round {round}: no image twice"
        );
        // Rerunning the same job finishes it: every image exactly once.
        assert!(spawn().wait().unwrap().success(), "round {round}");
        let ds = rt.block_on(Dataset::open(root_s)).unwrap();
        let after = ids(&ds);
        assert_eq!(
            (after.len(), after.iter().collect::<BTreeSet<_>>().len()),
            (IMAGES, IMAGES),
            "round {round}"
        );
        // Vacuum removes exactly the files no commit references.
        let referenced: BTreeSet<String> = ds
            .snapshot()
            .images
            .values()
            .map(|a| a.path.clone())
            .collect();
        let on_disk = || -> BTreeSet<String> {
            util::list_dir(&root.join("images"))
                .iter()
                .map(|p| format!("images/{}", p.file_name().unwrap().to_string_lossy()))
                .collect()
        };
        let orphans: BTreeSet<String> = on_disk().difference(&referenced).cloned().collect();
        orphans_seen += orphans.len();
        let out = util::must(&["vacuum", root_s, "--older-than", "0s", "--json"]);
        assert!(out.status.success(), "{}", util::stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let deleted: BTreeSet<String> = report["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(deleted, orphans, "round {round}");
        assert_eq!(on_disk(), referenced, "round {round}");
        assert!(util::must(&["validate", root_s]).status.success());
    }
    eprintln!("{killed} of 12 runs killed, {orphans_seen} orphans, {partial} partial datasets");
    // The kills did land inside the job, between data files and commits.
    assert!(
        killed >= 8,
        "only {killed} of 12 runs were killed ({orphans_seen} orphans)"
    );
    assert!(orphans_seen > 0, "no kill left an orphan data file");
    assert!(
        partial > 0,
        "no kill left a partial dataset ({killed} killed)"
    );
}

#[derive(Clone, Copy)]
enum Kill {
    /// Once this many commits follow `init`.
    AfterCommit(usize),
    /// Once an image shard is on disk that no commit references yet.
    BeforeCommit,
}

/// Whole files in `dir` whose names end with `ext` (a store's temporary
/// files, `name#n`, are not counted); 0 while `dir` is not created yet. Any
/// other error fails the test naming the path.
fn count(dir: &std::path::Path, ext: &str) -> usize {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    rd.map(|e| e.unwrap_or_else(|e| panic!("{}: {e}", dir.display())))
        .filter(|e| e.file_name().to_string_lossy().ends_with(ext))
        .count()
}
