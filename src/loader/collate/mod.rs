//! Collation: one augmented sample's labels written into the batch's dense
//! arrays, one module per label kind. Every dispatch here matches on the
//! task's kind (or the batch array's) with one arm per kind and no
//! catch-all, so that a new kind fails to compile until each place handles
//! it; within a kind's module, a label of another kind is refused with
//! [`other_kind`].

use std::collections::BTreeMap;

use super::batch::{LabelOptions, TaskBatch, TaskData};
use crate::codec::{Geometry, LabelRef};
use crate::format::{TaskDef, TaskKind};

mod classification;
mod depth;
mod detection;
mod segmentation;

/// One box after augmentation: corners, class, score.
pub(crate) type BoxOut = ([f32; 4], i64, f32);

/// Per-batch buffers being filled.
pub(crate) struct Collator<'a> {
    pub tasks: &'a [TaskDef],
    pub opts: &'a LabelOptions,
    pub b: usize,
    pub w: u32,
    pub h: u32,
    /// Dense labels at (w / stride) × (h / stride).
    pub stride: u32,
}

/// The error for a label whose kind is not its task's.
fn other_kind(label: &LabelRef<'_>, t: &TaskDef) -> String {
    format!(
        "a {} label in task {:?} of another kind",
        label.kind_name(),
        t.name
    )
}

impl Collator<'_> {
    /// W'×H' of dense labels.
    pub fn label_size(&self) -> (u32, u32) {
        (self.w / self.stride, self.h / self.stride)
    }

    /// Values per sample of a dense label map.
    fn map_len(&self) -> usize {
        let (lw, lh) = self.label_size();
        (lw * lh) as usize
    }

    /// Fresh arrays for a batch (reusing `old` buffers when given).
    pub fn empty_tasks(
        &self,
        old: Option<BTreeMap<String, TaskBatch>>,
    ) -> BTreeMap<String, TaskBatch> {
        let mut old = old.unwrap_or_default();
        let (b, lhw) = (self.b, self.map_len());
        self.tasks
            .iter()
            .map(|t| {
                let prev = old.remove(&t.name);
                let (present, prev) = match prev {
                    Some(p) => (Some(p.present), Some(p.data)),
                    None => (None, None),
                };
                let mut present = present.unwrap_or_default();
                present.clear();
                present.resize(b, false);
                let data = match &t.kind {
                    TaskKind::Classification { num_classes, .. } => {
                        classification::empty(*num_classes as usize, b, prev)
                    }
                    TaskKind::Detection { .. } => detection::empty(prev),
                    TaskKind::Segmentation {
                        ignore_index,
                        dtype,
                        ..
                    } => segmentation::empty(*ignore_index, *dtype, b * lhw, prev),
                    TaskKind::Depth { .. } => depth::empty(b * lhw, prev),
                };
                (t.name.clone(), TaskBatch { present, data })
            })
            .collect()
    }

    /// Resets slot `i` of every task to "no label".
    pub fn clear(&self, tasks: &mut BTreeMap<String, TaskBatch>, i: usize) {
        for tb in tasks.values_mut() {
            self.clear_task(tb, i);
        }
    }

    /// Resets slot `i` of one task to "no label".
    pub fn clear_task(&self, tb: &mut TaskBatch, i: usize) {
        let lhw = self.map_len();
        let map = i * lhw..(i + 1) * lhw;
        tb.present[i] = false;
        match &mut tb.data {
            TaskData::Classification { num_classes, probs } => {
                classification::clear(probs, *num_classes, i)
            }
            // Boxes are laid out by `finish_boxes`, from the samples' lists.
            TaskData::Detection { .. } => {}
            TaskData::Segmentation { mask, ignore_index } => {
                segmentation::clear(mask, *ignore_index, map)
            }
            TaskData::Depth { depth } => depth::clear(depth, map),
        }
    }

    /// Writes sample `i`'s label of task `t` into `tb` through `g` (the
    /// value checks first); a detection label's boxes come back instead, to
    /// be padded to the batch's N by [`finish_boxes`](Self::finish_boxes).
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &self,
        tb: &mut TaskBatch,
        t: &TaskDef,
        i: usize,
        label: LabelRef<'_>,
        g: &Geometry,
        img_w: u32,
        img_h: u32,
    ) -> Result<Option<Vec<BoxOut>>, String> {
        label.check(t)?;
        // The label grid: the same window at 1/stride of the output's pixels.
        let s = self.stride as f64;
        let gl = Geometry {
            sx: g.sx * s,
            sy: g.sy * s,
            ..*g
        };
        let image = (img_w, img_h);
        let r = match &t.kind {
            TaskKind::Classification { multi_label, .. } => {
                classification::put(self, &mut tb.data, t, i, label, *multi_label)?;
                None
            }
            TaskKind::Detection { .. } => Some(detection::put(self, t, label, g)?),
            TaskKind::Segmentation { .. } => {
                segmentation::put(self, &mut tb.data, t, i, label, &gl, image)?;
                None
            }
            TaskKind::Depth { .. } => {
                depth::put(self, &mut tb.data, t, i, label, &gl, image)?;
                None
            }
        };
        tb.present[i] = true;
        Ok(r)
    }

    /// Pads every sample's boxes to the batch's N (nothing for other kinds).
    pub fn finish_boxes(&self, tb: &mut TaskBatch, prepared: Vec<Vec<BoxOut>>) {
        match &mut tb.data {
            TaskData::Detection { .. } => detection::finish(self, &mut tb.data, prepared),
            TaskData::Classification { .. }
            | TaskData::Segmentation { .. }
            | TaskData::Depth { .. } => {}
        }
    }
}

/// A geometry with the image size, the map size and the output size.
type MapGeometry<'a> = (&'a Geometry, (u32, u32), (u32, u32), (u32, u32));

/// Fills an output map (`out_w`×`out_h`, row-major) from a `map_w`×`map_h`
/// label map through `g` by nearest sampling: `at(r, c)` is the map's value
/// at row `r`, column `c`; pixels outside the map get `outside`. Output
/// rows that sample the same map row are copies of the first.
fn resample<T: Copy>(
    out: &mut [T],
    (g, image, map, (out_w, out_h)): MapGeometry<'_>,
    outside: T,
    at: impl Fn(usize, usize) -> T,
) {
    let (cols, rows) = g.map_axes(image, map, (out_w, out_h));
    let (mw, mh) = (map.0 as usize, map.1 as usize);
    let ow = out_w as usize;
    let inside = cols.iter().all(|&c| c < mw);
    let mut prev: Option<(usize, usize)> = None;
    for (y, &ry) in rows.iter().enumerate() {
        let (done, o) = out.split_at_mut(y * ow);
        let o = &mut o[..ow];
        if ry >= mh {
            o.fill(outside);
            continue;
        }
        if let Some((py, pi)) = prev {
            if py == ry {
                o.copy_from_slice(&done[pi * ow..(pi + 1) * ow]);
                continue;
            }
        }
        if inside {
            for (v, &cx) in o.iter_mut().zip(&cols) {
                *v = at(ry, cx);
            }
        } else {
            for (v, &cx) in o.iter_mut().zip(&cols) {
                *v = if cx < mw { at(ry, cx) } else { outside };
            }
        }
        prev = Some((ry, y));
    }
}
