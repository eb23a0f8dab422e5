//! Probe teachers whose outputs are known by hand (made by
//! `tools/fixtures/make_teachers.py`): the model input that the
//! preprocessing gives, and what `must-ds label` stores from channel,
//! coordinate and bright-box probes, checked against values and letterbox
//! offsets worked out on paper.

use must_ds::codec::Label;
use must_ds::teacher::{preprocess, Scratch, TeacherParams};

use crate::teacher::{must_ok, teachers, TEACHERS};
use crate::util;

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
    if util::python_with(TEACHERS).is_none() {
        return;
    }
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
