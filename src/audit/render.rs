//! `must-ds render`: a picture of one sample with all its labels (boxes
//! with class names, the segmentation over the image with a legend, the
//! depth map in a perceptual colormap) or a contact sheet of many.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use image::{imageops, Rgba, RgbaImage};
use rand::SeedableRng;

use crate::codec::{ClassLabel, Label};
use crate::error::{Error, Location, Result};
use crate::format::{TaskDef, TaskKind};
use crate::store::Dataset;

const FONT: &[u8] = include_bytes!("../../data/fonts/DejaVuSans.ttf");

/// Class colors (tab20-like), by class id modulo its length.
pub const PALETTE: [[u8; 3]; 20] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
    [174, 199, 232],
    [255, 187, 120],
    [152, 223, 138],
    [255, 152, 150],
    [197, 176, 213],
    [196, 156, 148],
    [247, 182, 210],
    [199, 199, 199],
    [219, 219, 141],
    [158, 218, 229],
];

/// Viridis at nine stops, for depth.
const VIRIDIS: [[f32; 3]; 9] = [
    [68.0, 1.0, 84.0],
    [71.0, 44.0, 122.0],
    [59.0, 81.0, 139.0],
    [44.0, 113.0, 142.0],
    [33.0, 144.0, 141.0],
    [39.0, 173.0, 129.0],
    [92.0, 200.0, 99.0],
    [170.0, 220.0, 50.0],
    [253.0, 231.0, 37.0],
];

/// The color of class `c`.
pub fn class_color(c: u32) -> Rgba<u8> {
    let [r, g, b] = PALETTE[c as usize % PALETTE.len()];
    Rgba([r, g, b, 255])
}

fn viridis(t: f32) -> Rgba<u8> {
    let t = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f32;
    let i = (t as usize).min(VIRIDIS.len() - 2);
    let f = t - i as f32;
    let c = |k: usize| (VIRIDIS[i][k] * (1.0 - f) + VIRIDIS[i + 1][k] * f) as u8;
    Rgba([c(0), c(1), c(2), 255])
}

/// How to render.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Only these tasks (all when `None`).
    pub tasks: Option<Vec<String>>,
    /// Height of each panel in pixels.
    pub panel_height: u32,
    /// Boxes scored below this are not drawn.
    pub min_score: f32,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            tasks: None,
            panel_height: 320,
            min_score: 0.0,
        }
    }
}

/// Where a panel showing the image sits in the picture, for checking it.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Task shown.
    pub task: String,
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Image pixels → panel pixels.
    pub scale: f32,
}

/// A rendered picture and its panels.
pub struct Rendered {
    /// The picture.
    pub image: RgbaImage,
    /// Panels in the picture.
    pub panels: Vec<Panel>,
    /// Labels that break the format's rules (a mask shorter than its size, an
    /// empty map...), each with its file, row, image id and why: they are
    /// not drawn, and the picture says so in its caption. `must-ds validate`
    /// lists every such label.
    pub problems: Vec<String>,
}

struct Text<'a> {
    font: FontRef<'a>,
}

impl Text<'_> {
    fn new() -> Self {
        Self {
            font: FontRef::try_from_slice(FONT).expect("the bundled font parses"),
        }
    }

    fn width(&self, s: &str, px: f32) -> u32 {
        let f = self.font.as_scaled(PxScale::from(px));
        s.chars()
            .map(|c| f.h_advance(f.glyph_id(c)))
            .sum::<f32>()
            .ceil() as u32
    }

    /// Draws `s` with its top-left at (x, y).
    fn draw(&self, img: &mut RgbaImage, x: i32, y: i32, s: &str, px: f32, color: Rgba<u8>) {
        let f = self.font.as_scaled(PxScale::from(px));
        let mut caret = x as f32;
        for ch in s.chars() {
            if caret > img.width() as f32 {
                break;
            }
            let id = f.glyph_id(ch);
            let glyph = id.with_scale_and_position(
                PxScale::from(px),
                ab_glyph::point(caret, y as f32 + f.ascent()),
            );
            caret += f.h_advance(id);
            if let Some(outline) = self.font.outline_glyph(glyph) {
                let b = outline.px_bounds();
                outline.draw(|gx, gy, cov| {
                    let (px_, py_) = (b.min.x as i32 + gx as i32, b.min.y as i32 + gy as i32);
                    if px_ >= 0
                        && py_ >= 0
                        && (px_ as u32) < img.width()
                        && (py_ as u32) < img.height()
                    {
                        blend(img.get_pixel_mut(px_ as u32, py_ as u32), color, cov);
                    }
                });
            }
        }
    }
}

fn blend(p: &mut Rgba<u8>, c: Rgba<u8>, a: f32) {
    for k in 0..3 {
        p[k] = (p[k] as f32 * (1.0 - a) + c[k] as f32 * a).round() as u8;
    }
    p[3] = 255;
}

fn fill(img: &mut RgbaImage, x0: i32, y0: i32, x1: i32, y1: i32, c: Rgba<u8>) {
    let (w, h) = (
        img.width().min(i32::MAX as u32) as i32,
        img.height().min(i32::MAX as u32) as i32,
    );
    for y in y0.max(0)..y1.min(h) {
        for x in x0.max(0)..x1.min(w) {
            img.put_pixel(x as u32, y as u32, c);
        }
    }
}

/// A frame of thickness `t` (coordinates from data: any i32, no overflow).
fn rect(img: &mut RgbaImage, x0: i32, y0: i32, x1: i32, y1: i32, t: i32, c: Rgba<u8>) {
    fill(img, x0, y0, x1, y0.saturating_add(t), c);
    fill(img, x0, y1.saturating_sub(t), x1, y1, c);
    fill(img, x0, y0, x0.saturating_add(t), y1, c);
    fill(img, x1.saturating_sub(t), y0, x1, y1, c);
}

/// Row-major index of (my, mx) in a map of `h` × `w` (not empty), clamped
/// inside it.
fn map_index(my: usize, mx: usize, h: u32, w: u32) -> usize {
    my.min((h as usize).saturating_sub(1)) * w as usize + mx.min((w as usize).saturating_sub(1))
}

/// The widest panel drawn, in pixels: a very wide image (a valid 65535 × 1
/// PNG is a few bytes) is scaled down to it rather than up to millions of
/// pixels.
const MAX_PANEL_WIDTH: u32 = 4096;

/// The most panels in one sample's picture: a log may define any number of
/// tasks; the others are named in the caption.
const MAX_PANELS: usize = 16;

fn name(task: &TaskDef, c: u32) -> String {
    task.kind
        .class_names()
        .and_then(|n| n.get(c as usize).cloned())
        .unwrap_or_else(|| format!("class {c}"))
}

/// Colored squares with their names, under a panel.
type Legend = Vec<(Rgba<u8>, String)>;

/// One sample: its image, id and labels.
struct Sample {
    image_id: String,
    image: RgbaImage,
    labels: Vec<(TaskDef, Option<Label>)>,
    /// Per task (same order): where its label is, for problems.
    locations: Vec<Location>,
}

fn compose(sample: &Sample, opts: &RenderOptions, text: &Text) -> Rendered {
    let (iw, ih) = (
        sample.image.width().max(1) as f32,
        sample.image.height().max(1) as f32,
    );
    let mut h = opts.panel_height.max(32);
    let mut scale = h as f32 / ih;
    if iw * scale > MAX_PANEL_WIDTH as f32 {
        scale = MAX_PANEL_WIDTH as f32 / iw;
        h = ((ih * scale).round() as u32).max(1);
    }
    let w = ((iw * scale).round() as u32).clamp(1, MAX_PANEL_WIDTH);
    let base = imageops::resize(&sample.image, w, h, imageops::FilterType::Triangle);
    let (gap, header, title) = (8u32, 26u32, 18u32);
    let mut panels: Vec<(String, RgbaImage, Legend)> = vec![];
    let mut caption = vec![];
    let mut problems = vec![];
    let mut not_drawn = vec![];
    for (k, (task, label)) in sample.labels.iter().enumerate() {
        let panel = label.is_some() && !matches!(task.kind, TaskKind::Classification { .. });
        if panel && panels.len() >= MAX_PANELS {
            not_drawn.push(task.name.as_str());
            continue;
        }
        // A label that breaks the rules is not drawn (its sizes index its
        // maps): the caption and `problems` say why.
        if let Some(Err(reason)) = label.as_ref().map(|l| l.check(task)) {
            let loc = sample.locations.get(k).cloned().unwrap_or_default();
            caption.push(format!("{}: invalid label ({reason})", task.name));
            problems.push(format!("{loc}: task {:?}: {reason}", task.name));
            continue;
        }
        match (&task.kind, label) {
            (TaskKind::Classification { .. }, Some(Label::Classification(c))) => {
                let pairs: Vec<(u32, f32)> = match c {
                    ClassLabel::TopK { classes, probs } => classes
                        .iter()
                        .copied()
                        .zip(probs.iter().copied())
                        .take(3)
                        .collect(),
                    ClassLabel::Dense(p) => {
                        let mut v: Vec<(u32, f32)> =
                            p.iter().enumerate().map(|(i, p)| (i as u32, *p)).collect();
                        v.sort_by(|a, b| b.1.total_cmp(&a.1));
                        v.truncate(3);
                        v
                    }
                };
                let s: Vec<String> = pairs
                    .iter()
                    .map(|(c, p)| format!("{} {:.2}", name(task, *c), p))
                    .collect();
                caption.push(format!("{}: {}", task.name, s.join(", ")));
            }
            (TaskKind::Detection { .. }, Some(Label::Detection(d))) => {
                let mut p = base.clone();
                let mut legend = vec![];
                for ((b, &c), &s) in d.boxes.iter().zip(&d.classes).zip(&d.scores) {
                    if s < opts.min_score {
                        continue;
                    }
                    let col = class_color(c);
                    let q = |v: f32| (v * scale).round() as i32;
                    rect(&mut p, q(b[0]), q(b[1]), q(b[2]), q(b[3]), 2, col);
                    let tag = format!("{} {:.2}", name(task, c), s);
                    let tw = text.width(&tag, 12.0).min(i32::MAX as u32 / 2) as i32;
                    // The tag sits above the box, or inside it at the top edge.
                    let ty = if q(b[1]) >= 15 { q(b[1]) - 15 } else { q(b[1]) };
                    let tx = q(b[0]).min(w as i32 - tw - 4).max(0);
                    fill(&mut p, tx, ty, tx + tw + 4, ty.saturating_add(15), col);
                    text.draw(&mut p, tx + 2, ty, &tag, 12.0, Rgba([255, 255, 255, 255]));
                    if !legend.iter().any(|(lc, _)| *lc == col) {
                        legend.push((col, name(task, c)));
                    }
                }
                panels.push((task.name.clone(), p, legend));
            }
            (
                TaskKind::Segmentation {
                    dtype,
                    ignore_index,
                    ..
                },
                Some(Label::Segmentation(m)),
            ) => {
                let mut p = base.clone();
                let values = m.values(dtype.size());
                let mut present = std::collections::BTreeSet::new();
                for y in 0..h {
                    let my = ((y as f32 + 0.5) / h as f32 * m.height as f32) as usize;
                    for x in 0..w {
                        let mx = ((x as f32 + 0.5) / w as f32 * m.width as f32) as usize;
                        let v = values[map_index(my, mx, m.height, m.width)];
                        if v != *ignore_index {
                            blend(p.get_pixel_mut(x, y), class_color(v), 0.55);
                            present.insert(v);
                        }
                    }
                }
                let legend = present
                    .into_iter()
                    .map(|c| (class_color(c), name(task, c)))
                    .collect();
                panels.push((task.name.clone(), p, legend));
            }
            (TaskKind::Depth { .. }, Some(Label::Depth(d))) => {
                let vals = d.to_f32();
                let finite: Vec<f32> = vals.iter().copied().filter(|v| v.is_finite()).collect();
                let (lo, hi) = finite
                    .iter()
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                        (a.min(v), b.max(v))
                    });
                let mut p = RgbaImage::new(w, h);
                for y in 0..h {
                    let my = ((y as f32 + 0.5) / h as f32 * d.height as f32) as usize;
                    for x in 0..w {
                        let mx = ((x as f32 + 0.5) / w as f32 * d.width as f32) as usize;
                        let v = vals[map_index(my, mx, d.height, d.width)];
                        let c = if v.is_finite() {
                            viridis((v - lo) / (hi - lo).max(1e-6))
                        } else {
                            Rgba([128, 128, 128, 255])
                        };
                        p.put_pixel(x, y, c);
                    }
                }
                let legend = vec![
                    (viridis(0.0), format!("{lo:.3}")),
                    (viridis(1.0), format!("{hi:.3}")),
                    (Rgba([128, 128, 128, 255]), "NaN".into()),
                ];
                panels.push((task.name.clone(), p, legend));
            }
            (_, None) => caption.push(format!("{}: no label", task.name)),
            _ => {}
        }
    }
    if !not_drawn.is_empty() {
        caption.push(format!(
            "{} more task(s) not drawn (choose with --tasks): {}",
            not_drawn.len(),
            not_drawn.join(", ")
        ));
    }
    if panels.is_empty() {
        panels.push(("image".into(), base.clone(), vec![]));
    }
    let legend_rows = panels
        .iter()
        .map(|(_, _, l)| l.len().min(12))
        .max()
        .unwrap_or(0) as u32;
    let width = gap + panels.len() as u32 * (w + gap);
    let caption_text = caption.join("   ");
    // Ids and class names come from the data: a long one is cut at the
    // picture's edge, not allowed to widen it without bound.
    let width = width
        .max(text.width(&sample.image_id, 14.0).min(MAX_PANEL_WIDTH) + 2 * gap)
        .max(text.width(&caption_text, 13.0).min(MAX_PANEL_WIDTH) + 2 * gap);
    let captions = if caption.is_empty() { 0 } else { 20 };
    let height = header + captions + title + h + gap + legend_rows * 16 + gap;
    let mut img = RgbaImage::from_pixel(width, height, Rgba([255, 255, 255, 255]));
    let dark = Rgba([20, 20, 20, 255]);
    text.draw(&mut img, gap as i32, 5, &sample.image_id, 14.0, dark);
    if !caption.is_empty() {
        text.draw(
            &mut img,
            gap as i32,
            header as i32,
            &caption_text,
            13.0,
            dark,
        );
    }
    let top = header + captions + title;
    let mut out = vec![];
    for (i, (task, p, legend)) in panels.iter().enumerate() {
        let x = gap + i as u32 * (w + gap);
        text.draw(&mut img, x as i32, (top - title) as i32, task, 13.0, dark);
        imageops::overlay(&mut img, p, x as i64, top as i64);
        out.push(Panel {
            task: task.clone(),
            x,
            y: top,
            scale,
        });
        for (k, (c, label)) in legend.iter().take(12).enumerate() {
            let ly = (top + h + gap) as i32 + k as i32 * 16;
            fill(&mut img, x as i32, ly + 2, x as i32 + 12, ly + 14, *c);
            text.draw(&mut img, x as i32 + 16, ly, label, 12.0, dark);
        }
    }
    Rendered {
        image: img,
        panels: out,
        problems,
    }
}

async fn load(
    ds: &Dataset,
    shard: u64,
    group: usize,
    row: usize,
    opts: &RenderOptions,
) -> Result<Sample> {
    let snap = ds.snapshot();
    let tasks: Vec<TaskDef> = match &opts.tasks {
        Some(n) => n
            .iter()
            .map(|t| snap.task(t).cloned())
            .collect::<Result<_>>()?,
        None => snap.tasks.values().cloned().collect(),
    };
    let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    let rg = ds.read_row_group(shard, group, &names, None).await?;
    let path = snap.shard(shard)?.path.clone();
    let rec = rg.images.get(row).ok_or_else(|| {
        Error::value(
            Location::file(&path),
            format!(
                "row group {group} has {} rows, not the row {row} the log promises",
                rg.images.len()
            ),
        )
    })?;
    let at = (rg.first_row as usize).saturating_add(row);
    let loc = Location::file(&path).at(at, Some(&rec.image_id));
    let bytes = rec.image.as_ref().ok_or_else(|| {
        Error::value(
            loc.clone(),
            "the image is not embedded (uri only); render needs the bytes",
        )
    })?;
    let mut rgb = crate::codec::Rgb::default();
    crate::codec::decode_rgb(bytes, &mut rgb, crate::codec::max_image_pixels())
        .map_err(|e| Error::value(loc.clone(), format!("image does not decode: {e}")))?;
    let image = image::DynamicImage::ImageRgb8(
        image::RgbImage::from_raw(rgb.width, rgb.height, rgb.data)
            .ok_or_else(|| Error::value(loc.clone(), "image does not decode"))?,
    )
    .to_rgba8();
    let labels = tasks
        .iter()
        .map(|t| {
            let label = rg
                .labels
                .get(&t.name)
                .and_then(|l| l.get(row))
                .cloned()
                .flatten();
            (t.clone(), label)
        })
        .collect();
    let locations = tasks
        .iter()
        .map(|t| {
            snap.labels.get(&(t.name.clone(), shard)).map_or_else(
                || loc.clone(),
                |l| Location::file(&l.path).at(at, Some(&rec.image_id)),
            )
        })
        .collect();
    Ok(Sample {
        image_id: rec.image_id.clone(),
        image,
        labels,
        locations,
    })
}

/// (shard, row group, row in group) of global row `index`. Row counts come
/// from the log: sums saturate rather than wrap (a log whose counts add up
/// past 2^64 has no row past that).
fn locate(ds: &Dataset, index: u64) -> Result<(u64, usize, usize)> {
    let snap = ds.snapshot();
    let mut first = 0u64;
    for (shard, a) in &snap.images {
        for (g, &n) in a.row_groups.iter().enumerate() {
            if index - first < n {
                let row = usize::try_from(index - first).map_err(|_| {
                    Error::value(
                        Location::file(&a.path),
                        format!(
                            "row group {g} claims {n} rows, more than this machine can address"
                        ),
                    )
                })?;
                return Ok((*shard, g, row));
            }
            first = first.saturating_add(n);
        }
    }
    Err(Error::value(
        Location::file(ds.url()),
        format!("index {index} is past the last row ({first} rows)"),
    ))
}

/// Finds `image_id` by reading the image id column of each shard in turn.
async fn find(ds: &Dataset, image_id: &str) -> Result<(u64, usize, usize)> {
    for (shard, a) in &ds.snapshot().images {
        let ids = ds.read_image_ids(*shard).await?;
        if let Some(pos) = ids.iter().position(|i| i == image_id) {
            let mut first = 0usize;
            for (g, &n) in a.row_groups.iter().enumerate() {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if pos - first < n {
                    return Ok((*shard, g, pos - first));
                }
                first = first.saturating_add(n);
            }
            return Err(Error::value(
                Location {
                    image_id: Some(image_id.into()),
                    ..Location::file(&a.path)
                },
                format!(
                    "the image is row {pos} of the file, past the {first} rows its row groups have in the log"
                ),
            ));
        }
    }
    Err(Error::value(
        Location {
            image_id: Some(image_id.into()),
            ..Location::file(ds.url())
        },
        "no such image_id in the dataset",
    ))
}

/// Renders one sample, chosen by image id or by global row index.
pub async fn render_sample(
    ds: &Dataset,
    image_id: Option<&str>,
    index: Option<u64>,
    opts: &RenderOptions,
) -> Result<Rendered> {
    let (s, g, r) = match (image_id, index) {
        (Some(id), _) => find(ds, id).await?,
        (None, Some(i)) => locate(ds, i)?,
        (None, None) => locate(ds, 0)?,
    };
    let sample = load(ds, s, g, r, opts).await?;
    Ok(compose(&sample, opts, &Text::new()))
}

/// A contact sheet of `n` samples drawn uniformly with `seed`, two per row.
pub async fn render_grid(
    ds: &Dataset,
    n: usize,
    seed: u64,
    opts: &RenderOptions,
) -> Result<Rendered> {
    let total = ds.snapshot().total_rows();
    if total == 0 {
        return Err(Error::value(
            Location::file(ds.url()),
            format!(
                "version {} has no image rows to render ({} image shards)",
                ds.version(),
                ds.snapshot().images.len()
            ),
        ));
    }
    let total = usize::try_from(total).unwrap_or(usize::MAX);
    let n = n.clamp(1, total);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut picks: Vec<u64> = rand::seq::index::sample(&mut rng, total, n)
        .into_iter()
        .map(|i| i as u64)
        .collect();
    picks.sort_unstable();
    let text = Text::new();
    let mut cells = vec![];
    let mut problems = vec![];
    for i in picks {
        let (s, g, r) = locate(ds, i)?;
        let mut cell = compose(&load(ds, s, g, r, opts).await?, opts, &text);
        problems.append(&mut cell.problems);
        cells.push(cell);
    }
    let cols = if cells.len() >= 2 { 2 } else { 1 };
    let cw = cells.iter().map(|c| c.image.width()).max().unwrap_or(1);
    let ch = cells.iter().map(|c| c.image.height()).max().unwrap_or(1);
    let rows = cells.len().div_ceil(cols) as u32;
    let mut img = RgbaImage::from_pixel(cw * cols as u32, ch * rows, Rgba([255, 255, 255, 255]));
    let mut panels = vec![];
    for (k, c) in cells.into_iter().enumerate() {
        let (x, y) = ((k % cols) as u32 * cw, (k / cols) as u32 * ch);
        imageops::overlay(&mut img, &c.image, x as i64, y as i64);
        panels.extend(c.panels.into_iter().map(|p| Panel {
            x: p.x + x,
            y: p.y + y,
            ..p
        }));
    }
    Ok(Rendered {
        image: img,
        panels,
        problems,
    })
}
