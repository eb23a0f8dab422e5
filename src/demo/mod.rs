//! The demo dataset: crops and flips of the bundled public-domain photos,
//! ingested as image shards and labeled by four demonstration teachers
//! (plain image statistics, not models). `must-ds demo` makes it; tests,
//! benchmarks and doc examples use it as their fixture.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use image::imageops;
use rand::{Rng, SeedableRng};

use crate::format::{
    ClassEncoding, DatasetInfo, DepthRepresentation, MaskDtype, TaskDef, TaskKind, Teacher,
};
use crate::ingest::{ingest, IngestOptions, InputData, InputImage};
use crate::store::Dataset;
use crate::write::BlobCodec;

mod folder;
mod teachers;

pub use teachers::{
    blob_teacher, depth_teacher, depth_teacher_at, hue_teacher, label_shard, label_shard_maps,
    luma_teacher, luma_teacher_at,
};

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

/// [`build`], with masks and depth at full resolution when `full_res_maps`,
/// and the blob columns compressed with `codec`.
pub fn build_with(
    dir: &Path,
    images: usize,
    full_res_maps: bool,
    codec: BlobCodec,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    create(dir, images, full_res_maps, codec, &rt, &mut std::io::sink())
}

/// Makes the demo dataset at `dir` on `rt`, telling `out` what it does:
/// refuses a folder that holds anything but an earlier demo dataset, which
/// it replaces (see [`build_with`] for the arguments).
pub fn create(
    dir: &Path,
    images: usize,
    full_res_maps: bool,
    codec: BlobCodec,
    rt: &tokio::runtime::Runtime,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if dir.exists() {
        let files = folder::demo_files(dir, rt).map_err(|why| {
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
            folder::remove_demo(dir, &files)?;
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
    Ok(())
}
