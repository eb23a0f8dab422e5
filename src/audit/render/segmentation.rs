//! Segmentation in a picture: the map blended over the image in class
//! colors (`ignore_index` left clear); the legend lists the classes present.

use std::collections::BTreeSet;

use image::RgbaImage;

use super::{blend, class_color, map_index, name, Canvas, Legend};
use crate::codec::SegMap;
use crate::format::{MaskDtype, TaskDef};

/// The panel of `task`'s map `m` (of `dtype`) over the image.
pub(super) fn panel(
    task: &TaskDef,
    m: &SegMap,
    dtype: MaskDtype,
    ignore_index: u32,
    at: &Canvas,
) -> (RgbaImage, Legend) {
    let (w, h) = at.base.dimensions();
    let mut p = at.base.clone();
    let values = m.values(dtype.size());
    let mut present = BTreeSet::new();
    for y in 0..h {
        let my = ((y as f32 + 0.5) / h as f32 * m.height as f32) as usize;
        for x in 0..w {
            let mx = ((x as f32 + 0.5) / w as f32 * m.width as f32) as usize;
            let v = values[map_index(my, mx, m.height, m.width)];
            if v != ignore_index {
                blend(p.get_pixel_mut(x, y), class_color(v), 0.55);
                present.insert(v);
            }
        }
    }
    let legend = present
        .into_iter()
        .map(|c| (class_color(c), name(task, c)))
        .collect();
    (p, legend)
}
