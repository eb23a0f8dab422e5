//! The batch a trainer receives (FORMAT.md section 5) and the collation of
//! one augmented sample into it.

use std::collections::BTreeMap;

use crate::codec::{ClassLabel, Label};
use crate::format::{TaskDef, TaskKind};

use super::augment::Geometry;

/// Pixels of a batch, B×3×H×W.
#[derive(Debug, Clone, PartialEq)]
pub enum Images {
    /// 0..=255.
    U8(Vec<u8>),
    /// `(x / 255 − mean) / std` per channel.
    F32(Vec<f32>),
}

/// The labels of one task for a batch; every array is dense, B first.
#[derive(Debug, Clone, PartialEq)]
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
    /// B×H×W class ids, `ignore_index` where unlabeled.
    Segmentation {
        /// B×H×W.
        mask: Vec<i64>,
        /// The task's ignore index.
        ignore_index: i64,
    },
    /// B×1×H×W.
    Depth {
        /// B×1×H×W, 0 where invalid.
        depth: Vec<f32>,
        /// B×1×H×W.
        valid: Vec<bool>,
    },
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

/// One box after augmentation: corners, class, score.
pub(crate) type BoxOut = ([f32; 4], i64, f32);

/// Per-batch buffers being filled.
pub(crate) struct Collator<'a> {
    pub tasks: &'a [TaskDef],
    pub opts: &'a LabelOptions,
    pub b: usize,
    pub w: u32,
    pub h: u32,
}

impl Collator<'_> {
    /// Fresh arrays for a batch (reusing `old` buffers when given).
    pub fn empty_tasks(
        &self,
        old: Option<BTreeMap<String, TaskBatch>>,
    ) -> BTreeMap<String, TaskBatch> {
        let mut old = old.unwrap_or_default();
        let hw = (self.w * self.h) as usize;
        let b = self.b;
        self.tasks
            .iter()
            .map(|t| {
                let prev = old.remove(&t.name);
                let reuse = |v: Option<Vec<bool>>| {
                    let mut v = v.unwrap_or_default();
                    v.clear();
                    v.resize(b, false);
                    v
                };
                let (present, prev_data) = match prev {
                    Some(p) => (Some(p.present), Some(p.data)),
                    None => (None, None),
                };
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
                    (TaskKind::Segmentation { ignore_index, .. }, prev) => {
                        let mut mask = match prev {
                            Some(TaskData::Segmentation { mask, .. }) => mask,
                            _ => Vec::new(),
                        };
                        mask.clear();
                        mask.resize(b * hw, *ignore_index as i64);
                        TaskData::Segmentation {
                            mask,
                            ignore_index: *ignore_index as i64,
                        }
                    }
                    (TaskKind::Depth { .. }, prev) => {
                        let (mut depth, mut valid) = match prev {
                            Some(TaskData::Depth { depth, valid }) => (depth, valid),
                            _ => (Vec::new(), Vec::new()),
                        };
                        depth.clear();
                        depth.resize(b * hw, 0.0);
                        valid.clear();
                        valid.resize(b * hw, false);
                        TaskData::Depth { depth, valid }
                    }
                };
                (
                    t.name.clone(),
                    TaskBatch {
                        present: reuse(present),
                        data,
                    },
                )
            })
            .collect()
    }

    /// Writes sample `i`'s label of task `t` into `tb` through `g`; a
    /// detection label's boxes come back instead, to be padded to the
    /// batch's N by [`finish_boxes`](Self::finish_boxes).
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &self,
        tb: &mut TaskBatch,
        t: &TaskDef,
        i: usize,
        label: Option<&Label>,
        g: &Geometry,
        img_w: u32,
        img_h: u32,
    ) -> Result<Option<Vec<BoxOut>>, String> {
        let Some(label) = label else {
            return Ok(None);
        };
        label.check(t)?;
        tb.present[i] = true;
        let (w, h) = (self.w, self.h);
        let hw = (w * h) as usize;
        match (&mut tb.data, label, &t.kind) {
            (
                TaskData::Classification { num_classes, probs },
                Label::Classification(c),
                TaskKind::Classification { multi_label, .. },
            ) => {
                let row = &mut probs[i * *num_classes..(i + 1) * *num_classes];
                match c {
                    ClassLabel::Dense(p) => row.copy_from_slice(p),
                    ClassLabel::TopK { classes, probs } => {
                        for (&c, &p) in classes.iter().zip(probs) {
                            row[c as usize] = p;
                        }
                        let sum: f32 = probs.iter().sum();
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
                    }
                }
                Ok(None)
            }
            (TaskData::Detection { .. }, Label::Detection(d), _) => {
                let mut out: Vec<BoxOut> = d
                    .boxes
                    .iter()
                    .zip(&d.classes)
                    .zip(&d.scores)
                    .filter(|(_, &s)| s >= self.opts.min_score)
                    .filter_map(|((b, &c), &s)| {
                        g.map_box(*b, w, h, self.opts.min_box_size)
                            .map(|b| (b, c as i64, s))
                    })
                    .collect();
                if let Some(cap) = self.opts.max_boxes {
                    if out.len() > cap {
                        out.sort_by(|a, b| b.2.total_cmp(&a.2));
                        out.truncate(cap);
                    }
                }
                Ok(Some(out))
            }
            (
                TaskData::Segmentation { mask, ignore_index },
                Label::Segmentation(m),
                TaskKind::Segmentation { dtype, .. },
            ) => {
                let size = dtype.size();
                let thr = (self.opts.min_confidence.clamp(0.0, 1.0) * 255.0).round() as u8;
                let conf = m.confidence.as_deref().filter(|_| thr > 0);
                let ig = *ignore_index;
                let mw = m.width as usize;
                let out = &mut mask[i * hw..(i + 1) * hw];
                resample(
                    out,
                    g,
                    (img_w, img_h),
                    (m.width, m.height),
                    (w, h),
                    ig,
                    |ry, row| {
                        for (x, v) in row.iter_mut().enumerate() {
                            let p = ry * mw + x;
                            *v = if conf.is_some_and(|c| c[p] < thr) {
                                ig
                            } else if size == 2 {
                                u16::from_le_bytes([m.mask[2 * p], m.mask[2 * p + 1]]) as i64
                            } else {
                                m.mask[p] as i64
                            };
                        }
                    },
                );
                Ok(None)
            }
            (TaskData::Depth { depth, valid }, Label::Depth(d), _) => {
                let dw = d.width as usize;
                let od = &mut depth[i * hw..(i + 1) * hw];
                resample(
                    od,
                    g,
                    (img_w, img_h),
                    (d.width, d.height),
                    (w, h),
                    f32::NAN,
                    |ry, row| {
                        let src = &d.depth[2 * ry * dw..2 * (ry + 1) * dw];
                        for (v, c) in row.iter_mut().zip(src.chunks_exact(2)) {
                            *v = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
                        }
                    },
                );
                // Invalid (NaN in the map) and outside alike: 0, not valid.
                for (v, ok) in od.iter_mut().zip(&mut valid[i * hw..(i + 1) * hw]) {
                    *ok = v.is_finite();
                    if !*ok {
                        *v = 0.0;
                    }
                }
                Ok(None)
            }
            _ => Err(format!(
                "a {} label in task {:?} of another kind",
                label.kind_name(),
                t.name
            )),
        }
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
/// label map through `g` by nearest sampling: `decode_row(r, buf)` writes map
/// row `r` into `buf`; pixels outside the map get `outside`. Output rows that
/// sample the same map row are copies of the first.
fn resample<T: Copy>(
    out: &mut [T],
    g: &Geometry,
    image: (u32, u32),
    map: (u32, u32),
    (out_w, out_h): (u32, u32),
    outside: T,
    mut decode_row: impl FnMut(usize, &mut [T]),
) {
    let (cols, rows) = g.map_axes(image, map, (out_w, out_h));
    let (mw, mh) = (map.0 as usize, map.1 as usize);
    let ow = out_w as usize;
    // One slot past the row: the value of columns outside the map.
    let mut row = vec![outside; mw + 1];
    let mut prev: Option<(usize, usize)> = None;
    for (y, &ry) in rows.iter().enumerate() {
        let (done, o) = out.split_at_mut(y * ow);
        let o = &mut o[..ow];
        if ry == mh {
            o.fill(outside);
            continue;
        }
        if let Some((py, pi)) = prev {
            if py == ry {
                o.copy_from_slice(&done[pi * ow..(pi + 1) * ow]);
                continue;
            }
        }
        decode_row(ry, &mut row[..mw]);
        for (v, &cx) in o.iter_mut().zip(&cols) {
            *v = row[cx];
        }
        prev = Some((ry, y));
    }
}
