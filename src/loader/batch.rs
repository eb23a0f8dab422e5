//! The batch a trainer receives (FORMAT.md section 5) and the collation of
//! one augmented sample into it.

use std::collections::BTreeMap;

use crate::codec::LabelRef;
use crate::format::{MaskDtype, TaskDef, TaskKind};

use crate::codec::Geometry;

/// Pixels of a batch, B×3×H×W.
#[derive(Debug, Clone, PartialEq)]
pub enum Images {
    /// 0..=255.
    U8(Vec<u8>),
    /// `(x / 255 − mean) / std` per channel.
    F32(Vec<f32>),
}

/// A segmentation map buffer in the task's mask dtype.
#[derive(Debug, Clone, PartialEq)]
pub enum Mask {
    /// `dtype: u8` tasks.
    U8(Vec<u8>),
    /// `dtype: u16` tasks.
    U16(Vec<u16>),
}

impl Mask {
    /// Values.
    pub fn len(&self) -> usize {
        match self {
            Mask::U8(v) => v.len(),
            Mask::U16(v) => v.len(),
        }
    }

    /// No values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i`, widened.
    pub fn get(&self, i: usize) -> Option<u32> {
        match self {
            Mask::U8(v) => v.get(i).map(|&x| x as u32),
            Mask::U16(v) => v.get(i).map(|&x| x as u32),
        }
    }
}

/// The labels of one task for a batch; every array is dense, B first, in
/// the compact host layout of FORMAT.md section 5 (the tensor conversion
/// widens on the device). Equality compares depth bit for bit, so that
/// two batches with NaN in the same places are equal.
#[derive(Debug, Clone)]
pub enum TaskData {
    /// B×C probabilities.
    Classification {
        /// Classes (C).
        num_classes: usize,
        /// B×C.
        probs: Vec<f32>,
    },
    /// B×N boxes, N the batch's most boxes (or the cap).
    Detection {
        /// N.
        max_boxes: usize,
        /// B×N×4, x0, y0, x1, y1 in output pixels.
        boxes: Vec<f32>,
        /// B×N, −1 in padding.
        classes: Vec<i64>,
        /// B×N, 0 in padding.
        scores: Vec<f32>,
        /// B×N, true for real boxes.
        valid: Vec<bool>,
    },
    /// B×H'×W' class ids in the task's dtype, `ignore_index` where
    /// unlabeled, outside the image or under the confidence threshold.
    Segmentation {
        /// B×H'×W'.
        mask: Mask,
        /// The task's ignore index.
        ignore_index: u32,
    },
    /// B×1×H'×W' float16, NaN where invalid or outside the image.
    Depth {
        /// B×1×H'×W'.
        depth: Vec<half::f16>,
    },
}

impl PartialEq for TaskData {
    fn eq(&self, other: &Self) -> bool {
        use TaskData::*;
        match (self, other) {
            (
                Classification {
                    num_classes: a,
                    probs: p,
                },
                Classification {
                    num_classes: b,
                    probs: q,
                },
            ) => a == b && p == q,
            (
                Detection {
                    max_boxes: a,
                    boxes: b1,
                    classes: c1,
                    scores: s1,
                    valid: v1,
                },
                Detection {
                    max_boxes: b,
                    boxes: b2,
                    classes: c2,
                    scores: s2,
                    valid: v2,
                },
            ) => a == b && b1 == b2 && c1 == c2 && s1 == s2 && v1 == v2,
            (
                Segmentation {
                    mask: m1,
                    ignore_index: i1,
                },
                Segmentation {
                    mask: m2,
                    ignore_index: i2,
                },
            ) => m1 == m2 && i1 == i2,
            (Depth { depth: a }, Depth { depth: b }) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            _ => false,
        }
    }
}

/// One task's part of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskBatch {
    /// B: the sample has a label for this task.
    pub present: Vec<bool>,
    /// The arrays.
    pub data: TaskData,
}

/// One batch: B samples, fixed shapes (FORMAT.md section 5).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Epoch.
    pub epoch: u64,
    /// Index of the batch in this rank's epoch.
    pub index: u64,
    /// B.
    pub batch_size: usize,
    /// Output height.
    pub height: u32,
    /// Output width.
    pub width: u32,
    /// H' of dense labels: the output height divided by the label stride.
    pub label_height: u32,
    /// W' of dense labels: the output width divided by the label stride.
    pub label_width: u32,
    /// B×3×H×W.
    pub images: Images,
    /// B ids (empty for padding slots).
    pub image_ids: Vec<String>,
    /// B sources (empty for padding slots).
    pub sources: Vec<String>,
    /// B: true for slots that hold no sample (padding to equal batches, or a
    /// sample skipped by the corrupt-data policy or missing a required task);
    /// their images are zero and no task is present.
    pub padding: Vec<bool>,
    /// Per task, in name order.
    pub tasks: BTreeMap<String, TaskBatch>,
}

impl Batch {
    /// A task's arrays.
    pub fn task(&self, name: &str) -> Option<&TaskBatch> {
        self.tasks.get(name)
    }

    /// Samples that are not padding.
    pub fn real(&self) -> usize {
        self.padding.iter().filter(|p| !**p).count()
    }
}

/// What to do with top-k probability mass that is not in the top k.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingMass {
    /// Spread it evenly over the classes not listed (single-label tasks).
    #[default]
    Spread,
    /// Scale the listed probabilities to sum to 1.
    Renormalize,
    /// Leave the other classes at 0.
    Ignore,
}

/// Load-time label options.
#[derive(Debug, Clone)]
pub struct LabelOptions {
    /// Boxes under this score are dropped.
    pub min_score: f32,
    /// Pixels with confidence under this (0..1) become `ignore_index`.
    pub min_confidence: f32,
    /// Top-k mass handling.
    pub missing_mass: MissingMass,
    /// Fixed N for detection (the top-scoring boxes kept), or the batch's max.
    pub max_boxes: Option<usize>,
    /// Boxes narrower or lower than this many output pixels are dropped.
    pub min_box_size: f32,
}

impl Default for LabelOptions {
    /// Every box and pixel kept, top-k mass spread, the batch's max boxes,
    /// boxes of at least one output pixel.
    fn default() -> Self {
        LabelOptions {
            min_score: 0.0,
            min_confidence: 0.0,
            missing_mass: MissingMass::Spread,
            max_boxes: None,
            min_box_size: 1.0,
        }
    }
}

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

/// The NaN a depth map holds where it has no value.
const DEPTH_NAN: half::f16 = half::f16::NAN;

impl Collator<'_> {
    /// W'×H' of dense labels.
    pub fn label_size(&self) -> (u32, u32) {
        (self.w / self.stride, self.h / self.stride)
    }

    /// Fresh arrays for a batch (reusing `old` buffers when given).
    pub fn empty_tasks(
        &self,
        old: Option<BTreeMap<String, TaskBatch>>,
    ) -> BTreeMap<String, TaskBatch> {
        let mut old = old.unwrap_or_default();
        let (lw, lh) = self.label_size();
        let lhw = (lw * lh) as usize;
        let b = self.b;
        self.tasks
            .iter()
            .map(|t| {
                let prev = old.remove(&t.name);
                let (present, prev_data) = match prev {
                    Some(p) => (Some(p.present), Some(p.data)),
                    None => (None, None),
                };
                let mut present = present.unwrap_or_default();
                present.clear();
                present.resize(b, false);
                let data = match (&t.kind, prev_data) {
                    (TaskKind::Classification { num_classes, .. }, prev) => {
                        let mut probs = match prev {
                            Some(TaskData::Classification { probs, .. }) => probs,
                            _ => Vec::new(),
                        };
                        probs.clear();
                        probs.resize(b * *num_classes as usize, 0.0);
                        TaskData::Classification {
                            num_classes: *num_classes as usize,
                            probs,
                        }
                    }
                    // Sized by `finish_boxes` once the batch's N is known.
                    (TaskKind::Detection { .. }, Some(d @ TaskData::Detection { .. })) => d,
                    (TaskKind::Detection { .. }, _) => TaskData::Detection {
                        max_boxes: 0,
                        boxes: vec![],
                        classes: vec![],
                        scores: vec![],
                        valid: vec![],
                    },
                    (
                        TaskKind::Segmentation {
                            ignore_index,
                            dtype,
                            ..
                        },
                        prev,
                    ) => {
                        let prev = match prev {
                            Some(TaskData::Segmentation { mask, .. }) => Some(mask),
                            _ => None,
                        };
                        let ig = *ignore_index;
                        let mask = match (dtype, prev) {
                            // Reused buffers keep stale values: every slot is
                            // written or cleared (`clear_task`) before the batch leaves.
                            (MaskDtype::U8, Some(Mask::U8(mut v))) => {
                                v.resize(b * lhw, ig as u8);
                                Mask::U8(v)
                            }
                            (MaskDtype::U16, Some(Mask::U16(mut v))) => {
                                v.resize(b * lhw, ig as u16);
                                Mask::U16(v)
                            }
                            (MaskDtype::U8, _) => Mask::U8(vec![ig as u8; b * lhw]),
                            (MaskDtype::U16, _) => Mask::U16(vec![ig as u16; b * lhw]),
                        };
                        TaskData::Segmentation {
                            mask,
                            ignore_index: ig,
                        }
                    }
                    (TaskKind::Depth { .. }, prev) => {
                        let mut depth = match prev {
                            Some(TaskData::Depth { depth }) => depth,
                            _ => Vec::new(),
                        };
                        depth.resize(b * lhw, DEPTH_NAN);
                        TaskData::Depth { depth }
                    }
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
        let (lw, lh) = self.label_size();
        let lhw = (lw * lh) as usize;
        {
            tb.present[i] = false;
            match &mut tb.data {
                TaskData::Classification { num_classes, probs } => {
                    probs[i * *num_classes..(i + 1) * *num_classes].fill(0.0)
                }
                TaskData::Segmentation { mask, ignore_index } => match mask {
                    Mask::U8(v) => v[i * lhw..(i + 1) * lhw].fill(*ignore_index as u8),
                    Mask::U16(v) => v[i * lhw..(i + 1) * lhw].fill(*ignore_index as u16),
                },
                TaskData::Depth { depth } => depth[i * lhw..(i + 1) * lhw].fill(DEPTH_NAN),
                TaskData::Detection { .. } => {}
            }
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
        let (w, h) = (self.w, self.h);
        let (lw, lh) = self.label_size();
        let lhw = (lw * lh) as usize;
        // The label grid: the same window at 1/stride of the output's pixels.
        let s = self.stride as f64;
        let gl = Geometry {
            sx: g.sx * s,
            sy: g.sy * s,
            ..*g
        };
        let r = match (&mut tb.data, label, &t.kind) {
            (
                TaskData::Classification { num_classes, probs },
                LabelRef::TopK { classes, probs: p },
                TaskKind::Classification { multi_label, .. },
            ) => {
                let row = &mut probs[i * *num_classes..(i + 1) * *num_classes];
                for (&c, &p) in classes.iter().zip(p) {
                    row[c as usize] = p;
                }
                let sum: f32 = p.iter().sum();
                match self.opts.missing_mass {
                    MissingMass::Spread if !*multi_label => {
                        let others = row.len().saturating_sub(classes.len());
                        if others > 0 && sum < 1.0 {
                            let add = (1.0 - sum) / others as f32;
                            for (k, v) in row.iter_mut().enumerate() {
                                if !classes.contains(&(k as u32)) {
                                    *v = add;
                                }
                            }
                        }
                    }
                    MissingMass::Renormalize if !*multi_label && sum > 0.0 => {
                        row.iter_mut().for_each(|v| *v /= sum);
                    }
                    _ => {}
                }
                None
            }
            (TaskData::Classification { num_classes, probs }, LabelRef::Dense(p), _) => {
                probs[i * *num_classes..(i + 1) * *num_classes].copy_from_slice(p);
                None
            }
            (
                TaskData::Detection { .. },
                LabelRef::Detection {
                    boxes,
                    classes,
                    scores,
                },
                _,
            ) => {
                let mut out: Vec<BoxOut> = boxes
                    .chunks_exact(4)
                    .zip(classes)
                    .zip(scores)
                    .filter(|(_, &s)| s >= self.opts.min_score)
                    .filter_map(|((b, &c), &s)| {
                        g.map_box([b[0], b[1], b[2], b[3]], w, h, self.opts.min_box_size)
                            .map(|b| (b, c as i64, s))
                    })
                    .collect();
                if let Some(cap) = self.opts.max_boxes {
                    if out.len() > cap {
                        out.sort_by(|a, b| b.2.total_cmp(&a.2));
                        out.truncate(cap);
                    }
                }
                Some(out)
            }
            (
                TaskData::Segmentation { mask, ignore_index },
                LabelRef::Segmentation {
                    height,
                    width,
                    mask: src,
                    confidence,
                },
                _,
            ) => {
                let thr = (self.opts.min_confidence.clamp(0.0, 1.0) * 255.0).round() as u8;
                let conf = confidence.filter(|_| thr > 0);
                let mw = width as usize;
                let geo = (&gl, (img_w, img_h), (width, height), (lw, lh));
                match mask {
                    Mask::U8(out) => {
                        let ig = *ignore_index as u8;
                        resample(&mut out[i * lhw..(i + 1) * lhw], geo, ig, |ry, x| {
                            let p = ry * mw + x;
                            match conf {
                                Some(c) if c[p] < thr => ig,
                                _ => src[p],
                            }
                        })
                    }
                    Mask::U16(out) => {
                        let ig = *ignore_index as u16;
                        resample(&mut out[i * lhw..(i + 1) * lhw], geo, ig, |ry, x| {
                            let p = ry * mw + x;
                            match conf {
                                Some(c) if c[p] < thr => ig,
                                _ => u16::from_le_bytes([src[2 * p], src[2 * p + 1]]),
                            }
                        })
                    }
                }
                None
            }
            (
                TaskData::Depth { depth },
                LabelRef::Depth {
                    height,
                    width,
                    depth: src,
                },
                _,
            ) => {
                let mw = width as usize;
                let geo = (&gl, (img_w, img_h), (width, height), (lw, lh));
                resample(
                    &mut depth[i * lhw..(i + 1) * lhw],
                    geo,
                    DEPTH_NAN,
                    |ry, x| {
                        let p = 2 * (ry * mw + x);
                        half::f16::from_bits(u16::from_le_bytes([src[p], src[p + 1]]))
                    },
                );
                None
            }
            _ => {
                return Err(format!(
                    "a {} label in task {:?} of another kind",
                    label.kind_name(),
                    t.name
                ))
            }
        };
        tb.present[i] = true;
        Ok(r)
    }

    /// Pads every sample's boxes to the batch's N (nothing for other kinds).
    pub fn finish_boxes(&self, tb: &mut TaskBatch, prepared: Vec<Vec<BoxOut>>) {
        let TaskData::Detection {
            max_boxes,
            boxes,
            classes,
            scores,
            valid,
        } = &mut tb.data
        else {
            return;
        };
        let n = self
            .opts
            .max_boxes
            .unwrap_or_else(|| prepared.iter().map(Vec::len).max().unwrap_or(0));
        *max_boxes = n;
        boxes.clear();
        boxes.resize(self.b * n * 4, 0.0);
        classes.clear();
        classes.resize(self.b * n, -1);
        scores.clear();
        scores.resize(self.b * n, 0.0);
        valid.clear();
        valid.resize(self.b * n, false);
        for (i, p) in prepared.iter().enumerate() {
            for (j, (bx, c, s)) in p.iter().take(n).enumerate() {
                let k = i * n + j;
                boxes[4 * k..4 * k + 4].copy_from_slice(bx);
                classes[k] = *c;
                scores[k] = *s;
                valid[k] = true;
            }
        }
    }
}

/// Fills an output map (`out_w`×`out_h`, row-major) from a `map_w`×`map_h`
/// label map through `g` by nearest sampling: `at(r, c)` is the map's value
/// at row `r`, column `c`; pixels outside the map get `outside`. Output
/// rows that sample the same map row are copies of the first.
/// A geometry with the image size, the map size and the output size.
type MapGeometry<'a> = (&'a Geometry, (u32, u32), (u32, u32), (u32, u32));

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
