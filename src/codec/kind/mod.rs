//! Typed labels of the four task kinds and the value checks of FORMAT.md:
//! the [`Label`] and [`LabelRef`] enums, whose methods dispatch to one
//! module per kind. Each kind module holds that kind's label type, its value
//! checks and its Arrow decode and encode.
//!
//! Every match on a kind here (and in the kind modules) lists each kind, with
//! no wildcard arm, so the compiler points at every place a new kind must
//! handle.

pub(super) mod classification;
pub(super) mod depth;
pub(super) mod detection;
pub(super) mod segmentation;
mod shared;

pub use self::classification::ClassLabel;
pub use self::depth::DepthMap;
pub use self::detection::Detections;
pub use self::segmentation::SegMap;

use crate::error::{Error, Location, Result};
use crate::format::TaskDef;

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
            Label::Classification(c) => c.view(),
            Label::Detection(d) => d.view(),
            Label::Segmentation(m) => m.view(),
            Label::Depth(d) => d.view(),
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
            LabelRef::TopK { .. } | LabelRef::Dense(_) => classification::NAME,
            LabelRef::Detection { .. } => detection::NAME,
            LabelRef::Segmentation { .. } => segmentation::NAME,
            LabelRef::Depth { .. } => depth::NAME,
        }
    }

    /// An owned copy.
    pub fn to_label(&self) -> Label {
        match *self {
            LabelRef::TopK { classes, probs } => {
                Label::Classification(ClassLabel::from_view(Some(classes), probs))
            }
            LabelRef::Dense(probs) => Label::Classification(ClassLabel::from_view(None, probs)),
            LabelRef::Detection {
                boxes,
                classes,
                scores,
            } => Label::Detection(Detections::from_view(boxes, classes, scores)),
            LabelRef::Segmentation {
                height,
                width,
                mask,
                confidence,
            } => Label::Segmentation(SegMap::from_view(height, width, mask, confidence)),
            LabelRef::Depth {
                height,
                width,
                depth,
            } => Label::Depth(DepthMap::from_view(height, width, depth)),
        }
    }

    /// Checks every value against the task's rules: the reason when one is wrong.
    pub fn check(&self, task: &TaskDef) -> std::result::Result<(), String> {
        match *self {
            LabelRef::TopK { classes, probs } => classification::check(Some(classes), probs, task),
            LabelRef::Dense(probs) => classification::check(None, probs, task),
            LabelRef::Detection {
                boxes,
                classes,
                scores,
            } => detection::check(boxes, classes, scores, task),
            LabelRef::Segmentation {
                height,
                width,
                mask,
                confidence,
            } => segmentation::check(height, width, mask, confidence, task),
            LabelRef::Depth {
                height,
                width,
                depth,
            } => depth::check(height, width, depth, task),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{batch_to_labels, labels_to_batch};

    fn task(kind: &str) -> TaskDef {
        let fields = match kind {
            "topk" => r#""kind":"classification","num_classes":3"#,
            "dense" => r#""kind":"classification","num_classes":3,"encoding":"dense""#,
            "detection" => r#""kind":"detection","num_classes":3"#,
            "segmentation" => r#""kind":"segmentation","num_classes":3,"dtype":"u8""#,
            "depth" => r#""kind":"depth","representation":"relative""#,
            other => panic!("{other}"),
        };
        TaskDef::from_json(&format!(r#"{{"name":"t",{fields}}}"#)).unwrap()
    }

    fn labels() -> Vec<(&'static str, Label)> {
        vec![
            (
                "topk",
                Label::Classification(ClassLabel::top_k(&[0.1, 0.7, 0.2], 2)),
            ),
            (
                "dense",
                Label::Classification(ClassLabel::Dense(vec![0.1, 0.7, 0.2])),
            ),
            (
                "detection",
                Label::Detection(Detections {
                    boxes: vec![[1.0, 2.0, 3.0, 4.0]],
                    classes: vec![2],
                    scores: vec![0.5],
                }),
            ),
            (
                "segmentation",
                Label::Segmentation(
                    SegMap::from_u8(1, 2, vec![0, 255]).with_confidence_probs(&[1.0, 0.5]),
                ),
            ),
            (
                "depth",
                Label::Depth(DepthMap::from_f32(1, 2, &[1.5, f32::NAN])),
            ),
        ]
    }

    #[test]
    fn every_kind_round_trips_through_arrow() {
        for (kind, label) in labels() {
            let task = task(kind);
            label.check(&task).unwrap();
            assert_eq!(label.as_ref().to_label(), label, "{kind}");
            let ids = vec!["a".to_owned(), "b".to_owned()];
            let rows = vec![Some(label.clone()), None];
            let batch = labels_to_batch(&task, &ids, &rows, true).unwrap();
            let loc = Location::file("t.parquet");
            let (got_ids, got) = batch_to_labels(&task, &batch, &loc, 0).unwrap();
            assert_eq!(got_ids, ids);
            assert_eq!(got, rows, "{kind}");
        }
    }

    #[test]
    fn a_label_of_another_kind_is_refused() {
        for (kind, label) in labels() {
            for (other, _) in labels() {
                let task = task(other);
                if label.kind_name() == task.kind.name() {
                    continue;
                }
                assert_eq!(
                    label.check(&task).unwrap_err(),
                    format!(
                        "a {} label given for task \"t\" of kind {}",
                        label.kind_name(),
                        task.kind.name()
                    ),
                    "{kind} for {other}"
                );
                let ids = vec!["a".to_owned()];
                let err = labels_to_batch(&task, &ids, &[Some(label.clone())], false)
                    .unwrap_err()
                    .to_string();
                assert!(
                    err.contains("label kind does not match task \"t\""),
                    "{kind} for {other}: {err}"
                );
            }
        }
        let err = labels()[0].1.check(&task("dense")).unwrap_err();
        assert_eq!(
            err,
            "label encoding does not match the task's Dense encoding"
        );
    }
}
