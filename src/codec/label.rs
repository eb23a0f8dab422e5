//! Typed labels of the four task kinds and the value checks of FORMAT.md.

use half::f16;

use crate::error::{Error, Location, Result};
use crate::format::{ClassEncoding, TaskDef, TaskKind};

/// A classification label.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassLabel {
    /// The k most likely classes, sorted by probability descending.
    TopK {
        /// Class ids.
        classes: Vec<u32>,
        /// Their probabilities.
        probs: Vec<f32>,
    },
    /// One probability per class.
    Dense(Vec<f32>),
}

impl ClassLabel {
    /// The top-k of a full probability vector, sorted descending (ties by class id).
    pub fn top_k(probs: &[f32], k: usize) -> Self {
        let mut idx: Vec<u32> = (0..probs.len() as u32).collect();
        idx.sort_by(|&a, &b| {
            probs[b as usize]
                .total_cmp(&probs[a as usize])
                .then(a.cmp(&b))
        });
        idx.truncate(k);
        let p = idx.iter().map(|&i| probs[i as usize]).collect();
        ClassLabel::TopK {
            classes: idx,
            probs: p,
        }
    }
}

/// Detections of one image, in pixels of the stored image.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Detections {
    /// `[x0, y0, x1, y1]` per box.
    pub boxes: Vec<[f32; 4]>,
    /// Class id per box.
    pub classes: Vec<u32>,
    /// Score per box (1.0 for ground truth).
    pub scores: Vec<f32>,
}

/// A segmentation map: raw row-major mask in the task's dtype (little-endian),
/// with an optional per-pixel confidence (`round(255 × p)`).
#[derive(Debug, Clone, PartialEq)]
pub struct SegMap {
    /// Map height.
    pub height: u32,
    /// Map width.
    pub width: u32,
    /// `height × width × dtype size` bytes.
    pub mask: Vec<u8>,
    /// `height × width` bytes, when the teacher wrote confidences.
    pub confidence: Option<Vec<u8>>,
}

impl SegMap {
    /// A u8 map.
    pub fn from_u8(height: u32, width: u32, mask: Vec<u8>) -> Self {
        Self {
            height,
            width,
            mask,
            confidence: None,
        }
    }

    /// A u16 map.
    pub fn from_u16(height: u32, width: u32, mask: &[u16]) -> Self {
        let bytes = mask.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self {
            height,
            width,
            mask: bytes,
            confidence: None,
        }
    }

    /// Adds confidences from probabilities in [0, 1].
    pub fn with_confidence_probs(mut self, probs: &[f32]) -> Self {
        self.confidence = Some(
            probs
                .iter()
                .map(|p| (p.clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect(),
        );
        self
    }

    /// The class id of each pixel, whatever the dtype (`size` bytes each).
    pub fn values(&self, size: usize) -> Vec<u32> {
        match size {
            2 => self
                .mask
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
                .collect(),
            _ => self.mask.iter().map(|&v| v as u32).collect(),
        }
    }
}

/// A depth map stored as little-endian float16, NaN where invalid.
#[derive(Debug, Clone, PartialEq)]
pub struct DepthMap {
    /// Map height.
    pub height: u32,
    /// Map width.
    pub width: u32,
    /// `height × width × 2` bytes.
    pub depth: Vec<u8>,
}

impl DepthMap {
    /// Converts f32 values to the stored float16.
    pub fn from_f32(height: u32, width: u32, values: &[f32]) -> Self {
        let depth = values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect();
        Self {
            height,
            width,
            depth,
        }
    }

    /// The values as f32.
    pub fn to_f32(&self) -> Vec<f32> {
        self.depth
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect()
    }
}

/// A label of any kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    /// Classification.
    Classification(ClassLabel),
    /// Detection.
    Detection(Detections),
    /// Segmentation.
    Segmentation(SegMap),
    /// Depth.
    Depth(DepthMap),
}

fn check_prob(p: f32, what: &str) -> std::result::Result<(), String> {
    if p.is_finite() && (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("{what} {p} is not a finite probability in [0, 1]"))
    }
}

/// Whether every value is a finite number in [0, 1] (NaN fails both
/// comparisons). Branch-free so that it vectorizes.
fn all_probabilities(values: &[f32]) -> bool {
    values
        .iter()
        .fold(true, |ok, &p| ok & (0.0..=1.0).contains(&p))
}

/// Sum in f64 with independent accumulators (vectorizes, unlike a serial sum).
fn sum_f64(values: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = values.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v as f64;
        }
    }
    acc.iter().sum::<f64>() + rest
}

fn check_map_size(
    h: u32,
    w: u32,
    len: usize,
    elem: usize,
    col: &str,
) -> std::result::Result<(), String> {
    if h == 0 || w == 0 {
        return Err(format!("{col} has an empty size {h}x{w}"));
    }
    let want = h as u64 * w as u64 * elem as u64;
    if len as u64 != want {
        return Err(format!(
            "{col} has {len} bytes but {h}x{w} with {elem} byte(s) per pixel needs {want}"
        ));
    }
    Ok(())
}

impl Label {
    /// Checks every value against the task's rules; `loc` names file, row and image id.
    pub fn validate(&self, task: &TaskDef, loc: &Location) -> Result<()> {
        self.check(task)
            .map_err(|reason| Error::value(loc.clone(), reason))
    }

    /// [`Label::validate`] without a location: the reason when a value is wrong.
    pub fn check(&self, task: &TaskDef) -> std::result::Result<(), String> {
        let kind_mismatch = || {
            Err(format!(
                "a {} label given for task {:?} of kind {}",
                self.kind_name(),
                task.name,
                task.kind.name()
            ))
        };
        match (self, &task.kind) {
            (
                Label::Classification(c),
                TaskKind::Classification {
                    num_classes,
                    encoding,
                    multi_label,
                    ..
                },
            ) => {
                let probs = match (c, encoding) {
                    (ClassLabel::TopK { classes, probs }, ClassEncoding::Topk) => {
                        if classes.len() != probs.len() {
                            return Err(format!(
                                "classes has {} entries but probs has {}",
                                classes.len(),
                                probs.len()
                            ));
                        }
                        for (j, &c) in classes.iter().enumerate() {
                            if c >= *num_classes {
                                return Err(format!(
                                    "class id {c} is not below num_classes {num_classes}"
                                ));
                            }
                            // k is small (top-5, top-20): a scan beats hashing.
                            if classes[..j].contains(&c) {
                                return Err(format!("class id {c} appears twice"));
                            }
                        }
                        probs
                    }
                    (ClassLabel::Dense(probs), ClassEncoding::Dense) => {
                        if probs.len() != *num_classes as usize {
                            return Err(format!(
                                "probs has {} entries but num_classes is {num_classes}",
                                probs.len()
                            ));
                        }
                        probs
                    }
                    _ => {
                        return Err(format!(
                            "label encoding does not match the task's {encoding:?} encoding"
                        ))
                    }
                };
                if !all_probabilities(probs) {
                    for p in probs {
                        check_prob(*p, "probability")?;
                    }
                }
                if let ClassLabel::TopK { probs, .. } = c {
                    if probs.windows(2).any(|w| w[0] < w[1]) {
                        return Err("top-k probs are not sorted by probability descending".into());
                    }
                }
                let sum = sum_f64(probs);
                if !multi_label && sum > 1.0 + 1e-3 {
                    return Err(format!(
                        "probabilities sum to {sum:.4} > 1 in a single-label task"
                    ));
                }
                Ok(())
            }
            (Label::Detection(d), TaskKind::Detection { num_classes, .. }) => {
                let n = d.boxes.len();
                if d.classes.len() != n || d.scores.len() != n {
                    return Err(format!(
                        "boxes, classes and scores have {}, {} and {} entries",
                        n,
                        d.classes.len(),
                        d.scores.len()
                    ));
                }
                for (i, b) in d.boxes.iter().enumerate() {
                    if b.iter().any(|v| !v.is_finite()) {
                        return Err(format!("box {i} {b:?} is not finite"));
                    }
                    if b[0] > b[2] || b[1] > b[3] {
                        return Err(format!("box {i} {b:?} has x0 > x1 or y0 > y1"));
                    }
                }
                for (i, &c) in d.classes.iter().enumerate() {
                    if c >= *num_classes {
                        return Err(format!(
                            "box {i} has class id {c}, not below num_classes {num_classes}"
                        ));
                    }
                }
                if !all_probabilities(&d.scores) {
                    for s in &d.scores {
                        check_prob(*s, "score")?;
                    }
                }
                Ok(())
            }
            (
                Label::Segmentation(m),
                TaskKind::Segmentation {
                    num_classes,
                    dtype,
                    ignore_index,
                    ..
                },
            ) => {
                check_map_size(m.height, m.width, m.mask.len(), dtype.size(), "mask")?;
                if let Some(c) = &m.confidence {
                    check_map_size(m.height, m.width, c.len(), 1, "confidence")?;
                }
                let bad = |v: u32| v >= *num_classes && v != *ignore_index;
                // A vectorizable pass first: the largest value that is not
                // ignore_index must be a class id. The slow search for the
                // value to report only runs when something is wrong.
                let ig = *ignore_index;
                let max_class = match dtype.size() {
                    1 => m
                        .mask
                        .iter()
                        .map(|&v| if v as u32 == ig { 0 } else { v })
                        .max()
                        .unwrap_or(0) as u32,
                    _ => m
                        .mask
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .map(|v| if v as u32 == ig { 0 } else { v })
                        .max()
                        .unwrap_or(0) as u32,
                };
                let found = if max_class >= *num_classes {
                    m.values(dtype.size()).into_iter().find(|&v| bad(v))
                } else {
                    None
                };
                if let Some(v) = found {
                    return Err(format!(
                        "mask value {v} is neither a class id below {num_classes} nor ignore_index {ignore_index}"
                    ));
                }
                Ok(())
            }
            (Label::Depth(d), TaskKind::Depth { .. }) => {
                check_map_size(d.height, d.width, d.depth.len(), 2, "depth")?;
                // float16 ±infinity: exponent all ones, mantissa zero.
                let is_inf = |c: &[u8]| u16::from_le_bytes([c[0], c[1]]) & 0x7FFF == 0x7C00;
                let any_inf = d
                    .depth
                    .chunks_exact(2)
                    .fold(false, |acc, c| acc | is_inf(c));
                if let Some(v) = any_inf
                    .then(|| d.to_f32().into_iter().find(|v| v.is_infinite()))
                    .flatten()
                {
                    return Err(format!(
                        "depth value {v} is infinite (use NaN for invalid pixels)"
                    ));
                }
                Ok(())
            }
            _ => kind_mismatch(),
        }
    }

    /// The kind name of this label.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Label::Classification(_) => "classification",
            Label::Detection(_) => "detection",
            Label::Segmentation(_) => "segmentation",
            Label::Depth(_) => "depth",
        }
    }
}
