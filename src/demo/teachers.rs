//! The four demonstration teachers: image statistics that write labels of
//! every kind (not models; the labels show the format, not accuracy).

use anyhow::Context;
use image::{imageops, RgbImage};

use super::demo_tasks;
use crate::codec::{ClassLabel, DepthMap, Detections, Label, SegMap};
use crate::store::Dataset;
use crate::write::{BlobCodec, LabelWriter};

fn luma(p: &image::Rgb<u8>) -> f32 {
    (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32) / 255.0
}

/// Demonstration classifier: the top 3 of a hue histogram (gray for unsaturated pixels).
pub fn hue_teacher(img: &RgbImage) -> Label {
    let mut hist = [0f32; 8];
    for p in img.pixels().step_by(3) {
        let [r, g, b] = [
            p[0] as f32 / 255.0,
            p[1] as f32 / 255.0,
            p[2] as f32 / 255.0,
        ];
        let (max, min) = (r.max(g).max(b), r.min(g).min(b));
        if max - min < 0.12 {
            hist[7] += 1.0;
            continue;
        }
        let d = max - min;
        let hue = if max == r {
            ((g - b) / d).rem_euclid(6.0)
        } else if max == g {
            (b - r) / d + 2.0
        } else {
            (r - g) / d + 4.0
        } * 60.0;
        let bin = match hue as u32 {
            0..=14 | 345..=360 => 0,
            15..=44 => 1,
            45..=69 => 2,
            70..=159 => 3,
            160..=199 => 4,
            200..=259 => 5,
            _ => 6,
        };
        hist[bin] += 1.0;
    }
    let total: f32 = hist.iter().sum::<f32>().max(1.0);
    let probs: Vec<f32> = hist.iter().map(|h| h / total).collect();
    Label::Classification(ClassLabel::top_k(&probs, 3))
}

/// Demonstration detector: 8×8 grid cells whose mean luminance is far from
/// the image mean, merged into connected blobs; one box per blob.
pub fn blob_teacher(img: &RgbImage, min_score: f32) -> Label {
    const G: usize = 8;
    let (w, h) = img.dimensions();
    let mut cell = [[0f32; G]; G];
    let mut count = [[0f32; G]; G];
    for (x, y, p) in img.enumerate_pixels().step_by(2) {
        let (cx, cy) = ((x as usize * G) / w as usize, (y as usize * G) / h as usize);
        cell[cy][cx] += luma(p);
        count[cy][cx] += 1.0;
    }
    let means: Vec<f32> = (0..G * G)
        .map(|i| cell[i / G][i % G] / count[i / G][i % G].max(1.0))
        .collect();
    let mean = means.iter().sum::<f32>() / means.len() as f32;
    let sd = (means.iter().map(|m| (m - mean).powi(2)).sum::<f32>() / means.len() as f32)
        .sqrt()
        .max(0.02);
    let class_of = |i: usize| -> Option<u32> {
        let z = (means[i] - mean) / sd;
        if z > 1.0 {
            Some(0)
        } else if z < -1.0 {
            Some(1)
        } else {
            None
        }
    };
    let mut seen = [false; G * G];
    let mut det = Detections::default();
    for start in 0..G * G {
        let Some(class) = class_of(start) else {
            continue;
        };
        if seen[start] {
            continue;
        }
        let (mut x0, mut y0, mut x1, mut y1, mut zsum, mut n) = (G, G, 0, 0, 0f32, 0f32);
        let mut stack = vec![start];
        seen[start] = true;
        while let Some(i) = stack.pop() {
            let (cx, cy) = (i % G, i / G);
            (x0, y0, x1, y1) = (x0.min(cx), y0.min(cy), x1.max(cx + 1), y1.max(cy + 1));
            zsum += ((means[i] - mean) / sd).abs();
            n += 1.0;
            let neighbors = [
                (cx.wrapping_sub(1), cy),
                (cx + 1, cy),
                (cx, cy.wrapping_sub(1)),
                (cx, cy + 1),
            ];
            for (nx, ny) in neighbors {
                if nx < G && ny < G {
                    let j = ny * G + nx;
                    if !seen[j] && class_of(j) == Some(class) {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        let score = (zsum / n / 3.0).clamp(0.0, 1.0);
        if score < min_score {
            continue;
        }
        let sx = w as f32 / G as f32;
        let sy = h as f32 / G as f32;
        det.boxes.push([
            x0 as f32 * sx,
            y0 as f32 * sy,
            x1 as f32 * sx,
            y1 as f32 * sy,
        ]);
        det.classes.push(class);
        det.scores.push(score);
    }
    // Highest score first, as detectors emit them.
    let mut order: Vec<usize> = (0..det.scores.len()).collect();
    order.sort_by(|&a, &b| det.scores[b].total_cmp(&det.scores[a]));
    Label::Detection(Detections {
        boxes: order.iter().map(|&i| det.boxes[i]).collect(),
        classes: order.iter().map(|&i| det.classes[i]).collect(),
        scores: order.iter().map(|&i| det.scores[i]).collect(),
    })
}

/// The image at 1/`div` of its size (itself at 1).
fn reduced(img: &RgbImage, div: u32) -> std::borrow::Cow<'_, RgbImage> {
    if div <= 1 {
        return std::borrow::Cow::Borrowed(img);
    }
    std::borrow::Cow::Owned(imageops::resize(
        img,
        (img.width() / div).max(1),
        (img.height() / div).max(1),
        imageops::FilterType::Triangle,
    ))
}

/// Demonstration segmenter: luminance quartile bands at 1/4 resolution, with
/// a confidence that falls near band edges.
pub fn luma_teacher(img: &RgbImage) -> Label {
    luma_teacher_at(img, 4)
}

/// [`luma_teacher`] at 1/`div` of the image's resolution (1: full).
pub fn luma_teacher_at(img: &RgbImage, div: u32) -> Label {
    let small = reduced(img, div);
    let (w, h) = small.dimensions();
    let mut mask = Vec::with_capacity((w * h) as usize);
    let mut conf = Vec::with_capacity((w * h) as usize);
    for p in small.pixels() {
        let l = luma(p);
        let band = ((l * 4.0) as u8).min(3);
        let edge = (l * 4.0 - (band as f32 + 0.5)).abs() * 2.0;
        mask.push(band);
        conf.push(1.0 - 0.5 * edge);
    }
    Label::Segmentation(SegMap::from_u8(h, w, mask).with_confidence_probs(&conf))
}

/// Demonstration depth: inverse depth grows toward the bottom of the frame,
/// modulated by luminance, at 1/8 resolution.
pub fn depth_teacher(img: &RgbImage) -> Label {
    depth_teacher_at(img, 8)
}

/// [`depth_teacher`] at 1/`div` of the image's resolution (1: full).
pub fn depth_teacher_at(img: &RgbImage, div: u32) -> Label {
    let small = reduced(img, div);
    let (w, h) = small.dimensions();
    let values: Vec<f32> = small
        .enumerate_pixels()
        .map(|(_, y, p)| (0.2 + 0.8 * (y as f32 + 0.5) / h as f32) * (0.8 + 0.2 * luma(p)))
        .collect();
    Label::Depth(DepthMap::from_f32(h, w, &values))
}

/// Labels image shard `shard` of `ds` for the four demo tasks and commits the files.
pub async fn label_shard(ds: &Dataset, shard: u64) -> anyhow::Result<()> {
    label_shard_maps(ds, shard, false, BlobCodec::default()).await
}

/// [`label_shard`], with masks and depth at the images' full resolution
/// when `full_res` (else at 1/4 and 1/8).
pub async fn label_shard_maps(
    ds: &Dataset,
    shard: u64,
    full_res: bool,
    codec: BlobCodec,
) -> anyhow::Result<()> {
    let (seg_div, depth_div) = if full_res { (1, 1) } else { (4, 8) };
    let tasks = demo_tasks();
    let mut writers = Vec::new();
    for t in &tasks {
        writers.push(
            LabelWriter::for_shard(ds, &t.name, shard)
                .await?
                .blob_codec(codec),
        );
    }
    let groups = ds.snapshot().shard(shard)?.row_groups.len();
    for g in 0..groups {
        let rg = ds
            .read_row_group(shard, g, &[], Some(&["image_id", "image"]))
            .await?;
        let labeled: Vec<(String, [Label; 4])> = tokio::task::block_in_place(|| {
            rg.images
                .iter()
                .map(|rec| {
                    let bytes = rec
                        .image
                        .as_ref()
                        .with_context(|| format!("{}: no embedded image", rec.image_id))?;
                    let img = image::load_from_memory(bytes)
                        .with_context(|| format!("decoding {}", rec.image_id))?
                        .to_rgb8();
                    Ok((
                        rec.image_id.clone(),
                        [
                            hue_teacher(&img),
                            blob_teacher(&img, 0.2),
                            luma_teacher_at(&img, seg_div),
                            depth_teacher_at(&img, depth_div),
                        ],
                    ))
                })
                .collect::<anyhow::Result<_>>()
        })?;
        for (id, labels) in labeled {
            for (w, l) in writers.iter_mut().zip(labels) {
                w.set(&id, l)?;
            }
        }
    }
    let mut ds = ds.clone();
    for w in writers {
        let task = w.task().name.clone();
        let file = tokio::task::block_in_place(|| w.finish())?;
        ds.add_label_file(&task, shard, file, false).await?;
    }
    Ok(())
}
