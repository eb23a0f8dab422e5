//! `must-ds label` with tiny TorchScript teachers made by
//! `tools/make_teachers.py`: for each kind the committed labels are
//! the model's outputs after the documented post-processing (computed here
//! independently); shards split between workers and skipped when labeled;
//! a wrong shape, a NaN and a model that throws each fail naming the shard,
//! with nothing committed. Probe teachers check the pre- and
//! post-processing against values and letterbox offsets worked out by hand.

use std::path::Path;

use must_ds::codec::{ClassLabel, Label};
use must_ds::teacher::{preprocess, Scratch, TeacherParams};
use must_ds::Dataset;
use tch::{CModule, IValue, Tensor};

use crate::util;

/// Writes the test teachers into `dir/models`.
pub(crate) fn teachers(dir: &Path) -> std::path::PathBuf {
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let o = std::process::Command::new(util::python())
        .arg(util::tools().join("make_teachers.py"))
        .arg(&models)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    models
}

fn must_ok(args: &[&str]) -> String {
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
        !root.join("labels/bad").exists()
            || std::fs::read_dir(root.join("labels/bad")).unwrap().count() == 0
    );
}

/// `label` killed with SIGKILL at random moments, then run again, finishes
/// every shard exactly once and leaves a valid dataset.
#[test]
fn a_killed_label_run_restarted_finishes_the_rest() {
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

/// PNG bytes (lossless: the pixels are known exactly).
fn png(img: &image::RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn solid(w: u32, h: u32, c: [u8; 3]) -> image::RgbImage {
    image::RgbImage::from_pixel(w, h, image::Rgb(c))
}

/// Black, with a white rectangle `[x0, y0, x1, y1)`.
fn rect(w: u32, h: u32, r: [u32; 4]) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let v = if x >= r[0] && x < r[2] && y >= r[1] && y < r[3] {
            255
        } else {
            0
        };
        image::Rgb([v, v, v])
    })
}

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// `(v / 255 − mean) / std`, written out.
fn normalised(v: u8, c: usize, mean: [f32; 3], std: [f32; 3]) -> f32 {
    (v as f32 / 255.0 - mean[c]) / std[c]
}

fn params(json: &str) -> TeacherParams {
    let task = must_ds::format::TaskDef::from_json(&format!(
        r#"{{"name":"p","kind":"depth","representation":"relative","teacher":{{"name":"m","params":{json}}}}}"#
    ))
    .unwrap();
    TeacherParams::from_task(&task).unwrap()
}

/// The model input of a solid-colour image, checked against values computed
/// by hand (not by the library): the colour normalised where the image lies,
/// the normalised zero pixel in the letterbox bars, at offsets worked out
/// on paper for each size.
#[test]
fn preprocess_gives_hand_computed_values_and_letterbox_offsets() {
    let colour = [200u8, 100, 30];
    // (image w, h, input w, h, resize, mean and std, image's rows and columns in the input)
    type Norm = Option<([f32; 3], [f32; 3])>;
    type Case = (u32, u32, u32, u32, &'static str, Norm, [u32; 4]);
    let cases: [Case; 5] = [
        // 64×32 into 32×32: scale 1/2, 32×16 centred: rows 8..24.
        (64, 32, 32, 32, "letterbox", None, [8, 24, 0, 32]),
        // 60×60 into 48×32: scale 32/60, 32×32 centred: columns 8..40.
        (60, 60, 48, 32, "letterbox", None, [0, 32, 8, 40]),
        // 50×100 into 48×32: scale 0.32, 16×32: columns 16..32.
        (50, 100, 48, 32, "letterbox", None, [0, 32, 16, 32]),
        // Stretched: everywhere.
        (50, 100, 48, 32, "stretch", None, [0, 32, 0, 48]),
        // Other mean and std.
        (
            64,
            32,
            32,
            32,
            "letterbox",
            Some(([0.5, 0.25, 0.0], [0.5, 0.25, 1.0])),
            [8, 24, 0, 32],
        ),
    ];
    for (w, h, iw, ih, resize, norm, [r0, r1, c0, c1]) in cases {
        let (mean, std) = norm.unwrap_or((IMAGENET_MEAN, IMAGENET_STD));
        let p = params(&format!(
            r#"{{"input_size":[{iw},{ih}],"resize":"{resize}","mean":{mean:?},"std":{std:?}}}"#
        ));
        let mut input = vec![f32::NAN; (3 * iw * ih) as usize];
        let size = preprocess(
            &png(&solid(w, h, colour)),
            &p,
            &mut Scratch::default(),
            &mut input,
        )
        .unwrap();
        assert_eq!(size, (w, h));
        for c in 0..3 {
            for y in 0..ih {
                for x in 0..iw {
                    let inside = (r0..r1).contains(&y) && (c0..c1).contains(&x);
                    let want = normalised(if inside { colour[c] } else { 0 }, c, mean, std);
                    let got = input[((c as u32 * ih + y) * iw + x) as usize];
                    assert!(
                        (got - want).abs() < 1e-4,
                        "{w}×{h} into {iw}×{ih} ({resize}), channel {c} at ({x}, {y}): \
                         {got}, want {want} ({})",
                        if inside { "image" } else { "padding" }
                    );
                }
            }
        }
    }
}

/// `must-ds label` with probe teachers whose outputs are known by hand:
/// the stored depth of a channel probe is the normalised colour, over
/// exactly the input pixels the image covers; the coordinate probe shows
/// the letterbox offsets; boxes of a model that finds the bright pixels
/// come back on the white rectangle, in image pixels.
#[test]
fn label_outputs_match_hand_computed_inputs_and_letterbox_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let models = teachers(dir.path());
    let model = |n: &str| models.join(format!("{n}.pt")).to_str().unwrap().to_owned();
    let root = dir.path().join("ds");
    let r = root.to_str().unwrap();
    let rt = util::rt();
    // id, image, colour if solid, white rectangle if any, and where it lies in
    // a 48×32 letterboxed input (worked out on paper): rows, columns.
    type Case = (
        &'static str,
        image::RgbImage,
        Option<[u8; 3]>,
        Option<[u32; 4]>,
        [u32; 4],
    );
    let cases: Vec<Case> = vec![
        // 64×32: scale 0.75, 48×24, rows 4..28.
        (
            "solid-wide",
            solid(64, 32, [200, 100, 30]),
            Some([200, 100, 30]),
            None,
            [4, 28, 0, 48],
        ),
        // 60×60: scale 32/60, 32×32, columns 8..40.
        (
            "solid-square",
            solid(60, 60, [20, 220, 140]),
            Some([20, 220, 140]),
            None,
            [0, 32, 8, 40],
        ),
        // 120×40: scale 0.4, 48×16, rows 8..24.
        (
            "rect-wide",
            rect(120, 40, [30, 10, 90, 30]),
            None,
            Some([30, 10, 90, 30]),
            [8, 24, 0, 48],
        ),
        // 50×100: scale 0.32, 16×32, columns 16..32.
        (
            "rect-tall",
            rect(50, 100, [10, 40, 30, 90]),
            None,
            Some([10, 40, 30, 90]),
            [0, 32, 16, 32],
        ),
    ];
    {
        let mut ds = rt
            .block_on(must_ds::Dataset::init(r, Default::default()))
            .unwrap();
        let mut w =
            must_ds::write::ImageShardWriter::new(must_ds::write::ImageShardOptions::default())
                .unwrap();
        for (id, img, ..) in &cases {
            w.add_image(id, "probe", &png(img)).unwrap();
        }
        rt.block_on(ds.add_image_shard(w.finish().unwrap()))
            .unwrap();
    }
    let letterbox = [
        "--param",
        "input_size=[48,32]",
        "--param",
        "resize=letterbox",
    ];
    let custom = [
        "--param",
        "mean=[0.5,0.25,0]",
        "--param",
        "std=[0.5,0.25,1]",
    ];
    let depth_tasks: [(&str, &str, &[&str]); 4] = [
        ("probe-r", "chan0", &[]),
        ("probe-g", "chan1", &custom),
        ("probe-b", "chan2", &[]),
        ("coords", "coords", &[]),
    ];
    for (name, m, extra) in depth_tasks {
        let mut a = vec![
            "task",
            "define",
            r,
            "--name",
            name,
            "--kind",
            "depth",
            "--representation",
            "relative",
        ];
        let mp = model(m);
        a.extend(["--model", mp.as_str()]);
        a.extend(letterbox);
        a.extend(extra.iter().copied());
        must_ok(&a);
        must_ok(&["label", r, "--task", name, "--model", &mp]);
    }
    let bb = model("bright_box");
    for (name, resize) in [("box", "letterbox"), ("box-stretch", "stretch")] {
        let rs = format!("resize={resize}");
        must_ok(&[
            "task",
            "define",
            r,
            "--name",
            name,
            "--kind",
            "detection",
            "--num-classes",
            "1",
            "--min-score",
            "0.5",
            "--model",
            &bb,
            "--param",
            "input_size=[48,32]",
            "--param",
            &rs,
        ]);
        must_ok(&["label", r, "--task", name, "--model", &bb]);
    }

    let ds = rt.block_on(must_ds::Dataset::open(r)).unwrap();
    let tasks = [
        "probe-r",
        "probe-g",
        "probe-b",
        "coords",
        "box",
        "box-stretch",
    ];
    let rg = rt.block_on(ds.read_row_group(0, 0, &tasks, None)).unwrap();
    assert_eq!(rg.images.len(), cases.len());
    let depth = |task: &str, i: usize| -> (u32, u32, Vec<f32>) {
        match &rg.labels[task][i] {
            Some(Label::Depth(d)) => (d.height, d.width, d.to_f32()),
            other => panic!("{task}, row {i}: {other:?}"),
        }
    };
    let boxes = |task: &str, i: usize| -> Vec<[f32; 4]> {
        match &rg.labels[task][i] {
            Some(Label::Detection(d)) => d.boxes.clone(),
            other => panic!("{task}, row {i}: {other:?}"),
        }
    };
    for (i, (id, img, colour, white, [r0, r1, c0, c1])) in cases.iter().enumerate() {
        assert_eq!(&rg.images[i].image_id, id);
        let (h, w) = ((r1 - r0) as usize, (c1 - c0) as usize);
        // Which input pixels the stored maps cover: 64 × row + column.
        let (mh, mw, v) = depth("coords", i);
        assert_eq!(
            (mh as usize, mw as usize),
            (h, w),
            "{id}: the map covers {mh}×{mw} input pixels, the image {h}×{w}"
        );
        for y in 0..h {
            for x in 0..w {
                let want = (64 * (*r0 as usize + y) + *c0 as usize + x) as f32;
                assert_eq!(
                    v[y * w + x],
                    want,
                    "{id}: map pixel ({x}, {y}) is input pixel ({}, {}), not ({}, {})",
                    v[y * w + x] as u32 % 64,
                    v[y * w + x] as u32 / 64,
                    *c0 as usize + x,
                    *r0 as usize + y
                );
            }
        }
        // Channel probes: the normalised colour, exactly (float16).
        if let Some(colour) = colour {
            for (c, task) in ["probe-r", "probe-g", "probe-b"].iter().enumerate() {
                let (mean, std) = if c == 1 {
                    ([0.5, 0.25, 0.0], [0.5, 0.25, 1.0])
                } else {
                    (IMAGENET_MEAN, IMAGENET_STD)
                };
                let want = normalised(colour[c], c, mean, std);
                let (dh, dw, v) = depth(task, i);
                assert_eq!((dh as usize, dw as usize), (h, w), "{id}, {task}");
                for (k, got) in v.iter().enumerate() {
                    assert!(
                        (got - want).abs() <= want.abs() / 1024.0 + 1e-3,
                        "{id}, {task}, pixel {k}: {got}, want {want}"
                    );
                }
            }
        }
        // Boxes: on the white rectangle (the whole image when it is all
        // bright), within one input pixel mapped back to the image.
        let (iw, ih) = img.dimensions();
        let want = match (white, colour) {
            (Some(r), _) => Some(r.map(|v| v as f32)),
            (None, Some([20, 220, 140])) => Some([0.0, 0.0, iw as f32, ih as f32]),
            _ => None,
        };
        // The smaller scale of the two axes (the letterbox scale).
        let scale = (48.0 / iw as f32).min(32.0 / ih as f32);
        for task in ["box", "box-stretch"] {
            let got = boxes(task, i);
            match want {
                None => assert!(got.is_empty(), "{id}, {task}: {got:?}"),
                Some(b) => {
                    assert_eq!(got.len(), 1, "{id}, {task}: {got:?}");
                    let tol = 1.0 / scale + 0.5;
                    for q in 0..4 {
                        assert!(
                            (got[0][q] - b[q]).abs() <= tol,
                            "{id}, {task}: box {:?}, want {b:?} (±{tol})",
                            got[0]
                        );
                    }
                }
            }
        }
    }
}
