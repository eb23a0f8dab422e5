//! `must-ds render`: a picture of one sample with all its labels (boxes
//! with class names, the segmentation over the image with a legend, the
//! depth map in a perceptual colormap) or a contact sheet of many.
//!
//! Each kind draws in its own module; this one lays out the picture
//! (panels, captions, legends, the grid), holds the font and the class
//! colors, and hands each label to its kind.

mod classification;
mod depth;
mod detection;
mod load;
mod segmentation;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use image::{imageops, Rgba, RgbaImage};
use rand::SeedableRng;

use self::load::{find, load, locate};
use crate::codec::Label;
use crate::error::{Error, Location, Result};
use crate::format::{TaskDef, TaskKind};
use crate::store::Dataset;

const FONT: &[u8] = include_bytes!("../../../data/fonts/DejaVuSans.ttf");

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

/// The color of class `c`.
pub fn class_color(c: u32) -> Rgba<u8> {
    let [r, g, b] = PALETTE[c as usize % PALETTE.len()];
    Rgba([r, g, b, 255])
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

/// What a kind's panel is drawn from: the image scaled to the panel.
struct Canvas<'a> {
    /// The image at the panel's size.
    base: &'a RgbaImage,
    /// Image pixels → panel pixels.
    scale: f32,
    text: &'a Text<'a>,
}

/// Whether a label of this kind gets a panel (counted against
/// [`MAX_PANELS`]) rather than a line of the caption.
fn draws_panel(kind: &TaskKind) -> bool {
    match kind {
        TaskKind::Classification { .. } => false,
        TaskKind::Detection { .. } | TaskKind::Segmentation { .. } | TaskKind::Depth { .. } => true,
    }
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
    let canvas = Canvas {
        base: &base,
        scale,
        text,
    };
    for (k, (task, label)) in sample.labels.iter().enumerate() {
        let Some(label) = label else {
            caption.push(format!("{}: no label", task.name));
            continue;
        };
        if draws_panel(&task.kind) && panels.len() >= MAX_PANELS {
            not_drawn.push(task.name.as_str());
            continue;
        }
        // A label that breaks the rules is not drawn (its sizes index its
        // maps): the caption and `problems` say why.
        if let Err(reason) = label.check(task) {
            let loc = sample.locations.get(k).cloned().unwrap_or_default();
            caption.push(format!("{}: invalid label ({reason})", task.name));
            problems.push(format!("{loc}: task {:?}: {reason}", task.name));
            continue;
        }
        match (&task.kind, label) {
            (TaskKind::Classification { .. }, Label::Classification(c)) => {
                caption.push(classification::caption(task, c))
            }
            (TaskKind::Detection { .. }, Label::Detection(d)) => {
                let (p, legend) = detection::panel(task, d, opts.min_score, &canvas);
                panels.push((task.name.clone(), p, legend));
            }
            (
                TaskKind::Segmentation {
                    dtype,
                    ignore_index,
                    ..
                },
                Label::Segmentation(m),
            ) => {
                let (p, legend) = segmentation::panel(task, m, *dtype, *ignore_index, &canvas);
                panels.push((task.name.clone(), p, legend));
            }
            (TaskKind::Depth { .. }, Label::Depth(d)) => {
                let (p, legend) = depth::panel(d, &canvas);
                panels.push((task.name.clone(), p, legend));
            }
            // A label of another kind than its task fails `check` above:
            // nothing to draw.
            (
                TaskKind::Classification { .. },
                Label::Detection(_) | Label::Segmentation(_) | Label::Depth(_),
            )
            | (
                TaskKind::Detection { .. },
                Label::Classification(_) | Label::Segmentation(_) | Label::Depth(_),
            )
            | (
                TaskKind::Segmentation { .. },
                Label::Classification(_) | Label::Detection(_) | Label::Depth(_),
            )
            | (
                TaskKind::Depth { .. },
                Label::Classification(_) | Label::Detection(_) | Label::Segmentation(_),
            ) => {}
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
