//! The loader's augmentation keeps labels on their pixels: boxes, masks and
//! depth follow the crop and the flip (also at label stride 4), on images
//! whose one red rectangle is known.

use must_ds::codec::{DepthMap, Detections, Label, SegMap};
use must_ds::format::TaskDef;
use must_ds::loader::{Batch, Crop, LoaderBuilder, TaskData};
use must_ds::write::{ImageShardOptions, ImageShardWriter, LabelWriter};
use must_ds::Dataset;

use crate::util;

/// Gray images with one red rectangle; its box, a mask of class 1 over it
/// at half resolution, and depth 2.0 over it (1.0 elsewhere).
fn shapes_dataset(root: &str) -> Vec<String> {
    let rt = util::rt();
    let mut ds = rt
        .block_on(Dataset::init(root, Default::default()))
        .unwrap();
    for t in [
        r#"{"name":"det","kind":"detection","num_classes":2,"class_names":["bg","red"],"min_score_written":0.0,"teacher":{"name":"gt"}}"#,
        r#"{"name":"seg","kind":"segmentation","num_classes":2,"class_names":["bg","red"],"dtype":"u8","ignore_index":255,"teacher":{"name":"gt"}}"#,
        r#"{"name":"depth","kind":"depth","representation":"metric","unit":"m","teacher":{"name":"gt"}}"#,
    ] {
        rt.block_on(ds.define_task(TaskDef::from_json(t).unwrap()))
            .unwrap();
    }
    let mut w = ImageShardWriter::new(ImageShardOptions {
        row_group_rows: 8,
        ..Default::default()
    })
    .unwrap();
    let mut rects = vec![];
    let mut ids = vec![];
    for i in 0..24u32 {
        let (iw, ih) = (160 + 8 * i, 120 + 4 * (i % 5));
        // Even corners: the half-resolution mask covers the rectangle exactly.
        let (x0, y0) = (10 + 2 * i, 12 + 2 * (i % 7));
        let (x1, y1) = (x0 + 50 + 2 * (i % 4), y0 + 40);
        let img = image::RgbImage::from_fn(iw, ih, |x, y| {
            if x >= x0 && x < x1 && y >= y0 && y < y1 {
                image::Rgb([230, 20, 20])
            } else {
                image::Rgb([110, 110, 110])
            }
        });
        let mut jpeg = vec![];
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .encode_image(&img)
            .unwrap();
        let id = format!("shape-{i}");
        w.add_image(&id, "synthetic", &jpeg).unwrap();
        rects.push((iw, ih, x0, y0, x1, y1));
        ids.push(id);
    }
    let added = rt
        .block_on(ds.add_image_shard(w.finish().unwrap()))
        .unwrap();
    let mut det = rt
        .block_on(LabelWriter::for_shard(&ds, "det", added.shard))
        .unwrap();
    let mut seg = rt
        .block_on(LabelWriter::for_shard(&ds, "seg", added.shard))
        .unwrap();
    let mut dep = rt
        .block_on(LabelWriter::for_shard(&ds, "depth", added.shard))
        .unwrap();
    for (id, &(iw, ih, x0, y0, x1, y1)) in ids.iter().zip(&rects) {
        det.set(
            id,
            Label::Detection(Detections {
                boxes: vec![[x0 as f32, y0 as f32, x1 as f32, y1 as f32]],
                classes: vec![1],
                scores: vec![1.0],
            }),
        )
        .unwrap();
        let (mw, mh) = (iw / 2, ih / 2);
        let inside = |x: u32, y: u32| {
            let (cx, cy) = (2 * x + 1, 2 * y + 1);
            cx >= x0 && cx < x1 && cy >= y0 && cy < y1
        };
        let mask = (0..mh)
            .flat_map(|y| (0..mw).map(move |x| (y, x)))
            .map(|(y, x)| inside(x, y) as u8)
            .collect();
        seg.set(id, Label::Segmentation(SegMap::from_u8(mh, mw, mask)))
            .unwrap();
        let depth: Vec<f32> = (0..mh)
            .flat_map(|y| (0..mw).map(move |x| (y, x)))
            .map(|(y, x)| if inside(x, y) { 2.0 } else { 1.0 })
            .collect();
        dep.set(id, Label::Depth(DepthMap::from_f32(mh, mw, &depth)))
            .unwrap();
    }
    for (t, l) in [("det", det), ("seg", seg), ("depth", dep)] {
        rt.block_on(ds.add_label_file(t, added.shard, l.finish().unwrap(), false))
            .unwrap();
    }
    ids
}

/// Bounding box `[x0, y0, x1, y1)` of the pixels of a `w`×`h` grid where `f` holds.
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

/// Where the red rectangle of every sample lands, seen in the image, the
/// mask, the depth map (scaled to output pixels) and the box.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    id: String,
    image: Option<[usize; 4]>,
    mask: Option<[usize; 4]>,
    depth: Option<[usize; 4]>,
    boxes: Vec<[f32; 4]>,
    /// Label pixels outside the image: (mask is ignore_index, depth is NaN, image is black).
    outside: Vec<(bool, bool, bool)>,
}

fn seen(b: &Batch, stride: usize) -> Vec<Seen> {
    let (w, h) = (b.width as usize, b.height as usize);
    let (lw, lh) = (b.label_width as usize, b.label_height as usize);
    assert_eq!((lw * stride, lh * stride), (w, h));
    let must_ds::loader::Images::U8(px) = &b.images else {
        unreachable!()
    };
    let TaskData::Segmentation {
        mask: must_ds::loader::Mask::U8(mask),
        ..
    } = &b.task("seg").unwrap().data
    else {
        unreachable!()
    };
    let TaskData::Depth { depth } = &b.task("depth").unwrap().data else {
        unreachable!()
    };
    let TaskData::Detection {
        boxes,
        valid,
        max_boxes,
        ..
    } = &b.task("det").unwrap().data
    else {
        unreachable!()
    };
    assert_eq!(mask.len(), b.batch_size * lw * lh);
    assert_eq!(depth.len(), b.batch_size * lw * lh);
    (0..b.batch_size)
        .filter(|&i| !b.padding[i])
        .map(|i| {
            let plane = |c: usize, x: usize, y: usize| px[((i * 3 + c) * h + y) * w + x];
            let red = |x: usize, y: usize| plane(0, x, y) > 170 && plane(1, x, y) < 80;
            let black = |x: usize, y: usize| (0..3).all(|c| plane(c, x, y) < 12);
            let m = |x: usize, y: usize| mask[(i * lh + y) * lw + x];
            let d = |x: usize, y: usize| depth[(i * lh + y) * lw + x].to_f32();
            let scale = |bb: Option<[usize; 4]>| bb.map(|b| b.map(|v| v * stride));
            let mut outside = vec![];
            for y in 0..lh {
                for x in 0..lw {
                    let (cx, cy) = (x * stride + stride / 2, y * stride + stride / 2);
                    // Only where the image's edge is not within a pixel.
                    let near = |f: &dyn Fn(usize, usize) -> bool| {
                        (cy.saturating_sub(1)..(cy + 2).min(h))
                            .all(|yy| (cx.saturating_sub(1)..(cx + 2).min(w)).all(|xx| f(xx, yy)))
                    };
                    let all_black = near(&black);
                    let none_black = near(&|x, y| !black(x, y));
                    if all_black || none_black {
                        outside.push((m(x, y) == 255, d(x, y).is_nan(), all_black));
                    }
                }
            }
            Seen {
                id: b.image_ids[i].clone(),
                image: bbox(w, h, red),
                mask: scale(bbox(lw, lh, |x, y| m(x, y) == 1)),
                depth: scale(bbox(lw, lh, |x, y| d(x, y) == 2.0)),
                boxes: (0..*max_boxes)
                    .filter(|j| valid[i * max_boxes + j])
                    .map(|j| {
                        let k = (i * max_boxes + j) * 4;
                        [boxes[k], boxes[k + 1], boxes[k + 2], boxes[k + 3]]
                    })
                    .collect(),
                outside,
            }
        })
        .collect()
}

fn shapes_loader(root: &str, crop: Crop, stride: u32, flip: f64, epoch: u64) -> Vec<Batch> {
    LoaderBuilder::open(root, None)
        .task("det", false)
        .task("seg", true)
        .task("depth", false)
        .batch_size(6)
        .output_size(96, 80)
        .label_stride(stride)
        .crop(crop)
        .flip(flip)
        .epoch(epoch)
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

fn near(a: [usize; 4], b: [usize; 4], tol: usize) -> bool {
    a.iter().zip(&b).all(|(x, y)| x.abs_diff(*y) <= tol)
}

/// The image's red rectangle, the mask's, the depth map's and the box agree
/// on all four sides (within a pixel of the output, or of the label grid at
/// a stride); label pixels outside the image are ignore_index and NaN.
fn check_alignment(stride: usize) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shapes");
    let root = root.to_str().unwrap();
    shapes_dataset(root);
    let (w, h) = (96usize, 80usize);
    let tol = stride.max(1) + 1;
    let (mut checked, mut outside_seen) = (0, 0);
    for (epoch, crop) in [
        (
            0,
            Crop::RandomResized {
                scale: (0.2, 1.0),
                ratio: (0.6, 1.6),
            },
        ),
        (1, Crop::ScaleJitter { range: (0.5, 1.8) }),
        (
            2,
            Crop::RandomResized {
                scale: (0.05, 0.5),
                ratio: (0.75, 1.33),
            },
        ),
    ] {
        for b in shapes_loader(root, crop, stride as u32, 0.5, epoch) {
            for s in seen(&b, stride) {
                for (ignored, nan, black) in &s.outside {
                    // The mask and the depth map each agree with the pixels.
                    assert_eq!(ignored, black, "{}: mask outside the image", s.id);
                    assert_eq!(nan, black, "{}: depth outside the image", s.id);
                    outside_seen += *black as usize;
                }
                let Some(img) = s.image else { continue };
                // Only rectangles that cover a real share of the output,
                // away from the output's edge where clipping cuts them.
                let area = (img[2] - img[0]) * (img[3] - img[1]);
                if area * 50 < w * h || img[2] - img[0] < 4 || img[3] - img[1] < 4 {
                    continue;
                }
                let mask = s
                    .mask
                    .unwrap_or_else(|| panic!("{}: no mask rectangle", s.id));
                let depth = s
                    .depth
                    .unwrap_or_else(|| panic!("{}: no depth rectangle", s.id));
                assert!(
                    near(img, mask, tol),
                    "{}: image {img:?} mask {mask:?}",
                    s.id
                );
                assert!(
                    near(img, depth, tol),
                    "{}: image {img:?} depth {depth:?}",
                    s.id
                );
                assert_eq!(s.boxes.len(), 1, "{}: one box", s.id);
                let bx = s.boxes[0].map(|v| v.round() as usize);
                assert!(
                    near(img, bx, 1),
                    "{}: image {img:?} box {:?}",
                    s.id,
                    s.boxes[0]
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 30, "only {checked} rectangles checked");
    assert!(
        outside_seen > 100,
        "scale jitter left only {outside_seen} label pixels outside"
    );
}

#[test]
fn augmentation_keeps_boxes_masks_and_depth_on_their_pixels() {
    check_alignment(1);
}

#[test]
fn augmentation_keeps_labels_aligned_at_label_stride_4() {
    check_alignment(4);
}

#[test]
fn a_flip_mirrors_the_image_mask_depth_and_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shapes");
    let root = root.to_str().unwrap();
    shapes_dataset(root);
    let w = 96usize;
    let crop = Crop::RandomResized {
        scale: (0.3, 1.0),
        ratio: (0.75, 1.33),
    };
    for stride in [1usize, 4] {
        let plain = shapes_loader(root, crop.clone(), stride as u32, 0.0, 0);
        let flipped = shapes_loader(root, crop.clone(), stride as u32, 1.0, 0);
        let mut mirrored = 0;
        for (a, b) in plain.iter().zip(&flipped) {
            assert_eq!(a.image_ids, b.image_ids, "the same samples, the same crops");
            for (p, f) in seen(a, stride).into_iter().zip(seen(b, stride)) {
                let mirror = |bb: [usize; 4]| [w - bb[2], bb[1], w - bb[0], bb[3]];
                let (Some(pi), Some(fi)) = (p.image, f.image) else {
                    assert_eq!(p.image, f.image, "{}", p.id);
                    continue;
                };
                assert!(
                    near(mirror(pi), fi, 1),
                    "{}: image {pi:?} flipped {fi:?}",
                    p.id
                );
                for (what, x, y) in [("mask", p.mask, f.mask), ("depth", p.depth, f.depth)] {
                    let (Some(x), Some(y)) = (x, y) else {
                        assert_eq!(x, y, "{}: {what}", p.id);
                        continue;
                    };
                    assert!(
                        near(mirror(x), y, stride),
                        "{}: {what} {x:?} flipped {y:?}",
                        p.id
                    );
                }
                assert_eq!(p.boxes.len(), f.boxes.len());
                for (pb, fb) in p.boxes.iter().zip(&f.boxes) {
                    let m = [w as f32 - pb[2], pb[1], w as f32 - pb[0], pb[3]];
                    assert!(
                        m.iter().zip(fb).all(|(a, b)| (a - b).abs() < 1e-3),
                        "{}: box {pb:?} flipped {fb:?}",
                        p.id
                    );
                }
                // The rectangle is not symmetric about the centre, so a
                // missing flip would show.
                if mirror(pi) != pi {
                    mirrored += 1;
                }
            }
        }
        assert!(
            mirrored > 10,
            "stride {stride}: only {mirrored} samples compared"
        );
    }
}
