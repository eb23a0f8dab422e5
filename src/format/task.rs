//! Task definitions (FORMAT.md section 4).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Who produced a task's labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Teacher {
    /// Human or reference labels, written as the string `"ground-truth"`.
    GroundTruth(GroundTruthTag),
    /// A model: its name, checkpoint and free-form parameters.
    Model {
        /// Model name, e.g. `vit-l16-jft`.
        name: String,
        /// Checkpoint identity (a path, URL or `sha256:` digest).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checkpoint: Option<String>,
        /// Free-form parameters (thresholds, temperature, input size...).
        #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
        params: serde_json::Map<String, serde_json::Value>,
    },
}

/// The literal `"ground-truth"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroundTruthTag {
    /// `"ground-truth"`.
    #[serde(rename = "ground-truth")]
    GroundTruth,
}

impl Teacher {
    /// A teacher that is a model with the given name.
    pub fn model(name: impl Into<String>) -> Self {
        Teacher::Model {
            name: name.into(),
            checkpoint: None,
            params: Default::default(),
        }
    }

    /// Ground-truth labels.
    pub fn ground_truth() -> Self {
        Teacher::GroundTruth(GroundTruthTag::GroundTruth)
    }

    /// One line for humans.
    pub fn describe(&self) -> String {
        match self {
            Teacher::GroundTruth(_) => "ground-truth".into(),
            Teacher::Model {
                name,
                checkpoint,
                params,
            } => {
                let mut s = name.clone();
                if let Some(c) = checkpoint {
                    s.push_str(&format!(" @ {c}"));
                }
                if !params.is_empty() {
                    s.push_str(&format!(" {}", serde_json::Value::Object(params.clone())));
                }
                s
            }
        }
    }
}

/// How classification labels are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassEncoding {
    /// `classes` + `probs` lists, sorted by probability descending.
    Topk,
    /// `probs` as a fixed-size list of `num_classes`.
    Dense,
}

/// Element type of segmentation masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskDtype {
    /// One byte per pixel.
    U8,
    /// Two bytes per pixel, little-endian.
    U16,
}

impl MaskDtype {
    /// Bytes per pixel.
    pub fn size(self) -> usize {
        match self {
            MaskDtype::U8 => 1,
            MaskDtype::U16 => 2,
        }
    }
    /// The largest value the type holds.
    pub fn max(self) -> u32 {
        match self {
            MaskDtype::U8 => u8::MAX as u32,
            MaskDtype::U16 => u16::MAX as u32,
        }
    }
}

/// What depth values mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepthRepresentation {
    /// Inverse depth up to scale and shift (MiDaS style).
    InverseRelative,
    /// Depth up to scale and shift.
    Relative,
    /// Depth in `unit`.
    Metric,
}

/// The most classes a classification or detection task may have (2^24,
/// over a hundred times the largest label sets in use): readers size
/// dense probability rows and class tables by `num_classes`, so it must be
/// bounded. Segmentation classes are bounded by the mask dtype.
pub const MAX_CLASSES: u32 = 1 << 24;

/// Stands for an omitted `ignore_index` until [`TaskDef`] knows the dtype.
const IGNORE_INDEX_UNSET: u32 = u32::MAX;

fn default_ignore_index() -> u32 {
    IGNORE_INDEX_UNSET
}

fn default_encoding() -> ClassEncoding {
    ClassEncoding::Topk
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The kind of a task and its kind-specific fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskKind {
    /// Image classification (soft labels).
    Classification {
        /// Number of classes.
        num_classes: u32,
        /// Optional class names, `num_classes` long.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        class_names: Option<Vec<String>>,
        /// `topk` or `dense` (`topk` when absent).
        #[serde(default = "default_encoding")]
        encoding: ClassEncoding,
        /// Whether probabilities are independent per class (sigmoid) rather than a distribution.
        #[serde(default, skip_serializing_if = "is_false")]
        multi_label: bool,
    },
    /// Object detection.
    Detection {
        /// Number of classes.
        num_classes: u32,
        /// Optional class names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        class_names: Option<Vec<String>>,
        /// Boxes below this score were not written.
        #[serde(default)]
        min_score_written: f32,
    },
    /// Semantic segmentation.
    Segmentation {
        /// Number of classes.
        num_classes: u32,
        /// Optional class names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        class_names: Option<Vec<String>>,
        /// Mask element type.
        dtype: MaskDtype,
        /// The value of unlabeled pixels.
        #[serde(default = "default_ignore_index")]
        ignore_index: u32,
    },
    /// Monocular depth.
    Depth {
        /// What the values mean.
        representation: DepthRepresentation,
        /// Unit of metric depth, e.g. `m`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unit: Option<String>,
    },
}

impl TaskKind {
    /// Every kind's name, as written in task definitions, in the enum's order.
    pub const NAMES: [&'static str; 4] = ["classification", "detection", "segmentation", "depth"];

    /// The kind's name as written in task definitions (one of [`Self::NAMES`]).
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Classification { .. } => "classification",
            TaskKind::Detection { .. } => "detection",
            TaskKind::Segmentation { .. } => "segmentation",
            TaskKind::Depth { .. } => "depth",
        }
    }

    /// Number of classes, for kinds that have classes.
    pub fn num_classes(&self) -> Option<u32> {
        match self {
            TaskKind::Classification { num_classes, .. }
            | TaskKind::Detection { num_classes, .. }
            | TaskKind::Segmentation { num_classes, .. } => Some(*num_classes),
            TaskKind::Depth { .. } => None,
        }
    }

    /// Class names, where the task has them.
    pub fn class_names(&self) -> Option<&[String]> {
        match self {
            TaskKind::Classification { class_names, .. }
            | TaskKind::Detection { class_names, .. }
            | TaskKind::Segmentation { class_names, .. } => class_names.as_deref(),
            TaskKind::Depth { .. } => None,
        }
    }
}

/// A task: what one teacher labels (FORMAT.md section 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "TaskDefWire")]
pub struct TaskDef {
    /// `[a-z0-9_-]{1,64}`; also the folder name under `labels/`.
    pub name: String,
    /// Kind and kind-specific fields (flattened into the same JSON object).
    #[serde(flatten)]
    pub kind: TaskKind,
    /// Who made the labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<Teacher>,
}

/// The task as read, before defaults that depend on other fields.
#[derive(Deserialize)]
struct TaskDefWire {
    name: String,
    #[serde(flatten)]
    kind: TaskKind,
    #[serde(default)]
    teacher: Option<Teacher>,
}

impl From<TaskDefWire> for TaskDef {
    fn from(w: TaskDefWire) -> Self {
        let mut kind = w.kind;
        // An omitted ignore_index is the largest value of the mask dtype
        // (255 for u8, 65535 for u16), never a class id.
        if let TaskKind::Segmentation {
            dtype,
            ignore_index,
            ..
        } = &mut kind
        {
            if *ignore_index == IGNORE_INDEX_UNSET {
                *ignore_index = dtype.max();
            }
        }
        TaskDef {
            name: w.name,
            kind,
            teacher: w.teacher,
        }
    }
}

/// Checks a task name against `[a-z0-9_-]{1,64}`.
pub fn validate_task_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidTaskName {
            name: name.to_owned(),
        })
    }
}

impl TaskDef {
    /// Parses and validates a task definition from JSON.
    pub fn from_json(text: &str) -> Result<Self> {
        let task: TaskDef =
            serde_json::from_str(text).map_err(|source| Error::json("task definition", source))?;
        task.validate()?;
        Ok(task)
    }

    /// The definition as compact JSON (as stored in `must.task`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("task definitions always serialize")
    }

    /// Checks the name and the kind-specific fields.
    pub fn validate(&self) -> Result<()> {
        validate_task_name(&self.name)?;
        let bad = |reason: String| Error::InvalidTask {
            task: self.name.clone(),
            reason,
        };
        if let Some(n) = self.kind.num_classes() {
            if n == 0 {
                return Err(bad("num_classes must be at least 1".into()));
            }
            if n > MAX_CLASSES {
                return Err(bad(format!(
                    "num_classes {n} is more than the {MAX_CLASSES} classes a task may have"
                )));
            }
            if let Some(names) = self.kind.class_names() {
                if names.len() != n as usize {
                    return Err(bad(format!(
                        "class_names has {} names but num_classes is {n}",
                        names.len()
                    )));
                }
            }
        }
        match &self.kind {
            TaskKind::Detection {
                min_score_written, ..
            } if !(0.0..=1.0).contains(min_score_written) => {
                return Err(bad(format!(
                    "min_score_written {min_score_written} is not in [0, 1]"
                )));
            }
            TaskKind::Segmentation {
                num_classes,
                dtype,
                ignore_index,
                ..
            } => {
                if *ignore_index > dtype.max() {
                    return Err(bad(format!(
                        "ignore_index {ignore_index} does not fit in {dtype:?}"
                    )));
                }
                if num_classes - 1 > dtype.max() {
                    return Err(bad(format!(
                        "{num_classes} classes do not fit in {dtype:?}"
                    )));
                }
                if *ignore_index < *num_classes {
                    return Err(bad(format!(
                        "ignore_index {ignore_index} is a class id (num_classes {num_classes})"
                    )));
                }
            }
            TaskKind::Depth {
                representation: DepthRepresentation::Metric,
                unit: None,
            } => {
                return Err(bad("metric depth needs a unit".into()));
            }
            // Checked above (classes, names, encoding) or nothing more to check.
            TaskKind::Classification { .. }
            | TaskKind::Detection { .. }
            | TaskKind::Depth { .. } => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_json_round_trips_with_flattened_kind() {
        let text = r#"{"name":"det","kind":"detection","num_classes":3,"class_names":["a","b","c"],"min_score_written":0.3,"teacher":{"name":"owl","params":{"nms":0.5}}}"#;
        let t = TaskDef::from_json(text).unwrap();
        assert_eq!(t.kind.name(), "detection");
        assert_eq!(TaskDef::from_json(&t.to_json()).unwrap(), t);
        let gt = r#"{"name":"seg","kind":"segmentation","num_classes":21,"dtype":"u8","teacher":"ground-truth"}"#;
        let t = TaskDef::from_json(gt).unwrap();
        assert_eq!(t.teacher, Some(Teacher::ground_truth()));
        assert!(matches!(
            t.kind,
            TaskKind::Segmentation {
                ignore_index: 255,
                ..
            }
        ));
    }

    #[test]
    fn bad_names_and_fields_are_refused() {
        for name in ["", "Upper", "a b", "x/y", &"a".repeat(65)] {
            assert!(
                matches!(validate_task_name(name), Err(Error::InvalidTaskName { .. })),
                "{name}"
            );
        }
        let t = r#"{"name":"c","kind":"classification","num_classes":2,"class_names":["a"],"encoding":"topk"}"#;
        assert!(matches!(
            TaskDef::from_json(t),
            Err(Error::InvalidTask { .. })
        ));
        let t = r#"{"name":"d","kind":"depth","representation":"metric"}"#;
        assert!(matches!(
            TaskDef::from_json(t),
            Err(Error::InvalidTask { .. })
        ));
    }

    #[test]
    fn names_lists_every_kind_in_order() {
        for name in TaskKind::NAMES {
            let classes = match name {
                "segmentation" => r#","num_classes":3,"dtype":"u8""#,
                "depth" => r#","representation":"relative""#,
                _ => r#","num_classes":3"#,
            };
            let json =
                format!(r#"{{"name":"t","kind":"{name}"{classes},"teacher":{{"name":"m"}}}}"#);
            let t = TaskDef::from_json(&json).unwrap();
            assert_eq!(t.kind.name(), name);
        }
        let e = TaskDef::from_json(r#"{"name":"t","kind":"keypoints"}"#).unwrap_err();
        for name in TaskKind::NAMES {
            assert!(e.to_string().contains(name), "{e}");
        }
    }

    #[test]
    fn num_classes_is_bounded() {
        let def = |kind: &str, n: u64, extra: &str| {
            TaskDef::from_json(&format!(
                r#"{{"name":"t","kind":"{kind}","num_classes":{n}{extra}}}"#
            ))
        };
        for kind in ["classification", "detection"] {
            assert!(def(kind, MAX_CLASSES as u64, "").is_ok(), "{kind}");
            for n in [MAX_CLASSES as u64 + 1, u32::MAX as u64] {
                let e = def(kind, n, "").unwrap_err().to_string();
                assert!(
                    e.contains("num_classes") && e.contains(&n.to_string()),
                    "{e}"
                );
            }
        }
        let dense = def("classification", u32::MAX as u64, r#","encoding":"dense""#);
        assert!(matches!(dense, Err(Error::InvalidTask { .. })));
        // Segmentation: the mask dtype bounds the classes (ignore_index apart).
        let seg = |n: u64, dtype: &str, ignore: u64| {
            def(
                "segmentation",
                n,
                &format!(r#","dtype":"{dtype}","ignore_index":{ignore}"#),
            )
        };
        assert!(seg(255, "u8", 255).is_ok());
        assert!(seg(256, "u8", 255).is_err());
        assert!(seg(65535, "u16", 65535).is_ok());
        assert!(seg(65537, "u16", 65535).is_err());
        assert!(seg(u32::MAX as u64, "u16", 65535).is_err());
        // More than u32: refused by the parser, not wrapped.
        assert!(def("detection", 1 << 40, "").is_err());
    }
}
