//! Detection in a picture: each box as a frame in its class color with a
//! tag of class name and score; the legend lists the classes drawn.

use image::{Rgba, RgbaImage};

use super::{class_color, fill, name, rect, Canvas, Legend};
use crate::codec::Detections;
use crate::format::TaskDef;

/// The panel of `task`'s boxes `d` over the image; boxes scored below
/// `min_score` are left out.
pub(super) fn panel(
    task: &TaskDef,
    d: &Detections,
    min_score: f32,
    at: &Canvas,
) -> (RgbaImage, Legend) {
    let (scale, w, text) = (at.scale, at.base.width(), at.text);
    let mut p = at.base.clone();
    let mut legend = vec![];
    for ((b, &c), &s) in d.boxes.iter().zip(&d.classes).zip(&d.scores) {
        if s < min_score {
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
    (p, legend)
}
