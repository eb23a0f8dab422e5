//! Labeling on the schedulers people already run. The commands in
//! `deploy/slurm/label.sbatch` and `deploy/k8s/label-job.yaml` are run as
//! the files give them, with the environment Slurm and Kubernetes set for
//! an array of 3 (the Kubernetes one on S3, credentials from the Job's
//! Secret references). One index is killed after its first commit and
//! started again, as both schedulers do with a failed index: every image
//! shard ends labeled exactly once, and the restarted index resumes with
//! what is left. The `tch` binary starts without `LD_LIBRARY_PATH`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use must_ds::format::Action;
use must_ds::ingest::{ingest, IngestOptions};
use must_ds::Dataset;

use crate::util;

const TASK: &str = "t-seg";
const SHARDS: u64 = 24;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// 24 image shards of 10 real photos, and the segmentation task of the
/// test teachers, at `url` (a folder or s3://).
fn corpus(url: &str, seg: &str) {
    let rt = util::rt();
    let ds = rt.block_on(Dataset::init(url, Default::default())).unwrap();
    let mut opts = IngestOptions::new("test");
    opts.workers = 2;
    opts.shard.shard_rows = 10;
    opts.shard.row_group_rows = 5;
    ingest(
        rt.handle(),
        &ds,
        util::inputs(SHARDS as usize * 10),
        &opts,
        None,
    )
    .unwrap();
    let o = util::must(&[
        "task",
        "define",
        url,
        "--name",
        TASK,
        "--kind",
        "segmentation",
        "--num-classes",
        "3",
        "--model",
        seg,
        "--param",
        "input_size=32",
    ]);
    assert!(o.status.success(), "{}", util::stderr(&o));
}

/// Every commit's label actions for the task, by shard; and the removes.
fn label_commits(url: &str) -> (BTreeMap<u64, usize>, usize) {
    let rt = util::rt();
    let ds = rt.block_on(Dataset::open(url)).unwrap();
    let (store, root) = ds.store();
    let versions: Vec<u64> = (0..=ds.version()).collect();
    let commits = rt
        .block_on(must_ds::store::log::read_commits(store, root, &versions))
        .unwrap();
    let mut adds = BTreeMap::new();
    let mut removes = 0;
    for c in commits {
        for a in c.actions {
            match a {
                Action::AddLabels(l) if l.task == TASK => *adds.entry(l.shard).or_default() += 1,
                Action::Remove(_) => removes += 1,
                _ => {}
            }
        }
    }
    (adds, removes)
}

/// Runs an array of 3 with `spawn(index)`: index 1 is killed once it has
/// committed a shard of its share and started again. Returns the restarted
/// index's JSON report and the shards labeled when it was killed.
fn array_of_3_with_a_restart(
    url: &str,
    spawn: impl Fn(u64) -> Child,
) -> (serde_json::Value, Vec<u64>) {
    let rt = util::rt();
    let mut kids: Vec<Child> = (0..3).map(&spawn).collect();
    let t0 = Instant::now();
    let killed_at = loop {
        let ds = rt.block_on(Dataset::open(url)).unwrap();
        let done: Vec<u64> = ds
            .snapshot()
            .labels
            .keys()
            .filter(|k| k.0 == TASK)
            .map(|k| k.1)
            .collect();
        if done.iter().any(|s| s % 3 == 1) {
            assert!(
                kids[1].try_wait().unwrap().is_none(),
                "index 1 finished before it could be killed"
            );
            kids[1].kill().unwrap();
            kids[1].wait().unwrap();
            break done;
        }
        if let Some(st) = kids[1].try_wait().unwrap() {
            let out = kids.swap_remove(1).wait_with_output().unwrap();
            panic!(
                "index 1 ended ({st}) before its first commit: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no commit by index 1"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        (killed_at.len() as u64) < SHARDS,
        "the kill came after the whole job"
    );
    let after_kill: Vec<u64> = rt
        .block_on(Dataset::open(url))
        .unwrap()
        .snapshot()
        .labels
        .keys()
        .filter(|k| k.0 == TASK)
        .map(|k| k.1)
        .collect();
    // The scheduler starts the index again, with the same environment.
    kids[1] = spawn(1);
    let mut reports = vec![];
    for (i, k) in kids.into_iter().enumerate() {
        let o = k.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "index {i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let last = String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned();
        reports.push(serde_json::from_str::<serde_json::Value>(&last).unwrap());
    }
    // Each shard committed once, nothing replaced.
    let (adds, removes) = label_commits(url);
    assert_eq!(
        adds.keys().copied().collect::<Vec<_>>(),
        (0..SHARDS).collect::<Vec<_>>()
    );
    assert!(adds.values().all(|&n| n == 1), "{adds:?}");
    assert_eq!(removes, 0);
    // The reports agree with the log: what each committed is its own.
    // What index 1 committed between the snapshot above and the kill is in
    // no report: read the log as the kill left it (the restart comes later).
    let mut committed: Vec<u64> = after_kill;
    for r in &reports {
        let ids = |k: &str| -> Vec<u64> {
            r[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect()
        };
        assert_eq!(r["worker"]["count"], 3, "{r}");
        committed.extend(ids("labeled"));
        for s in ids("stolen") {
            assert_ne!(s % 3, r["worker"]["index"].as_u64().unwrap(), "{r}");
        }
    }
    committed.sort_unstable();
    committed.dedup();
    assert_eq!(committed, (0..SHARDS).collect::<Vec<_>>());
    let restarted = reports.swap_remove(1);
    assert_eq!(restarted["worker"]["index"], 1);
    let o = util::must(&["validate", url]);
    assert!(o.status.success(), "{}", util::stderr(&o));
    (restarted, killed_at)
}

fn ids(v: &serde_json::Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// What the restarted index did: the shards of its share committed before
/// the kill were skipped, and it labeled or skipped the rest of its share.
fn resumed(restarted: &serde_json::Value, killed_at: &[u64]) {
    let skipped = ids(&restarted["skipped"]);
    let labeled = ids(&restarted["labeled"]);
    let lost = ids(&restarted["lost"]);
    for s in killed_at.iter().filter(|s| *s % 3 == 1) {
        assert!(
            skipped.contains(s),
            "{s} labeled before the kill: {restarted}"
        );
        assert!(!labeled.contains(s), "{restarted}");
    }
    for s in (0..SHARDS).filter(|s| s % 3 == 1) {
        assert!(
            skipped.contains(&s) || labeled.contains(&s) || lost.contains(&s),
            "shard {s} of its share: {restarted}"
        );
    }
}

#[test]
fn a_slurm_array_labels_every_shard_once_through_a_restart() {
    if util::python_with(crate::teacher::TEACHERS).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let models = crate::teacher::teachers(dir.path());
    let seg = models.join("seg.pt");
    let seg = seg.to_str().unwrap();
    let root = dir.path().join("corpus");
    let url = root.to_str().unwrap();
    corpus(url, seg);
    let script = repo().join("deploy/slurm/label.sbatch");
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("#SBATCH --array="), "a job array");
    assert!(text.contains("#SBATCH --requeue"), "requeued on failure");
    // As `sbatch --array=1-3 label.sbatch ROOT TASK MODEL` runs it: ids 1..3.
    let spawn = |i: u64| -> Child {
        Command::new("bash")
            .arg(&script)
            .args([url, TASK, seg])
            .env("MUST_DS", util::bin())
            .env("MUST_DEVICE", "cpu")
            .env("SLURM_JOB_ID", format!("{}", 700 + i))
            .env("SLURM_ARRAY_JOB_ID", "700")
            .env("SLURM_ARRAY_TASK_ID", (i + 1).to_string())
            .env("SLURM_ARRAY_TASK_MIN", "1")
            .env("SLURM_ARRAY_TASK_MAX", "3")
            .env("SLURM_ARRAY_TASK_STEP", "1")
            .env("SLURM_ARRAY_TASK_COUNT", "3")
            .env("SLURM_CPUS_PER_TASK", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (restarted, killed_at) = array_of_3_with_a_restart(url, spawn);
    assert_eq!(restarted["worker"]["source"], "SLURM_ARRAY_TASK_ID");
    resumed(&restarted, &killed_at);
    // No orphan beyond what the kill may have left (a file uploaded but
    // not committed); a lost race deletes its own file.
    let files = util::list_dir(&root.join("labels").join(TASK)).len();
    assert!(files <= SHARDS as usize + 1, "{files} label files");
    // A rerun of the whole array labels nothing.
    let again = spawn(0).wait_with_output().unwrap();
    assert!(again.status.success());
    let r: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(ids(&r["labeled"]), Vec::<u64>::new());
}

/// The Job's manifest as JSON (PyYAML).
fn manifest(path: &Path) -> serde_json::Value {
    let code = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
    let out = util::run_python(&["-c", code, path.to_str().unwrap()]);
    serde_json::from_str(&out).unwrap()
}

/// Kubernetes' `$(VAR)` expansion of a command argument (`$$` escapes).
fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$$") {
            out.push('$');
            rest = t;
        } else if let Some(end) = tail.strip_prefix("$(").and_then(|t| t.find(')')) {
            let name = &tail[2..2 + end];
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&tail[..3 + end]),
            }
            rest = &tail[3 + end..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn a_kubernetes_indexed_job_on_s3_labels_every_shard_once_through_a_restart() {
    if util::python_with(&["torch", "yaml", "moto.server"]).is_none() {
        return;
    }
    let m = crate::s3::moto();
    let url = format!("{}/k8s-label", crate::s3::bucket("sched"));
    let dir = tempfile::tempdir().unwrap();
    let models = crate::teacher::teachers(dir.path());
    let seg = models.join("seg.pt");
    let seg = seg.to_str().unwrap();
    corpus(&url, seg);

    let job = manifest(&repo().join("deploy/k8s/label-job.yaml"));
    assert_eq!(job["kind"], "Job");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert!(
        spec["backoffLimitPerIndex"].as_u64().unwrap() > 0,
        "a retry limit"
    );
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
    let container = &spec["template"]["spec"]["containers"][0];
    assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"], 1);
    let mut argv: Vec<String> = container["command"]
        .as_array()
        .unwrap()
        .iter()
        .chain(container["args"].as_array().unwrap())
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(argv[0], "must-ds");
    // --of must be the Job's completions (Kubernetes does not pass it).
    let of = argv.iter().position(|a| a == "--of").expect("--of");
    assert_eq!(
        argv[of + 1],
        spec["completions"].as_u64().unwrap().to_string()
    );
    assert_eq!(spec["parallelism"], spec["completions"]);

    // The cluster's side: the Secret, and the user's values for the
    // placeholders (bucket, model path). The test array has 3 indexes.
    let secret = BTreeMap::from([
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", m.port)),
    ]);
    let mut env = BTreeMap::new();
    let mut secret_refs = 0;
    for e in container["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_owned();
        let value = if let Some(v) = e["value"].as_str() {
            expand(v, &env)
        } else {
            let r = &e["valueFrom"]["secretKeyRef"];
            assert_eq!(r["name"], "must-ds-s3");
            secret_refs += 1;
            match secret.get(r["key"].as_str().unwrap()) {
                Some(v) => v.clone(),
                None if r["optional"] == true => continue,
                None => panic!("secret key {r} missing"),
            }
        };
        env.insert(name, value);
    }
    assert!(secret_refs >= 2, "S3 credentials come from the Secret");
    env.insert("MUST_ROOT".into(), url.clone());
    env.insert("MUST_MODEL".into(), seg.to_owned());
    env.insert("MUST_TASK".into(), TASK.to_owned());
    argv = argv.iter().map(|a| expand(a, &env)).collect();
    argv[of + 1] = "3".into();
    let dev = argv.iter().position(|a| a == "--device").expect("--device");
    argv[dev + 1] = "cpu".into();
    let spawn = |i: u64| -> Child {
        let mut c = Command::new(util::bin());
        c.args(&argv[1..]);
        // A pod's environment is the manifest's, not this process's (whose
        // AWS variables point at the test server too).
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        c.envs(&env)
            .env("AWS_ALLOW_HTTP", "true")
            .env("JOB_COMPLETION_INDEX", i.to_string())
            .env("HOSTNAME", format!("must-label-{i}-x7k2p"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (restarted, killed_at) = array_of_3_with_a_restart(&url, spawn);
    assert_eq!(restarted["worker"]["source"], "JOB_COMPLETION_INDEX");
    resumed(&restarted, &killed_at);
}

#[test]
fn worker_auto_without_a_scheduler_says_what_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("d");
    let url = root.to_str().unwrap();
    util::dataset_with_images(&util::rt(), &root, 4, 4, 4);
    let mut c = Command::new(util::bin());
    c.args([
        "label", url, "--task", "x", "--model", "m.pt", "--worker", "auto",
    ]);
    for (k, _) in std::env::vars() {
        if must_ds::teacher::share::SCHEDULERS
            .iter()
            .any(|(_, v)| *v == k)
        {
            c.env_remove(k);
        }
    }
    let o = c.output().unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("SLURM_ARRAY_TASK_ID")
            && e.contains("JOB_COMPLETION_INDEX")
            && e.contains("--worker I/N"),
        "{e}"
    );
    let o = util::must(&[
        "label", url, "--task", "x", "--model", "m.pt", "--worker", "0/2", "--of", "2",
    ]);
    assert!(!o.status.success());
    assert!(util::stderr(&o).contains("--of goes with --worker auto"));
}

#[test]
fn the_tch_binary_starts_without_ld_library_path() {
    let o = Command::new(util::bin())
        .args(["label", "--help"])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("--worker"));
}
