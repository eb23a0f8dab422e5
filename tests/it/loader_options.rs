//! Load-time label options (`min_score`, `max_boxes`, `min_box_size`, `min_confidence`,
//! `MissingMass::Renormalize`), u16 masks end to end, f32 normalized
//! images, and labels that stay on their pixels with an odd image size and
//! a map whose size does not divide the image's.

use std::path::Path;

use must_ds::codec::{ClassLabel, Detections, Label, SegMap};
use must_ds::format::TaskDef;
use must_ds::loader::{
    Batch, ImageOutput, Images, LabelOptions, LoaderBuilder, Mask, MissingMass, TaskData,
};
use must_ds::write::{ImageShardOptions, ImageShardWriter, LabelWriter};
use must_ds::Dataset;

use crate::util;

const N: usize = 16;
/// Image and map sizes: odd, and 161/50, 97/31 are not integers.
const IW: u32 = 161;
const IH: u32 = 97;
const MW: u32 = 50;
const MH: u32 = 31;
const SCORES: [f32; 5] = [0.9, 0.2, 0.6, 0.4, 0.8];

/// Sample i's labeled rectangle in map pixels `[x0, y0, x1, y1)`.
fn rect(i: usize) -> [u32; 4] {
    let i = i as u32;
    [8 + i % 5, 6 + i % 3, 30 + i % 7, 20 + i % 4]
}

/// 16 images of 161×97 in one shard (row groups of 8). Each has a red
/// rectangle painted from its map pixels, so that the image and the 50×31
/// maps of `seg` (u8, with confidence 0.3 on the left half and 0.9 on the
/// right) and `seg16` (u16: 700 inside, 300 outside, ignore_index 65535)
/// cover the same region; `cls` is a top-k of 2 (0.5 and 0.2 of 5 classes);
/// `det` has 5 large boxes scored [`SCORES`].
fn dataset(dir: &Path) -> String {
    let root = dir.join("opts");
    let root_s = root.to_str().unwrap().to_owned();
    let rt = util::rt();
    let mut ds = rt
        .block_on(Dataset::init(&root_s, Default::default()))
        .unwrap();
    for t in [
        r#"{"name":"cls","kind":"classification","num_classes":5,"encoding":"topk","teacher":{"name":"t"}}"#,
        r#"{"name":"det","kind":"detection","num_classes":3,"min_score_written":0.0,"teacher":{"name":"t"}}"#,
        r#"{"name":"seg","kind":"segmentation","num_classes":2,"dtype":"u8","ignore_index":255,"teacher":{"name":"t"}}"#,
        r#"{"name":"seg16","kind":"segmentation","num_classes":1000,"dtype":"u16","ignore_index":65535,"teacher":{"name":"t"}}"#,
    ] {
        rt.block_on(ds.define_task(TaskDef::from_json(t).unwrap()))
            .unwrap();
    }
    let mut w = ImageShardWriter::new(ImageShardOptions {
        row_group_rows: 8,
        ..Default::default()
    })
    .unwrap();
    let mut ids = vec![];
    for i in 0..N {
        let [x0, y0, x1, y1] = rect(i);
        let img = image::RgbImage::from_fn(IW, IH, |x, y| {
            let (mx, my) = (x * MW / IW, y * MH / IH);
            if mx >= x0 && mx < x1 && my >= y0 && my < y1 {
                image::Rgb([230, 20, 20])
            } else {
                image::Rgb([110, 110, 110])
            }
        });
        let mut png = vec![];
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let id = format!("odd-{i:02}");
        w.add_image(&id, "synthetic", &png).unwrap();
        ids.push(id);
    }
    let added = rt
        .block_on(ds.add_image_shard(w.finish().unwrap()))
        .unwrap();
    let writer = |t: &str| {
        rt.block_on(LabelWriter::for_shard(&ds, t, added.shard))
            .unwrap()
    };
    let (mut cls, mut det, mut seg, mut seg16) =
        (writer("cls"), writer("det"), writer("seg"), writer("seg16"));
    for (i, id) in ids.iter().enumerate() {
        let [x0, y0, x1, y1] = rect(i);
        let inside = |k: usize| {
            let (x, y) = ((k % MW as usize) as u32, (k / MW as usize) as u32);
            x >= x0 && x < x1 && y >= y0 && y < y1
        };
        let px = (MW * MH) as usize;
        cls.set(
            id,
            Label::Classification(ClassLabel::TopK {
                classes: vec![(i % 5) as u32, ((i + 2) % 5) as u32],
                probs: vec![0.5, 0.2],
            }),
        )
        .unwrap();
        det.set(
            id,
            Label::Detection(Detections {
                boxes: vec![[10.0, 8.0, 150.0, 90.0]; 5],
                classes: vec![0, 1, 2, 0, 1],
                scores: SCORES.to_vec(),
            }),
        )
        .unwrap();
        let mask = (0..px).map(|k| inside(k) as u8).collect();
        let conf: Vec<f32> = (0..px)
            .map(|k| if k % (MW as usize) < 25 { 0.3 } else { 0.9 })
            .collect();
        seg.set(
            id,
            Label::Segmentation(SegMap::from_u8(MH, MW, mask).with_confidence_probs(&conf)),
        )
        .unwrap();
        let m16: Vec<u16> = (0..px).map(|k| if inside(k) { 700 } else { 300 }).collect();
        seg16
            .set(id, Label::Segmentation(SegMap::from_u16(MH, MW, &m16)))
            .unwrap();
    }
    for (t, l) in [("cls", cls), ("det", det), ("seg", seg), ("seg16", seg16)] {
        rt.block_on(ds.add_label_file(t, added.shard, l.finish().unwrap(), false))
            .unwrap();
    }
    root_s
}

fn builder(root: &str) -> LoaderBuilder {
    LoaderBuilder::open(root, None)
        .task("cls", true)
        .task("det", true)
        .task("seg", true)
        .task("seg16", true)
        .batch_size(8)
        .output_size(64, 48)
        .label_stride(1)
        .seed(7)
}

fn all(b: LoaderBuilder) -> Vec<Batch> {
    let v: Vec<Batch> = b.build().unwrap().map(|b| b.unwrap()).collect();
    assert_eq!(v.iter().map(|b| b.real()).sum::<usize>(), N);
    v
}

/// Per sample: the valid (score, class) pairs of `det`, and N.
fn boxes(b: &Batch) -> (usize, Vec<Vec<(f32, i64)>>) {
    let Some(TaskData::Detection {
        max_boxes,
        scores,
        classes,
        valid,
        ..
    }) = b.task("det").map(|t| &t.data)
    else {
        panic!("no det")
    };
    let per = (0..b.batch_size)
        .map(|i| {
            let mut v: Vec<(f32, i64)> = (i * max_boxes..(i + 1) * max_boxes)
                .filter(|&k| valid[k])
                .map(|k| (scores[k], classes[k]))
                .collect();
            v.sort_by(|a, b| b.0.total_cmp(&a.0));
            v
        })
        .collect();
    (*max_boxes, per)
}

#[test]
fn min_score_drops_boxes_and_max_boxes_keeps_the_top_scoring() {
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path());
    let b = || builder(&root).augment(false);
    let want = |min: f32, cap: usize| -> Vec<(f32, i64)> {
        let mut v: Vec<(f32, i64)> = SCORES
            .iter()
            .zip([0, 1, 2, 0, 1])
            .filter(|(s, _)| **s >= min)
            .map(|(s, c)| (*s, c))
            .collect();
        v.sort_by(|a, b| b.0.total_cmp(&a.0));
        v.truncate(cap);
        v
    };
    for (min, cap, n) in [
        (0.0, None, 5),
        (0.5, None, 3),
        (0.0, Some(2), 2),
        (0.0, Some(7), 7),
        (0.5, Some(2), 2),
        (0.7, Some(4), 4),
    ] {
        for batch in all(b().min_score(min).max_boxes(cap)) {
            let (got_n, per) = boxes(&batch);
            assert_eq!(got_n, n, "N with min_score {min}, max_boxes {cap:?}");
            for p in per {
                assert_eq!(
                    p,
                    want(min, cap.unwrap_or(5)),
                    "min_score {min}, max_boxes {cap:?}"
                );
            }
        }
    }
}

/// `min_box_size` and `label_options` reach the collation: boxes smaller
/// than the size after the resize are dropped, and options set at once act
/// as their setters do.
#[test]
fn min_box_size_and_label_options_are_set_through_the_builder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path());
    let b = || builder(&root).augment(false);
    let valid = |l: LoaderBuilder| -> usize {
        all(l)
            .iter()
            .map(|batch| boxes(batch).1.iter().map(Vec::len).sum::<usize>())
            .sum()
    };
    assert_eq!(valid(b().min_box_size(1.0)), 5 * N);
    // No box of a 64×48 output is 100 pixels wide.
    assert_eq!(valid(b().min_box_size(100.0)), 0);
    let opts = LabelOptions {
        min_score: 0.5,
        ..LabelOptions::default()
    };
    assert_eq!(valid(b().label_options(opts)), valid(b().min_score(0.5)));
    assert_eq!(valid(b().min_score(0.5)), 3 * N);
}

fn seg_masks(b: &Batch, task: &str) -> Mask {
    match &b.task(task).unwrap().data {
        TaskData::Segmentation { mask, .. } => mask.clone(),
        _ => panic!("{task} is not segmentation"),
    }
}

#[test]
fn min_confidence_turns_unsure_pixels_into_ignore_index() {
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path());
    // The whole image resized to 100×62: output column x reads map column
    // about x / 2, whose confidence is 0.3 left of map column 25.
    let b = || builder(&root).augment(false).output_size(100, 62);
    let plain = all(b());
    let thr = all(b().min_confidence(0.5));
    let low = all(b().min_confidence(0.2));
    for ((p, t), l) in plain.iter().zip(&thr).zip(&low) {
        let (Mask::U8(p), Mask::U8(t), Mask::U8(l)) = (
            seg_masks(p, "seg"),
            seg_masks(t, "seg"),
            seg_masks(l, "seg"),
        ) else {
            panic!("u8 masks expected")
        };
        assert!(
            p.iter().all(|&v| v < 2),
            "no ignored pixel without a threshold"
        );
        assert_eq!(p, l, "every confidence is over 0.2");
        for (k, (&a, &b)) in p.iter().zip(&t).enumerate() {
            let x = k % 100;
            if x < 48 {
                assert_eq!(b, 255, "pixel {k}: confidence 0.3 under 0.5");
            } else if x >= 52 {
                assert_eq!(b, a, "pixel {k}: confidence 0.9 kept");
            }
        }
        // Other tasks are untouched.
        assert_eq!(seg_masks_u16(&thr[0]), seg_masks_u16(&plain[0]));
    }
}

fn seg_masks_u16(b: &Batch) -> Vec<u16> {
    match seg_masks(b, "seg16") {
        Mask::U16(v) => v,
        Mask::U8(_) => panic!("seg16 came back as u8"),
    }
}

#[test]
fn renormalized_top_k_rows_sum_to_one_and_keep_their_ratios() {
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path());
    for batch in all(builder(&root).missing_mass(MissingMass::Renormalize)) {
        let Some(TaskData::Classification { num_classes, probs }) =
            batch.task("cls").map(|t| &t.data)
        else {
            panic!()
        };
        assert_eq!(*num_classes, 5);
        for (i, row) in probs.chunks(5).enumerate() {
            let k: usize = batch.image_ids[i][4..].parse().unwrap();
            let (a, b) = (k % 5, (k + 2) % 5);
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "{row:?}");
            assert!((row[a] - 0.5 / 0.7).abs() < 1e-5, "{row:?}");
            assert!((row[b] - 0.2 / 0.7).abs() < 1e-5, "{row:?}");
            assert!((row[a] / row[b] - 2.5).abs() < 1e-4);
            assert!(
                (0..5).filter(|c| *c != a && *c != b).all(|c| row[c] == 0.0),
                "{row:?}"
            );
        }
    }
}

/// Bounding box `[x0, y0, x1, y1)` of the pixels where `f` holds.
fn bbox(w: usize, h: usize, f: impl Fn(usize, usize) -> bool) -> Option<[usize; 4]> {
    let mut bb: Option<[usize; 4]> = None;
    for y in 0..h {
        for x in 0..w {
            if f(x, y) {
                let b = bb.get_or_insert([x, y, x + 1, y + 1]);
                *b = [b[0].min(x), b[1].min(y), b[2].max(x + 1), b[3].max(y + 1)];
            }
        }
    }
    bb
}

#[test]
fn u16_masks_on_odd_sizes_stay_on_their_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path());
    let mut compared = 0;
    for augment in [false, true] {
        for batch in all(builder(&root).augment(augment)) {
            let (w, h) = (batch.width as usize, batch.height as usize);
            assert_eq!((batch.label_width, batch.label_height), (64, 48));
            let TaskData::Segmentation { ignore_index, .. } = &batch.task("seg16").unwrap().data
            else {
                panic!()
            };
            assert_eq!(*ignore_index, 65535);
            let m16 = seg_masks_u16(&batch);
            let Mask::U8(m8) = seg_masks(&batch, "seg") else {
                panic!()
            };
            let Images::U8(px) = &batch.images else {
                panic!()
            };
            let hw = w * h;
            for i in 0..batch.batch_size {
                let m = &m16[i * hw..(i + 1) * hw];
                assert!(
                    m.iter().all(|v| [300, 700, 65535].contains(v)),
                    "u16 class ids kept whole"
                );
                if !augment {
                    assert!(!m.contains(&65535), "the whole image is labeled");
                }
                let img = &px[i * 3 * hw..(i + 1) * 3 * hw];
                let red = bbox(w, h, |x, y| {
                    let k = y * w + x;
                    img[k] > 170 && img[hw + k] < 80
                });
                let in16 = bbox(w, h, |x, y| m[y * w + x] == 700);
                let in8 = bbox(w, h, |x, y| m8[i * hw + y * w + x] == 1);
                assert_eq!(in16, in8, "both maps agree");
                let (Some(r), Some(l)) = (red, in16) else {
                    assert_eq!(red.is_some(), in16.is_some(), "sample {i}");
                    continue;
                };
                assert!(
                    (0..4).all(|s| r[s].abs_diff(l[s]) <= 1),
                    "{}: image {r:?}, mask {l:?} (augment {augment})",
                    batch.image_ids[i]
                );
                if !augment {
                    // The rectangle is a real share of the output.
                    assert!((r[2] - r[0]) * (r[3] - r[1]) > hw / 8, "{r:?}");
                }
                compared += 1;
            }
        }
    }
    assert!(compared > 24, "{compared}");
}

#[test]
fn f32_images_are_the_normalized_u8_images() {
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path());
    let u8s = all(builder(&root));
    let f32s = all(builder(&root).image_output(ImageOutput::IMAGENET));
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    for (a, b) in u8s.iter().zip(&f32s) {
        assert_eq!(a.image_ids, b.image_ids);
        assert_eq!(a.tasks, b.tasks, "the same labels");
        let (Images::U8(p), Images::F32(q)) = (&a.images, &b.images) else {
            panic!("u8 then f32 images expected")
        };
        assert_eq!(p.len(), q.len());
        let hw = (a.width * a.height) as usize;
        for (k, (&x, &y)) in p.iter().zip(q).enumerate() {
            let c = (k / hw) % 3;
            let want = (x as f32 / 255.0 - mean[c]) / std[c];
            assert!(
                (want - y).abs() < 1e-4,
                "value {k}: {y} for u8 {x}, want {want}"
            );
        }
    }
}
