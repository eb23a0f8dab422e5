//! Teacher inference: the model contract, pre- and post-processing per task
//! kind, and the shard-by-shard labeling job behind `must-ds label`.
//!
//! Pre- and post-processing are plain Rust (no libtorch) and follow the
//! task's `teacher.params`:
//!
//! | param | default | meaning |
//! |---|---|---|
//! | `input_size` | 224 | model input side, or `[width, height]` |
//! | `resize` | `"stretch"` | `"stretch"` (whole image to the input size) or `"letterbox"` (aspect kept, zero padding centred) |
//! | `mean`, `std` | ImageNet | per-channel normalisation of `x / 255` |
//! | `output` | `"logits"` | classification: `"logits"` or `"probs"` |
//! | `temperature` | 1 | classification: logits are divided by it before softmax (sigmoid when `multi_label`) |
//! | `top_k` | 5 | classification with `topk` encoding: classes kept |
//! | `confidence_ignore_below` | none | segmentation: pixels whose top probability is below it become `ignore_index` (the confidence column is written either way) |
//!
//! The model takes one float tensor B×3×H×W (RGB, normalised) and returns:
//!
//! * classification: B×C (C = `num_classes`);
//! * detection: a tuple (boxes B×N×4 as x0, y0, x1, y1 in input pixels,
//!   scores B×N, classes B×N); boxes are mapped back to image pixels,
//!   clipped, and those scoring below `min_score_written` dropped;
//! * segmentation: B×C×h×w logits at any resolution; the class map is the
//!   arg max, its confidence the top softmax probability, kept at h×w (the
//!   part covering the image, for letterbox);
//! * depth: B×1×h×w (or B×h×w), stored as float16 at h×w (the part covering
//!   the image).
//!
//! A value that is not finite (NaN, ±inf) in any output is an error: a
//! teacher that marks invalid depth should write its file itself.

use crate::codec::{decode_rgb, max_image_pixels, Rgb};
use crate::codec::{ClassLabel, DepthMap, Detections, Label, SegMap};
use crate::codec::{Geometry, Resizer};
use crate::format::{ClassEncoding, MaskDtype, TaskDef, TaskKind, Teacher};

#[cfg(feature = "tch")]
mod run;
pub mod share;
#[cfg(feature = "tch")]
pub use run::{label, LabelJob, LabelReport};

/// `sha256:` and the hex digest of a file (a teacher's checkpoint record).
pub fn sha256_file(path: &std::path::Path) -> crate::Result<String> {
    use sha2::Digest;
    let err = |e| crate::Error::io(path.display().to_string(), e);
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(err)?;
    Ok(format!("sha256:{:x}", h.finalize()))
}

/// How images become model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizePolicy {
    /// The whole image resized to the input size.
    Stretch,
    /// Aspect ratio kept, centred, zero padding.
    Letterbox,
}

/// The processing a task's `teacher.params` ask for (module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct TeacherParams {
    /// Input width and height.
    pub size: (u32, u32),
    /// Resize policy.
    pub resize: ResizePolicy,
    /// Per-channel mean of `x / 255`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    pub std: [f32; 3],
    /// Classification outputs are logits (else probabilities).
    pub logits: bool,
    /// Softmax temperature.
    pub temperature: f32,
    /// Classes kept in top-k encoding.
    pub top_k: usize,
    /// Segmentation confidence under which pixels are ignored.
    pub ignore_below: Option<f32>,
}

impl TeacherParams {
    /// Reads `teacher.params` of `task`, with the defaults of the module docs.
    pub fn from_task(task: &TaskDef) -> Result<Self, String> {
        let empty = serde_json::Map::new();
        let p = match &task.teacher {
            Some(Teacher::Model { params, .. }) => params,
            _ => &empty,
        };
        let num = |k: &str, d: f64| -> Result<f64, String> {
            match p.get(k) {
                None => Ok(d),
                Some(v) => v
                    .as_f64()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| format!("teacher param {k:?} must be a number, not {v}")),
            }
        };
        let triple = |k: &str, d: [f32; 3]| -> Result<[f32; 3], String> {
            match p.get(k) {
                None => Ok(d),
                Some(v) => {
                    let a: Vec<f64> = v
                        .as_array()
                        .map_or(vec![], |a| a.iter().filter_map(|x| x.as_f64()).collect());
                    match a[..] {
                        [r, g, b] => Ok([r as f32, g as f32, b as f32]),
                        _ => Err(format!("teacher param {k:?} must be 3 numbers, not {v}")),
                    }
                }
            }
        };
        let size = match p.get("input_size") {
            None => (224, 224),
            Some(v) => match (v.as_u64(), v.as_array()) {
                (Some(s), _) => (s as u32, s as u32),
                (_, Some(a)) if a.len() == 2 && a.iter().all(|x| x.as_u64().is_some()) => (
                    a[0].as_u64().unwrap_or(0) as u32,
                    a[1].as_u64().unwrap_or(0) as u32,
                ),
                _ => {
                    return Err(format!(
                        "teacher param \"input_size\" must be N or [W, H], not {v}"
                    ))
                }
            },
        };
        if size.0 == 0 || size.1 == 0 || size.0 > 8192 || size.1 > 8192 {
            return Err(format!("teacher input size {size:?} is out of range"));
        }
        let resize = match p.get("resize").and_then(|v| v.as_str()) {
            None | Some("stretch") => ResizePolicy::Stretch,
            Some("letterbox") => ResizePolicy::Letterbox,
            Some(o) => {
                return Err(format!(
                    "teacher param \"resize\" must be \"stretch\" or \"letterbox\", not {o:?}"
                ))
            }
        };
        let logits = match p.get("output").and_then(|v| v.as_str()) {
            None | Some("logits") => true,
            Some("probs") => false,
            Some(o) => {
                return Err(format!(
                    "teacher param \"output\" must be \"logits\" or \"probs\", not {o:?}"
                ))
            }
        };
        let std = triple("std", [0.229, 0.224, 0.225])?;
        if std.iter().any(|s| *s <= 0.0) {
            return Err("teacher param \"std\" must be positive".into());
        }
        let temperature = num("temperature", 1.0)? as f32;
        if temperature <= 0.0 {
            return Err("teacher param \"temperature\" must be positive".into());
        }
        Ok(TeacherParams {
            size,
            resize,
            mean: triple("mean", [0.485, 0.456, 0.406])?,
            std,
            logits,
            temperature,
            top_k: num("top_k", 5.0)?.max(1.0) as usize,
            ignore_below: p
                .get("confidence_ignore_below")
                .map(|_| num("confidence_ignore_below", 0.0))
                .transpose()?
                .map(|x| x as f32),
        })
    }

    /// The map from model input pixels to the pixels of a `w`×`h` image.
    pub fn geometry(&self, w: u32, h: u32) -> Geometry {
        match self.resize {
            ResizePolicy::Stretch => Geometry::resize(w, h, self.size.0, self.size.1),
            ResizePolicy::Letterbox => {
                let (iw, ih) = (self.size.0 as f64, self.size.1 as f64);
                let (w, h) = (w as f64, h as f64);
                let s = (iw / w).min(ih / h);
                let (ox, oy) = ((iw - w * s) / 2.0, (ih - h * s) / 2.0);
                Geometry {
                    x0: -ox / s,
                    y0: -oy / s,
                    sx: 1.0 / s,
                    sy: 1.0 / s,
                    flip: false,
                }
            }
        }
    }
}

/// Per-thread scratch of [`preprocess`].
#[derive(Default)]
pub struct Scratch {
    rgb: Rgb,
    resizer: Resizer,
}

/// Decodes `bytes` and writes the model input (3×H×W, normalised) into
/// `out`; returns the image size.
pub fn preprocess(
    bytes: &[u8],
    p: &TeacherParams,
    s: &mut Scratch,
    out: &mut [f32],
) -> Result<(u32, u32), String> {
    decode_rgb(bytes, &mut s.rgb, max_image_pixels())?;
    let (w, h) = (s.rgb.width, s.rgb.height);
    let g = p.geometry(w, h);
    s.resizer.render(&s.rgb, &g, p.size.0, p.size.1)?;
    let scale = p.std.map(|x| 1.0 / (255.0 * x));
    let off = [0, 1, 2].map(|c| p.mean[c] / p.std[c]);
    crate::codec::to_planar(s.resizer.output(), out, p.size.0 as usize, false, |c, x| {
        x as f32 * scale[c] - off[c]
    });
    Ok((w, h))
}

/// One sample's model output: values and shape, batch dimension removed.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// One tensor.
    One(Vec<f32>, Vec<usize>),
    /// Detection: boxes N×4, scores N, classes N.
    Boxes(Vec<f32>, Vec<f32>, Vec<f32>),
}

/// The rows and columns of an `mh`×`mw` map of the input frame that cover
/// the image (all of them for stretch).
fn covered(
    p: &TeacherParams,
    g: &Geometry,
    (w, h): (u32, u32),
    (mh, mw): (usize, usize),
) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let span = |origin: f64, step: f64, len: f64, input: f64, m: usize| {
        // Input pixels where the image starts and ends.
        let a = (-origin / step).max(0.0) / input * m as f64;
        let b = ((len - origin) / step).min(input) / input * m as f64;
        // Ends that are whole numbers up to rounding (37.333 / 1.333 =
        // 28.000000000000004) must not take in a pixel of padding.
        let whole = |v: f64| {
            if (v - v.round()).abs() < 1e-6 {
                v.round()
            } else {
                v
            }
        };
        let (a, b) = (whole(a).floor() as usize, (whole(b).ceil() as usize).min(m));
        a.min(b.saturating_sub(1))..b.max(a + 1).min(m)
    };
    match p.resize {
        ResizePolicy::Stretch => (0..mh, 0..mw),
        ResizePolicy::Letterbox => (
            span(g.y0, g.sy, h as f64, p.size.1 as f64, mh),
            span(g.x0, g.sx, w as f64, p.size.0 as f64, mw),
        ),
    }
}

fn finite(v: &[f32], what: &str) -> Result<(), String> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(format!(
            "the model output {what} has a non-finite value ({}) at {i}",
            v[i]
        )),
        None => Ok(()),
    }
}

/// Turns one sample's model output into the task's label (module docs).
pub fn postprocess(
    task: &TaskDef,
    p: &TeacherParams,
    out: &Output,
    image: (u32, u32),
) -> Result<Label, String> {
    let g = p.geometry(image.0, image.1);
    match (&task.kind, out) {
        (
            TaskKind::Classification {
                num_classes,
                encoding,
                multi_label,
                ..
            },
            Output::One(v, shape),
        ) => {
            if shape[..] != [*num_classes as usize] {
                return Err(format!("classification output has shape {shape:?} per image, the task has {num_classes} classes"));
            }
            finite(v, "classification")?;
            let probs: Vec<f32> = if !p.logits {
                v.clone()
            } else if *multi_label {
                v.iter()
                    .map(|x| 1.0 / (1.0 + (-x / p.temperature).exp()))
                    .collect()
            } else {
                let m = v.iter().fold(f32::NEG_INFINITY, |a, b| a.max(*b));
                let e: Vec<f32> = v.iter().map(|x| ((x - m) / p.temperature).exp()).collect();
                let s: f32 = e.iter().sum();
                e.iter().map(|x| x / s).collect()
            };
            Ok(Label::Classification(match encoding {
                ClassEncoding::Dense => ClassLabel::Dense(probs),
                ClassEncoding::Topk => ClassLabel::top_k(&probs, p.top_k),
            }))
        }
        (
            TaskKind::Detection {
                num_classes,
                min_score_written,
                ..
            },
            Output::Boxes(b, s, c),
        ) => {
            if b.len() != 4 * s.len() || s.len() != c.len() {
                return Err(format!("detection output has {} box values, {} scores and {} classes per image (want N×4, N, N)", b.len(), s.len(), c.len()));
            }
            finite(b, "boxes")?;
            finite(s, "scores")?;
            finite(c, "classes")?;
            let mut d = Detections::default();
            for ((bx, &score), &cls) in b.chunks_exact(4).zip(s).zip(c) {
                if score < *min_score_written {
                    continue;
                }
                if cls < 0.0 || cls >= *num_classes as f32 || cls.fract() != 0.0 {
                    return Err(format!(
                        "detection class {cls} is not a class id below {num_classes}"
                    ));
                }
                let x = |v: f32| (g.x0 + v as f64 * g.sx).clamp(0.0, image.0 as f64) as f32;
                let y = |v: f32| (g.y0 + v as f64 * g.sy).clamp(0.0, image.1 as f64) as f32;
                let (x0, x1) = (x(bx[0]), x(bx[2]));
                let (y0, y1) = (y(bx[1]), y(bx[3]));
                d.boxes
                    .push([x0.min(x1), y0.min(y1), x0.max(x1), y0.max(y1)]);
                d.scores.push(score.clamp(0.0, 1.0));
                d.classes.push(cls as u32);
            }
            Ok(Label::Detection(d))
        }
        (
            TaskKind::Segmentation {
                num_classes,
                dtype,
                ignore_index,
                ..
            },
            Output::One(v, shape),
        ) => {
            let [c, mh, mw] = shape[..] else {
                return Err(format!(
                    "segmentation output has shape {shape:?} per image (want C×h×w)"
                ));
            };
            if c != *num_classes as usize || mh == 0 || mw == 0 {
                return Err(format!("segmentation output has shape {shape:?} per image, the task has {num_classes} classes"));
            }
            finite(v, "segmentation")?;
            let (rows, cols) = covered(p, &g, image, (mh, mw));
            let (h, w) = (rows.len(), cols.len());
            let mut classes = Vec::with_capacity(h * w);
            let mut conf = Vec::with_capacity(h * w);
            for y in rows {
                for x in cols.clone() {
                    let at = |k: usize| v[(k * mh + y) * mw + x];
                    let (best, top) = (0..c).fold((0, f32::NEG_INFINITY), |(bi, bv), k| {
                        if at(k) > bv {
                            (k, at(k))
                        } else {
                            (bi, bv)
                        }
                    });
                    let z: f32 = (0..c).map(|k| (at(k) - top).exp()).sum();
                    let prob = 1.0 / z;
                    let ignored = p.ignore_below.is_some_and(|t| prob < t);
                    classes.push(if ignored { *ignore_index } else { best as u32 });
                    conf.push(prob);
                }
            }
            let map = match dtype {
                MaskDtype::U8 => SegMap::from_u8(
                    h as u32,
                    w as u32,
                    classes.iter().map(|&k| k as u8).collect(),
                ),
                MaskDtype::U16 => SegMap::from_u16(
                    h as u32,
                    w as u32,
                    &classes.iter().map(|&k| k as u16).collect::<Vec<_>>(),
                ),
            };
            Ok(Label::Segmentation(map.with_confidence_probs(&conf)))
        }
        (TaskKind::Depth { .. }, Output::One(v, shape)) => {
            let (mh, mw) = match shape[..] {
                [1, h, w] | [h, w] => (h, w),
                _ => {
                    return Err(format!(
                        "depth output has shape {shape:?} per image (want 1×h×w)"
                    ))
                }
            };
            if mh == 0 || mw == 0 {
                return Err(format!("depth output has shape {shape:?} per image"));
            }
            let (rows, cols) = covered(p, &g, image, (mh, mw));
            let (h, w) = (rows.len(), cols.len());
            let mut d = Vec::with_capacity(h * w);
            for y in rows {
                d.extend(cols.clone().map(|x| v[y * mw + x]));
            }
            finite(&d, "depth")?;
            Ok(Label::Depth(DepthMap::from_f32(h as u32, w as u32, &d)))
        }
        // Output of the other shape (every kind listed, so that a new one
        // must be handled above).
        (
            kind @ (TaskKind::Classification { .. }
            | TaskKind::Detection { .. }
            | TaskKind::Segmentation { .. }
            | TaskKind::Depth { .. }),
            _,
        ) => Err(format!(
            "a {} task needs {} output",
            kind.name(),
            if matches!(kind, TaskKind::Detection { .. }) {
                "a (boxes, scores, classes) tuple"
            } else {
                "one tensor"
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(json: &str) -> TaskDef {
        TaskDef::from_json(json).unwrap()
    }

    #[test]
    fn params_come_from_the_teacher_record_with_defaults() {
        let t = task(
            r#"{"name":"c","kind":"classification","num_classes":3,"encoding":"topk","teacher":{"name":"m","params":{"input_size":[64,32],"resize":"letterbox","temperature":2,"top_k":2}}}"#,
        );
        let p = TeacherParams::from_task(&t).unwrap();
        assert_eq!(
            (p.size, p.resize, p.temperature, p.top_k),
            ((64, 32), ResizePolicy::Letterbox, 2.0, 2)
        );
        let bad = task(
            r#"{"name":"c","kind":"classification","num_classes":3,"encoding":"topk","teacher":{"name":"m","params":{"resize":"crop"}}}"#,
        );
        assert!(TeacherParams::from_task(&bad)
            .unwrap_err()
            .contains("resize"));
    }

    #[test]
    fn letterboxed_boxes_and_maps_map_back_to_the_image() {
        let t = task(
            r#"{"name":"d","kind":"detection","num_classes":2,"class_names":["a","b"],"min_score_written":0.5,"teacher":{"name":"m","params":{"input_size":100,"resize":"letterbox"}}}"#,
        );
        let p = TeacherParams::from_task(&t).unwrap();
        // A 200×100 image: scale 0.5, 25 px of padding above and below.
        let out = Output::Boxes(
            vec![0.0, 25.0, 50.0, 75.0, 0.0, 0.0, 1.0, 1.0],
            vec![0.9, 0.1],
            vec![1.0, 0.0],
        );
        let Label::Detection(d) = postprocess(&t, &p, &out, (200, 100)).unwrap() else {
            panic!()
        };
        assert_eq!(
            (d.boxes, d.classes),
            (vec![[0.0, 0.0, 100.0, 100.0]], vec![1])
        );
        let t = task(
            r#"{"name":"z","kind":"depth","representation":"relative","teacher":{"name":"m","params":{"input_size":100,"resize":"letterbox"}}}"#,
        );
        let p = TeacherParams::from_task(&t).unwrap();
        // A 10×10 output map: rows 0–2 and 8–9 are padding (rows 2.5..7.5 hold the image).
        let v: Vec<f32> = (0..100).map(|i| (i / 10) as f32).collect();
        let Label::Depth(m) =
            postprocess(&t, &p, &Output::One(v, vec![1, 10, 10]), (200, 100)).unwrap()
        else {
            panic!()
        };
        assert_eq!((m.height, m.width), (6, 10));
        assert_eq!(m.to_f32()[0], 2.0);
    }
}
