//! Writers killed with SIGKILL at random moments (while writing a data
//! file, between a data file and its commit, during a checkpoint): the
//! dataset always opens, no partial file is ever part of it, rerunning the
//! same job finishes it, and vacuum removes exactly the orphans.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

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
    let mut full = Duration::from_secs(3600);
    let (mut killed, mut orphans_seen) = (0, 0);
    for round in 0..12 {
        let root = work.path().join(format!("ds{round}"));
        let root_s = root.to_str().unwrap();
        assert!(util::must(&["init", root_s]).status.success());
        let job = |kill_after: Option<Duration>| -> bool {
            let mut child = std::process::Command::new(util::bin())
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
                .unwrap();
            let Some(d) = kill_after else {
                assert!(child.wait().unwrap().success());
                return false;
            };
            let start = Instant::now();
            while start.elapsed() < d {
                if child.try_wait().unwrap().is_some() {
                    return false;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            true
        };
        if round == 0 {
            // An uninterrupted run on a scratch dataset times the job, to aim the kills inside it.
            // The fastest of two runs: the first one also pays for cold caches.
            for _ in 0..2 {
                let t0 = Instant::now();
                job(None);
                full = full.min(t0.elapsed()).max(Duration::from_millis(5));
                std::fs::remove_dir_all(&root).unwrap();
                assert!(util::must(&["init", root_s]).status.success());
            }
        }
        if job(Some(full.mul_f64(rng.random_range(0.05..0.95)))) {
            killed += 1;
        } else {
            // The job ran faster than timed (warm caches): aim the next kills earlier.
            full = full.mul_f64(0.5).max(Duration::from_millis(2));
        }
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
        assert_eq!(
            before.iter().collect::<BTreeSet<_>>().len(),
            before.len(),
            "round {round}: no image twice"
        );
        // Rerunning the same job finishes it: every image exactly once.
        job(None);
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
            std::fs::read_dir(root.join("images"))
                .unwrap()
                .map(|e| format!("images/{}", e.unwrap().file_name().to_string_lossy()))
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
    // The kills did land inside the job (their orphans were vacuumed above).
    assert!(
        killed >= 3,
        "only {killed} of 12 runs were killed ({orphans_seen} orphans)"
    );
}
