//! `must-ds label` with tiny TorchScript teachers made by
//! `tools/fixtures/make_teachers.py`: for each kind the committed labels are
//! the model's outputs after the documented post-processing (computed here
//! independently); shards split between workers and skipped when labeled;
//! a wrong shape, a NaN and a model that throws each fail naming the shard,
//! with nothing committed; a killed run restarted finishes the rest. The
//! probe teachers, whose outputs are known by hand, are in teacher_probes.rs.

use std::path::Path;

use must_ds::codec::{ClassLabel, Label};
use must_ds::teacher::{preprocess, Scratch, TeacherParams};
use must_ds::Dataset;
use tch::{CModule, IValue, Tensor};

use crate::util;

/// The Python modules `teachers` needs: a test that calls it first returns
/// when `util::python_with(TEACHERS)` is None.
pub(crate) const TEACHERS: &[&str] = &["torch"];

/// Writes the test teachers into `dir/models`.
pub(crate) fn teachers(dir: &Path) -> std::path::PathBuf {
    let python = util::python_with(TEACHERS)
        .expect("a test that makes teachers checks util::python_with(TEACHERS) first");
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let o = std::process::Command::new(python)
        .arg(util::fixture_tools().join("make_teachers.py"))
        .arg(&models)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    models
}

pub(crate) fn must_ok(args: &[&str]) -> String {
    let o = util::must(args);
    assert!(o.status.success(), "{args:?}: {}", util::stderr(&o));
    util::stdout(&o)
}

/// The model's output for one image, after the library's preprocessing.
fn forward(model: &Path, p: &TeacherParams, jpeg: &[u8]) -> (IValue, (u32, u32)) {
    let (w, h) = p.size;
    let mut input = vec![0f32; (3 * w * h) as usize];
    let size = preprocess(jpeg, p, &mut Scratch::default(), &mut input).unwrap();
    let m = CModule::load(model).unwrap();
    let x = Tensor::from_slice(&input).view([1, 3, h as i64, w as i64]);
    (m.forward_is(&[IValue::Tensor(x)]).unwrap(), size)
}

fn values(v: &IValue) -> Vec<f32> {
    let IValue::Tensor(t) = v else {
        panic!("not a tensor")
    };
    Vec::try_from(t.to_kind(tch::Kind::Float).flatten(0, -1)).unwrap()
}

#[test]
fn label_runs_teachers_of_every_kind_and_commits_what_they_output() {
    if util::python_with(TEACHERS).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let models = teachers(dir.path());
    let model = |n: &str| models.join(format!("{n}.pt")).to_str().unwrap().to_owned();
    let root = dir.path().join("ds");
    must_ds::demo::build(&root, 140).unwrap(); // shards 0 (96 rows) and 1 (44)
    let r = root.to_str().unwrap();
    let define = |args: &[&str]| {
        let mut a = vec!["task", "define", r];
        a.extend_from_slice(args);
        must_ok(&a);
    };
    define(&[
        "--name",
        "t-cls",
        "--kind",
        "classification",
        "--num-classes",
        "3",
        "--model",
        &model("cls"),
        "--param",
        "input_size=32",
        "--param",
        "top_k=2",
        "--param",
        "temperature=2",
    ]);
    define(&[
        "--name",
        "t-det",
        "--kind",
        "detection",
        "--num-classes",
        "2",
        "--min-score",
        "0.5",
        "--model",
        &model("det"),
        "--param",
        "input_size=[48,32]",
        "--param",
        "resize=letterbox",
    ]);
    define(&[
        "--name",
        "t-seg",
        "--kind",
        "segmentation",
        "--num-classes",
        "3",
        "--model",
        &model("seg"),
        "--param",
        "input_size=32",
        "--param",
        "confidence_ignore_below=0.4",
    ]);
    define(&[
        "--name",
        "t-depth",
        "--kind",
        "depth",
        "--representation",
        "relative",
        "--model",
        &model("depth"),
        "--param",
        "input_size=32",
    ]);

    // Two workers share the classification shards; a rerun finds nothing to do.
    let j = |s: &str| -> serde_json::Value { serde_json::from_str(s.trim()).unwrap() };
    let a = j(&must_ok(&[
        "label",
        r,
        "--task",
        "t-cls",
        "--model",
        &model("cls"),
        "--worker",
        "0/2",
        "--json",
        "--batch",
        "7",
    ]));
    let b = j(&must_ok(&[
        "label",
        r,
        "--task",
        "t-cls",
        "--model",
        &model("cls"),
        "--worker",
        "1/2",
        "--json",
    ]));
    assert_eq!(
        (a["labeled"].clone(), b["labeled"].clone()),
        (serde_json::json!([0]), serde_json::json!([1]))
    );
    assert_eq!(
        a["images"].as_u64().unwrap() + b["images"].as_u64().unwrap(),
        140
    );
    let again = j(&must_ok(&[
        "label",
        r,
        "--task",
        "t-cls",
        "--model",
        &model("cls"),
        "--json",
    ]));
    assert_eq!(
        (again["labeled"].clone(), again["skipped"].clone()),
        (serde_json::json!([]), serde_json::json!([0, 1]))
    );
    for t in ["t-det", "t-seg", "t-depth"] {
        must_ok(&[
            "label",
            r,
            "--task",
            t,
            "--model",
            &model(&t[2..]),
            "--batch",
            "16",
        ]);
    }
    // Another checkpoint than the task records is refused.
    let o = util::must(&["label", r, "--task", "t-cls", "--model", &model("nans")]);
    assert!(
        !o.status.success() && util::stderr(&o).contains("was defined for checkpoint sha256:"),
        "{}",
        util::stderr(&o)
    );

    let rt = util::rt();
    let ds = rt.block_on(Dataset::open(r)).unwrap();
    let snap = ds.snapshot();
    let params = |t: &str| TeacherParams::from_task(&snap.tasks[t]).unwrap();
    let mut checked = 0;
    for shard in [0u64, 1] {
        let rg = rt
            .block_on(ds.read_row_group(shard, 0, &["t-cls", "t-det", "t-seg", "t-depth"], None))
            .unwrap();
        for (i, img) in rg.images.iter().enumerate().take(6) {
            let jpeg = img.image.as_ref().unwrap();
            // Classification: softmax(logits / 2), top 2.
            let (out, _) = forward(Path::new(&model("cls")), &params("t-cls"), jpeg);
            let v = values(&out);
            let e: Vec<f32> = v.iter().map(|x| (x / 2.0).exp()).collect();
            let s: f32 = e.iter().sum();
            let mut idx: Vec<usize> = (0..3).collect();
            idx.sort_by(|&a, &b| e[b].total_cmp(&e[a]));
            let Some(Label::Classification(ClassLabel::TopK { classes, probs })) =
                &rg.labels["t-cls"][i]
            else {
                panic!()
            };
            assert_eq!(
                classes,
                &idx[..2].iter().map(|&k| k as u32).collect::<Vec<_>>()
            );
            for (p, &k) in probs.iter().zip(&idx) {
                assert!((p - e[k] / s).abs() < 1e-5);
            }
            // Detection: letterboxed input boxes back in image pixels, score ≥ 0.5.
            let (out, (w, h)) = forward(Path::new(&model("det")), &params("t-det"), jpeg);
            let IValue::Tuple(parts) = out else { panic!() };
            let (bx, sc, cl) = (values(&parts[0]), values(&parts[1]), values(&parts[2]));
            let s = (48.0 / w as f64).min(32.0 / h as f64);
            let (ox, oy) = ((48.0 - w as f64 * s) / 2.0, (32.0 - h as f64 * s) / 2.0);
            let mut want = vec![];
            for k in 0..3 {
                if sc[k] >= 0.5 {
                    let x = |v: f32| ((v as f64 - ox) / s).clamp(0.0, w as f64) as f32;
                    let y = |v: f32| ((v as f64 - oy) / s).clamp(0.0, h as f64) as f32;
                    want.push((
                        [
                            x(bx[4 * k]),
                            y(bx[4 * k + 1]),
                            x(bx[4 * k + 2]),
                            y(bx[4 * k + 3]),
                        ],
                        cl[k] as u32,
                    ));
                }
            }
            let Some(Label::Detection(d)) = &rg.labels["t-det"][i] else {
                panic!()
            };
            assert_eq!(d.boxes.len(), want.len());
            for (got, (b, c)) in d.boxes.iter().zip(d.classes.iter()).zip(&want) {
                assert_eq!(got.1, c);
                for q in 0..4 {
                    assert!((got.0[q] - b[q]).abs() < 1e-3, "{got:?} vs {b:?}");
                }
            }
            // Segmentation: arg max of 3×8×8 logits, confidence, ignored under 0.4.
            let (out, _) = forward(Path::new(&model("seg")), &params("t-seg"), jpeg);
            let v = values(&out);
            let Some(Label::Segmentation(m)) = &rg.labels["t-seg"][i] else {
                panic!()
            };
            assert_eq!((m.height, m.width), (8, 8));
            let conf = m.confidence.as_ref().unwrap();
            for p in 0..64 {
                let l: Vec<f32> = (0..3).map(|k| v[k * 64 + p]).collect();
                let best = (0..3)
                    .max_by(|&a, &b| l[a].total_cmp(&l[b]).then(b.cmp(&a)))
                    .unwrap();
                let z: f32 = l.iter().map(|x| (x - l[best]).exp()).sum();
                let prob = 1.0 / z;
                assert_eq!(conf[p], (prob * 255.0).round() as u8);
                assert_eq!(m.mask[p] as usize, if prob < 0.4 { 255 } else { best });
            }
            // Depth: 4×4, float16.
            let (out, _) = forward(Path::new(&model("depth")), &params("t-depth"), jpeg);
            let v = values(&out);
            let Some(Label::Depth(d)) = &rg.labels["t-depth"][i] else {
                panic!()
            };
            assert_eq!((d.height, d.width), (4, 4));
            for (a, b) in d.to_f32().iter().zip(&v) {
                assert!((a - b).abs() < 4e-3, "{a} vs {b}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 12);
    // The task records the checkpoint digest and parameters.
    let Some(must_ds::format::Teacher::Model {
        checkpoint, params, ..
    }) = &snap.tasks["t-seg"].teacher
    else {
        panic!()
    };
    assert_eq!(
        checkpoint.as_deref(),
        Some(
            must_ds::teacher::sha256_file(Path::new(&model("seg")))
                .unwrap()
                .as_str()
        )
    );
    assert_eq!(params["confidence_ignore_below"], serde_json::json!(0.4));
}

#[test]
fn broken_teachers_fail_naming_the_shard_and_commit_nothing() {
    if util::python_with(TEACHERS).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let models = teachers(dir.path());
    let root = dir.path().join("ds");
    must_ds::demo::build(&root, 35).unwrap();
    let r = root.to_str().unwrap();
    must_ok(&[
        "task",
        "define",
        r,
        "--name",
        "bad",
        "--kind",
        "classification",
        "--num-classes",
        "3",
        "--teacher",
        "any",
        "--param",
        "input_size=16",
    ]);
    let before = util::tree(&root.join("_must"));
    for (model, says) in [
        ("wrong_shape", "shape [2]"),
        ("nans", "non-finite"),
        ("throws", "this teacher always fails"),
    ] {
        let m = models.join(format!("{model}.pt"));
        let o = util::must(&["label", r, "--task", "bad", "--model", m.to_str().unwrap()]);
        let err = util::stderr(&o);
        assert!(!o.status.success(), "{model}");
        assert!(
            err.contains("image shard 0") && err.contains(says),
            "{model}: {err}"
        );
    }
    assert_eq!(util::tree(&root.join("_must")), before, "nothing committed");
    assert!(
        !root.join("labels/bad").exists() || util::list_dir(&root.join("labels/bad")).is_empty()
    );
}

/// `label` killed with SIGKILL at random moments, then run again, finishes
/// every shard exactly once and leaves a valid dataset.
#[test]
fn a_killed_label_run_restarted_finishes_the_rest() {
    if util::python_with(TEACHERS).is_none() {
        return;
    }
    use rand::{Rng, SeedableRng};
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let models = teachers(dir.path());
    let seg = models.join("seg.pt");
    let seg = seg.to_str().unwrap();
    let template = dir.path().join("template");
    must_ds::demo::build(&template, 210).unwrap(); // 3 shards
    let t = template.to_str().unwrap();
    must_ok(&[
        "task",
        "define",
        t,
        "--name",
        "t-seg",
        "--kind",
        "segmentation",
        "--num-classes",
        "3",
        "--model",
        seg,
        "--param",
        "input_size=64",
    ]);
    let run = |root: &str| {
        std::process::Command::new(util::bin())
            .args([
                "label", root, "--task", "t-seg", "--model", seg, "--batch", "8", "--json",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let copy = |to: &Path| util::copy_dir(&template, to);
    // Time uninterrupted runs: the faster of two (the first pays for cold caches).
    let mut full = std::time::Duration::MAX;
    for k in 0..2 {
        let scratch = dir.path().join(format!("scratch{k}"));
        copy(&scratch);
        let t0 = Instant::now();
        assert!(run(scratch.to_str().unwrap()).wait().unwrap().success());
        full = full.min(t0.elapsed());
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut interrupted, mut partial) = (0, 0);
    for round in 0..4 {
        let root = dir.path().join(format!("r{round}"));
        copy(&root);
        let r = root.to_str().unwrap();
        let mut child = run(r);
        std::thread::sleep(full.mul_f64(rng.random_range(0.2..0.9)));
        let _ = child.kill();
        let _ = child.wait();
        let rt = util::rt();
        let seg_shards = |ds: &Dataset| -> Vec<u64> {
            ds.snapshot()
                .labels
                .keys()
                .filter(|k| k.0 == "t-seg")
                .map(|k| k.1)
                .collect()
        };
        let done = seg_shards(&rt.block_on(Dataset::open(r)).unwrap()).len();
        interrupted += (done < 3) as usize;
        if done == 3 {
            // The run outpaced the kill: aim the next ones earlier.
            full /= 2;
        }
        partial += (done > 0 && done < 3) as usize;
        assert!(
            util::must(&["validate", r, "--no-decode"]).status.success(),
            "round {round}"
        );
        assert!(run(r).wait().unwrap().success(), "round {round}");
        let ds = rt.block_on(Dataset::open(r)).unwrap();
        assert_eq!(
            seg_shards(&ds),
            vec![0, 1, 2],
            "round {round}: every shard once"
        );
        assert!(
            util::must(&["validate", r]).status.success(),
            "round {round}"
        );
    }
    assert!(
        interrupted > 0,
        "no kill landed inside a run ({partial} between shards)"
    );
}
