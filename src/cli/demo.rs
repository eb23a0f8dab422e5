//! `must-ds demo`: the whole flow on a local folder. Crops and flips of the
//! bundled public-domain photos are ingested as image shards, then four
//! demonstration teachers (plain image statistics, not models) label them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use image::{imageops, RgbImage};
use rand::{Rng, SeedableRng};

use crate::codec::{ClassLabel, DepthMap, Detections, Label, SegMap};
use crate::format::{
    ClassEncoding, DatasetInfo, DepthRepresentation, MaskDtype, TaskDef, TaskKind, Teacher,
};
use crate::ingest::{ingest, IngestOptions, InputData, InputImage};
use crate::store::Dataset;
use crate::write::{BlobCodec, LabelWriter};

/// The bundled photos (see data/photos/LICENSE.md).
pub const PHOTOS: &[(&str, &[u8])] = &[
    (
        "astronaut",
        include_bytes!("../../data/photos/astronaut.jpg"),
    ),
    ("chelsea", include_bytes!("../../data/photos/chelsea.jpg")),
    ("coffee", include_bytes!("../../data/photos/coffee.jpg")),
    (
        "hubble_deep_field",
        include_bytes!("../../data/photos/hubble_deep_field.jpg"),
    ),
    ("ihc", include_bytes!("../../data/photos/ihc.jpg")),
    ("retina", include_bytes!("../../data/photos/retina.jpg")),
    ("rocket", include_bytes!("../../data/photos/rocket.jpg")),
];

const VARIANTS: usize = 48;
const HUES: [&str; 8] = [
    "red", "orange", "yellow", "green", "cyan", "blue", "purple", "gray",
];

fn teacher(name: &str, what: &str) -> Option<Teacher> {
    let mut params = serde_json::Map::new();
    params.insert("demonstration".into(), serde_json::Value::Bool(true));
    params.insert("method".into(), serde_json::Value::String(what.into()));
    Some(Teacher::Model {
        name: name.into(),
        checkpoint: None,
        params,
    })
}

/// The four demo task definitions.
pub fn demo_tasks() -> Vec<TaskDef> {
    vec![
        TaskDef {
            name: "scene-color".into(),
            kind: TaskKind::Classification {
                num_classes: 8,
                class_names: Some(HUES.iter().map(|s| s.to_string()).collect()),
                encoding: ClassEncoding::Topk,
                multi_label: false,
            },
            teacher: teacher("demo-hue-histogram", "top-3 of the hue histogram"),
        },
        TaskDef {
            name: "bright-regions".into(),
            kind: TaskKind::Detection {
                num_classes: 2,
                class_names: Some(vec!["bright".into(), "dark".into()]),
                min_score_written: 0.2,
            },
            teacher: teacher(
                "demo-contrast-blobs",
                "connected grid cells far from the mean luminance",
            ),
        },
        TaskDef {
            name: "luma-bands".into(),
            kind: TaskKind::Segmentation {
                num_classes: 4,
                class_names: Some(vec![
                    "dark".into(),
                    "shadow".into(),
                    "midtone".into(),
                    "highlight".into(),
                ]),
                dtype: MaskDtype::U8,
                ignore_index: 255,
            },
            teacher: teacher(
                "demo-luma-quantizer",
                "luminance quartiles at 1/4 resolution",
            ),
        },
        TaskDef {
            name: "vertical-depth".into(),
            kind: TaskKind::Depth {
                representation: DepthRepresentation::InverseRelative,
                unit: None,
            },
            teacher: teacher("demo-vertical-prior", "lower is nearer, at 1/8 resolution"),
        },
    ]
}

/// Makes `VARIANTS` crops and flips of each bundled photo, as JPEG bytes.
pub fn demo_images(per_photo: usize) -> anyhow::Result<Vec<InputImage>> {
    let mut out = Vec::new();
    for (p, (name, bytes)) in PHOTOS.iter().enumerate() {
        let photo = image::load_from_memory(bytes)
            .with_context(|| format!("decoding bundled photo {name}"))?
            .to_rgb8();
        let (w, h) = photo.dimensions();
        for v in 0..per_photo {
            let mut rng = rand::rngs::StdRng::seed_from_u64((p * 1000 + v) as u64);
            let scale: f32 = if v == 0 {
                1.0
            } else {
                rng.random_range(0.45..1.0)
            };
            let aspect: f32 = rng.random_range(0.75..1.33);
            let cw = ((w as f32 * scale * aspect.sqrt()).min(w as f32) as u32).max(16);
            let ch = ((h as f32 * scale / aspect.sqrt()).min(h as f32) as u32).max(16);
            let x = rng.random_range(0..=(w - cw));
            let y = rng.random_range(0..=(h - ch));
            let mut img = imageops::crop_imm(&photo, x, y, cw, ch).to_image();
            if v % 2 == 1 {
                img = imageops::flip_horizontal(&img);
            }
            let longest = cw.max(ch);
            if longest > 480 {
                let f = 480.0 / longest as f32;
                img = imageops::resize(
                    &img,
                    ((cw as f32 * f) as u32).max(1),
                    ((ch as f32 * f) as u32).max(1),
                    imageops::FilterType::Triangle,
                );
            }
            let mut jpeg = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 88).encode_image(&img)?;
            out.push(InputImage {
                image_id: format!("demo/{name}_{v:03}.jpg"),
                data: InputData::Bytes(jpeg.into()),
            });
        }
    }
    Ok(out)
}

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

/// Builds the demo dataset at `dir` with about `images` images (a multiple
/// of the 7 bundled photos), on a runtime of its own.
pub fn build(dir: &Path, images: usize) -> anyhow::Result<()> {
    build_with(dir, images, false, BlobCodec::default())
}

/// The name and description of every demo dataset.
fn demo_info() -> DatasetInfo {
    DatasetInfo {
        name: "must-demo".into(),
        description: "crops and flips of public-domain photos, labeled by demonstration teachers"
            .into(),
    }
}

/// The files of the demo dataset at `dir`, which the demo may replace:
/// empty when `dir` is empty, and a reason when `dir` holds anything the
/// demo did not make. A dataset counts as the demo's only when its name,
/// description and tasks are the demo's, every commit is one the demo
/// makes (init, the demo's task definitions, ingest, labels without
/// replace or remove), and every file under `dir` is its log, a checkpoint
/// or a data file its log references: a folder, link or file of anyone
/// else, or any relabeling, makes it somebody's data.
fn demo_files(dir: &Path, rt: &tokio::runtime::Runtime) -> Result<Vec<PathBuf>, String> {
    let entries: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot be read ({e})"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot be read ({e})"))?;
    if entries.is_empty() {
        return Ok(vec![]);
    }
    let others: Vec<&String> = entries
        .iter()
        .filter(|e| !["_must", "images", "labels"].contains(&e.as_str()))
        .collect();
    if !others.is_empty() {
        return Err(format!("holds files the demo did not make ({others:?})"));
    }
    let url = dir.to_string_lossy().to_string();
    let ds = rt
        .block_on(Dataset::open(&url))
        .map_err(|e| format!("holds something that is not a readable must-ds dataset ({e})"))?;
    let snap = ds.snapshot();
    let what = format!(
        "holds the dataset {:?} (version {}, {} image shards, tasks: {})",
        snap.info.name,
        snap.version,
        snap.images.len(),
        snap.tasks.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    let tasks: std::collections::BTreeMap<String, TaskDef> = demo_tasks()
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    if snap.info != demo_info() || snap.tasks != tasks {
        return Err(format!("{what}, which the demo did not make"));
    }
    let history = rt
        .block_on(ds.history())
        .map_err(|e| format!("{what}: {e}"))?;
    let mut data = std::collections::HashSet::new();
    for c in &history {
        let ours = matches!(
            c.operation.as_str(),
            "init" | "define-task" | "ingest" | "add-labels"
        );
        if !ours {
            return Err(format!(
                "{what}, changed by {:?} (version {})",
                c.operation, c.version
            ));
        }
        for a in &c.actions {
            match a {
                crate::format::Action::AddImages(x) => {
                    data.insert(x.path.clone());
                }
                crate::format::Action::AddLabels(x) if !x.replace => {
                    data.insert(x.path.clone());
                }
                crate::format::Action::Remove(_) | crate::format::Action::AddLabels(_) => {
                    return Err(format!("{what}, relabeled at version {}", c.version))
                }
                _ => {}
            }
        }
    }
    let mut files = vec![];
    for entry in walkdir::WalkDir::new(dir).follow_links(false).min_depth(1) {
        let entry = entry.map_err(|e| format!("cannot be read ({e})"))?;
        let rel = entry
            .path()
            .strip_prefix(dir)
            .unwrap_or(entry.path())
            .to_string_lossy()
            .replace(std::path::MAIN_SEPARATOR, "/");
        if entry.file_type().is_dir() {
            continue;
        }
        let known = entry.file_type().is_file()
            && (data.contains(&rel)
                || (rel.starts_with("_must/log/")
                    && crate::store::layout::version_of(&rel, ".json")
                        .is_some_and(|v| v <= snap.version))
                || (rel.starts_with("_must/checkpoint/")
                    && crate::store::layout::version_of(&rel, ".parquet").is_some())
                || rel == crate::store::layout::LAST_CHECKPOINT);
        if !known {
            return Err(format!("{what}, and {rel:?}, which the demo did not write"));
        }
        files.push(entry.path().to_path_buf());
    }
    Ok(files)
}

/// Removes exactly `files` of the demo dataset at `dir`, then the folders
/// they leave empty (never a folder that still holds something).
fn remove_demo(dir: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    for f in files {
        std::fs::remove_file(f).with_context(|| format!("removing {}", f.display()))?;
    }
    let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .min_depth(1)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect();
    // Deepest first.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        std::fs::remove_dir(&d).with_context(|| format!("removing the folder {}", d.display()))?;
    }
    Ok(())
}

/// [`build`], with masks and depth at full resolution when `full_res_maps`.
/// and the blob columns compressed with `codec`.
pub fn build_with(
    dir: &Path,
    images: usize,
    full_res_maps: bool,
    codec: BlobCodec,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    run(dir, images, full_res_maps, codec, &rt, &mut std::io::sink())
}

pub(crate) fn run(
    dir: &Path,
    images: usize,
    full_res_maps: bool,
    codec: BlobCodec,
    rt: &tokio::runtime::Runtime,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if dir.exists() {
        let files = demo_files(dir, rt).map_err(|why| {
            anyhow::anyhow!(
                "{} {why}; `must-ds demo` replaces only a dataset that it made itself and deletes nothing else: choose another folder",
                dir.display()
            )
        })?;
        if !files.is_empty() {
            writeln!(
                out,
                "replacing the previous demo dataset at {}",
                dir.display()
            )?;
            remove_demo(dir, &files)?;
        }
    }
    let url = dir.to_string_lossy().to_string();
    let mut ds = rt.block_on(Dataset::init(&url, demo_info()))?;
    for t in demo_tasks() {
        rt.block_on(ds.define_task(t))?;
    }
    let inputs = demo_images(images.div_ceil(PHOTOS.len()).max(1))?;
    writeln!(
        out,
        "ingesting {} demo images made from {} bundled photos",
        inputs.len(),
        PHOTOS.len()
    )?;
    let mut opts = IngestOptions::new("demo");
    // One worker: the same shards on every run (96, 96, 96 and 48 rows by default).
    opts.workers = 1;
    if inputs.len() <= PHOTOS.len() * VARIANTS {
        opts.shard.shard_rows = 96;
        opts.shard.row_group_rows = 32;
    } else {
        opts.shard.shard_rows = 1024;
        opts.shard.row_group_rows = 128;
    }
    let report = ingest(rt.handle(), &ds, inputs, &opts, None)?;
    writeln!(
        out,
        "  {} images in {} image shards ({:.1} MiB)",
        report.images,
        report.shards.len(),
        report.image_bytes as f64 / 1048576.0
    )?;
    writeln!(
        out,
        "labeling with 4 DEMONSTRATION teachers: simple image statistics (hue histogram, contrast blobs,\n  luminance bands, a vertical depth prior), not models; the labels show the format, not accuracy"
    )?;
    rt.block_on(ds.refresh())?;
    let shards: Vec<u64> = ds.snapshot().images.keys().copied().collect();
    let ds = Arc::new(ds);
    rt.block_on(async {
        let jobs: Vec<_> = shards
            .iter()
            .map(|&s| {
                let ds = ds.clone();
                tokio::spawn(async move { label_shard_maps(&ds, s, full_res_maps, codec).await })
            })
            .collect();
        for j in jobs {
            j.await.context("a labeling job failed")??;
        }
        anyhow::Ok(())
    })?;
    let ds = rt.block_on(Dataset::open(&url))?;
    writeln!(out, "\n$ must-ds inspect {}", dir.display())?;
    super::inspect::print_summary(&super::inspect::summarize(ds.url(), ds.snapshot()), out)?;
    Ok(())
}
