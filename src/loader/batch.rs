//! The batch a trainer receives (FORMAT.md section 5) and the load-time
//! label options; [`collate`](super::collate) fills it, one sample at a time.

use std::collections::BTreeMap;

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
            // Different kinds (every kind listed: a new one must be added above).
            (Classification { .. } | Detection { .. } | Segmentation { .. } | Depth { .. }, _) => {
                false
            }
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
