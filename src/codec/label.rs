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
    // In u128: h × w × elem can pass 2^64.
    let want = h as u128 * w as u128 * elem as u128;
    if len as u128 != want {
        return Err(format!(
            "{col} has {len} bytes but {h}x{w} with {elem} byte(s) per pixel needs {want}"
        ));
    }
    Ok(())
}

/// A label borrowed from wherever it lives (a typed [`Label`], or the Arrow
/// buffers of a decoded label file): what the checks and the loader read,
/// without copying maps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LabelRef<'a> {
    /// Top-k classes and their probabilities.
    TopK {
        /// Class ids.
        classes: &'a [u32],
        /// Their probabilities.
        probs: &'a [f32],
    },
    /// One probability per class.
    Dense(&'a [f32]),
    /// Detections.
    Detection {
        /// `[x0, y0, x1, y1]` per box, flat (4 values a box).
        boxes: &'a [f32],
        /// Class id per box.
        classes: &'a [u32],
        /// Score per box.
        scores: &'a [f32],
    },
    /// A segmentation map.
    Segmentation {
        /// Map height.
        height: u32,
        /// Map width.
        width: u32,
        /// Raw little-endian mask in the task's dtype.
        mask: &'a [u8],
        /// `round(255 × p)` per pixel, when present.
        confidence: Option<&'a [u8]>,
    },
    /// A depth map.
    Depth {
        /// Map height.
        height: u32,
        /// Map width.
        width: u32,
        /// Little-endian float16 per pixel.
        depth: &'a [u8],
    },
}

impl Label {
    /// Checks every value against the task's rules; `loc` names file, row and image id.
    pub fn validate(&self, task: &TaskDef, loc: &Location) -> Result<()> {
        self.check(task)
            .map_err(|reason| Error::value(loc.clone(), reason))
    }

    /// [`Label::validate`] without a location: the reason when a value is wrong.
    pub fn check(&self, task: &TaskDef) -> std::result::Result<(), String> {
        self.as_ref().check(task)
    }

    /// The label as a borrowed view.
    pub fn as_ref(&self) -> LabelRef<'_> {
        match self {
            Label::Classification(ClassLabel::TopK { classes, probs }) => {
                LabelRef::TopK { classes, probs }
            }
            Label::Classification(ClassLabel::Dense(p)) => LabelRef::Dense(p),
            Label::Detection(d) => LabelRef::Detection {
                boxes: d.boxes.as_flattened(),
                classes: &d.classes,
                scores: &d.scores,
            },
            Label::Segmentation(m) => LabelRef::Segmentation {
                height: m.height,
                width: m.width,
                mask: &m.mask,
                confidence: m.confidence.as_deref(),
            },
            Label::Depth(d) => LabelRef::Depth {
                height: d.height,
                width: d.width,
                depth: &d.depth,
            },
        }
    }

    /// The kind name of this label.
    pub fn kind_name(&self) -> &'static str {
        self.as_ref().kind_name()
    }
}

impl LabelRef<'_> {
    /// The kind name of this label.
    pub fn kind_name(&self) -> &'static str {
        match self {
            LabelRef::TopK { .. } | LabelRef::Dense(_) => "classification",
            LabelRef::Detection { .. } => "detection",
            LabelRef::Segmentation { .. } => "segmentation",
            LabelRef::Depth { .. } => "depth",
        }
    }

    /// An owned copy.
    pub fn to_label(&self) -> Label {
        match *self {
            LabelRef::TopK { classes, probs } => Label::Classification(ClassLabel::TopK {
                classes: classes.to_vec(),
                probs: probs.to_vec(),
            }),
            LabelRef::Dense(p) => Label::Classification(ClassLabel::Dense(p.to_vec())),
            LabelRef::Detection {
                boxes,
                classes,
                scores,
            } => Label::Detection(Detections {
                boxes: boxes
                    .chunks_exact(4)
                    .map(|q| [q[0], q[1], q[2], q[3]])
                    .collect(),
                classes: classes.to_vec(),
                scores: scores.to_vec(),
            }),
            LabelRef::Segmentation {
                height,
                width,
                mask,
                confidence,
            } => Label::Segmentation(SegMap {
                height,
                width,
                mask: mask.to_vec(),
                confidence: confidence.map(<[u8]>::to_vec),
            }),
            LabelRef::Depth {
                height,
                width,
                depth,
            } => Label::Depth(DepthMap {
                height,
                width,
                depth: depth.to_vec(),
            }),
        }
    }

    /// Checks every value against the task's rules: the reason when one is wrong.
    pub fn check(&self, task: &TaskDef) -> std::result::Result<(), String> {
        let kind_mismatch = || {
            Err(format!(
                "a {} label given for task {:?} of kind {}",
                self.kind_name(),
                task.name,
                task.kind.name()
            ))
        };
        match (*self, &task.kind) {
            (
                LabelRef::TopK { .. } | LabelRef::Dense(_),
                TaskKind::Classification {
                    num_classes,
                    encoding,
                    multi_label,
                    ..
                },
            ) => {
                let probs = match (*self, encoding) {
                    (LabelRef::TopK { classes, probs }, ClassEncoding::Topk) => {
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
                    (LabelRef::Dense(probs), ClassEncoding::Dense) => {
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
                if let LabelRef::TopK { probs, .. } = *self {
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
            (
                LabelRef::Detection {
                    boxes,
                    classes,
                    scores,
                },
                TaskKind::Detection { num_classes, .. },
            ) => {
                let n = boxes.len() / 4;
                if boxes.len() % 4 != 0 || classes.len() != n || scores.len() != n {
                    return Err(format!(
                        "boxes, classes and scores have {}, {} and {} entries",
                        boxes.len() as f64 / 4.0,
                        classes.len(),
                        scores.len()
                    ));
                }
                for (i, b) in boxes.chunks_exact(4).enumerate() {
                    if b.iter().any(|v| !v.is_finite()) {
                        return Err(format!("box {i} {b:?} is not finite"));
                    }
                    if b[0] > b[2] || b[1] > b[3] {
                        return Err(format!("box {i} {b:?} has x0 > x1 or y0 > y1"));
                    }
                }
                for (i, &c) in classes.iter().enumerate() {
                    if c >= *num_classes {
                        return Err(format!(
                            "box {i} has class id {c}, not below num_classes {num_classes}"
                        ));
                    }
                }
                if !all_probabilities(scores) {
                    for s in scores {
                        check_prob(*s, "score")?;
                    }
                }
                Ok(())
            }
            (
                LabelRef::Segmentation {
                    height,
                    width,
                    mask,
                    confidence,
                },
                TaskKind::Segmentation {
                    num_classes,
                    dtype,
                    ignore_index,
                    ..
                },
            ) => {
                check_map_size(height, width, mask.len(), dtype.size(), "mask")?;
                if let Some(c) = confidence {
                    check_map_size(height, width, c.len(), 1, "confidence")?;
                }
                // A vectorizable pass first: the largest value that is not
                // ignore_index must be a class id. The slow search for the
                // value to report only runs when something is wrong.
                let ig = *ignore_index;
                let max_class = match dtype.size() {
                    1 => max_u8_except(mask, ig),
                    _ => max_u16_except(mask, ig),
                };
                if max_class >= *num_classes {
                    let v = mask_values(mask, dtype.size())
                        .find(|&v| v >= *num_classes && v != ig)
                        .unwrap_or(max_class);
                    return Err(format!(
                        "mask value {v} is neither a class id below {num_classes} nor ignore_index {ignore_index}"
                    ));
                }
                Ok(())
            }
            (
                LabelRef::Depth {
                    height,
                    width,
                    depth,
                },
                TaskKind::Depth { .. },
            ) => {
                check_map_size(height, width, depth.len(), 2, "depth")?;
                if any_f16_infinite(depth) {
                    let v = depth
                        .chunks_exact(2)
                        .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                        .find(|v| v.is_infinite())
                        .unwrap_or(f32::INFINITY);
                    return Err(format!(
                        "depth value {v} is infinite (use NaN for invalid pixels)"
                    ));
                }
                Ok(())
            }
            _ => kind_mismatch(),
        }
    }
}

/// Largest u8 value that is not `ignore` (0 when none), in a vectorizable pass.
fn max_u8_except(mask: &[u8], ignore: u32) -> u32 {
    match u8::try_from(ignore) {
        Ok(ig) => mask
            .iter()
            .fold(0u8, |m, &v| m.max(if v == ig { 0 } else { v })) as u32,
        Err(_) => mask.iter().fold(0u8, |m, &v| m.max(v)) as u32,
    }
}

/// Largest little-endian u16 value that is not `ignore` (0 when none).
fn max_u16_except(mask: &[u8], ignore: u32) -> u32 {
    let ig = u16::try_from(ignore).ok();
    mask.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .fold(0u16, |m, v| m.max(if Some(v) == ig { 0 } else { v })) as u32
}

fn mask_values(mask: &[u8], size: usize) -> impl Iterator<Item = u32> + '_ {
    let step = size.max(1);
    mask.chunks_exact(step).map(move |c| match step {
        2 => u16::from_le_bytes([c[0], c[1]]) as u32,
        _ => c[0] as u32,
    })
}

/// Whether a little-endian float16 map holds ±infinity (exponent all ones,
/// mantissa zero), in a vectorizable pass.
fn any_f16_infinite(depth: &[u8]) -> bool {
    depth.chunks_exact(2).fold(false, |acc, c| {
        acc | (u16::from_le_bytes([c[0], c[1]]) & 0x7FFF == 0x7C00)
    })
}
