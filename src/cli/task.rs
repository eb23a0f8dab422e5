//! `must-ds task define`: from a JSON file or from flags.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};

use must_ds::format::{ClassEncoding, DepthRepresentation, MaskDtype, TaskDef, TaskKind, Teacher};
use must_ds::store::Dataset;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Kind {
    Classification,
    Detection,
    Segmentation,
    Depth,
}

#[derive(Subcommand, Debug)]
pub(crate) enum TaskCommand {
    /// Define a task from a JSON file (see schemas/task.schema.json) or from flags.
    ///
    /// Examples:
    ///   must-ds task define /data/corpus task.json
    ///   must-ds task define /data/corpus --name det --kind detection --num-classes 80 --teacher owl-vit --min-score 0.3
    Define {
        /// Dataset root.
        root: String,
        /// A task definition in JSON (instead of the flags below).
        file: Option<PathBuf>,
        /// Task name, [a-z0-9_-]{1,64}.
        #[arg(long)]
        name: Option<String>,
        /// Task kind.
        #[arg(long, value_enum)]
        kind: Option<Kind>,
        /// Number of classes (classification, detection, segmentation).
        #[arg(long)]
        num_classes: Option<u32>,
        /// Class names, comma separated.
        #[arg(long, value_delimiter = ',')]
        class_names: Option<Vec<String>>,
        /// Classification: store the full distribution instead of the top-k.
        #[arg(long)]
        dense: bool,
        /// Classification: independent per-class probabilities.
        #[arg(long)]
        multi_label: bool,
        /// Detection: boxes below this score were not written.
        #[arg(long, default_value_t = 0.0)]
        min_score: f32,
        /// Segmentation: store masks as u16 (more than 255 classes).
        #[arg(long)]
        u16: bool,
        /// Segmentation: value of unlabeled pixels.
        #[arg(long)]
        ignore_index: Option<u32>,
        /// Depth: inverse_relative, relative or metric.
        #[arg(long, default_value = "inverse_relative")]
        representation: String,
        /// Depth: unit of metric depth.
        #[arg(long)]
        unit: Option<String>,
        /// Teacher model name (or "ground-truth").
        #[arg(long)]
        teacher: Option<String>,
        /// Teacher checkpoint (path, URL or sha256 digest).
        #[arg(long)]
        checkpoint: Option<String>,
        /// The teacher's model file: its sha256 digest becomes the
        /// checkpoint (and its file name the teacher, without --teacher);
        /// `must-ds label` then refuses any other file.
        #[arg(long)]
        model: Option<PathBuf>,
        /// A teacher parameter, KEY=VALUE with VALUE in JSON (or a plain
        /// string): input_size, resize, mean, std, output, temperature,
        /// top_k, confidence_ignore_below (see the README). Repeatable.
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, serde_json::Value)>,
    },
}

pub(crate) fn run(
    cmd: TaskCommand,
    rt: &tokio::runtime::Runtime,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let TaskCommand::Define {
        root,
        file,
        name,
        kind,
        num_classes,
        class_names,
        dense,
        multi_label,
        min_score,
        u16,
        ignore_index,
        representation,
        unit,
        teacher,
        checkpoint,
        model,
        params,
    } = cmd;
    let task = match file {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            TaskDef::from_json(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => {
            let (Some(name), Some(kind)) = (name, kind) else {
                bail!("give a task JSON file, or at least --name and --kind");
            };
            let classes = || -> anyhow::Result<u32> {
                num_classes
                    .or(class_names.as_ref().map(|c| c.len() as u32))
                    .context("--num-classes (or --class-names) is required for this kind")
            };
            let kind = match kind {
                Kind::Classification => TaskKind::Classification {
                    num_classes: classes()?,
                    class_names: class_names.clone(),
                    encoding: if dense { ClassEncoding::Dense } else { ClassEncoding::Topk },
                    multi_label,
                },
                Kind::Detection => TaskKind::Detection {
                    num_classes: classes()?,
                    class_names: class_names.clone(),
                    min_score_written: min_score,
                },
                Kind::Segmentation => {
                    let dtype = if u16 { MaskDtype::U16 } else { MaskDtype::U8 };
                    TaskKind::Segmentation {
                        num_classes: classes()?,
                        class_names: class_names.clone(),
                        dtype,
                        ignore_index: ignore_index.unwrap_or(dtype.max()),
                    }
                }
                Kind::Depth => TaskKind::Depth {
                    representation: serde_json::from_value::<DepthRepresentation>(serde_json::Value::String(representation.clone()))
                        .with_context(|| format!("--representation {representation:?}: use inverse_relative, relative or metric"))?,
                    unit,
                },
            };
            let teacher = teacher.map(|t| {
                if t == "ground-truth" {
                    Teacher::ground_truth()
                } else {
                    Teacher::Model {
                        name: t,
                        checkpoint: checkpoint.clone(),
                        params: Default::default(),
                    }
                }
            });
            let task = TaskDef {
                name,
                kind,
                teacher,
            };
            task.validate()?;
            task
        }
    };
    let mut task = task;
    if model.is_some() || !params.is_empty() {
        let digest = model
            .as_deref()
            .map(must_ds::teacher::sha256_file)
            .transpose()?;
        let stem = model
            .as_deref()
            .and_then(|m| m.file_stem())
            .map(|s| s.to_string_lossy().into_owned());
        let (mut name, mut ckpt, mut p) = match task.teacher.take() {
            Some(Teacher::Model {
                name,
                checkpoint,
                params,
            }) => (Some(name), checkpoint, params),
            Some(Teacher::GroundTruth(_)) => {
                bail!("--model and --param need a model teacher, not ground-truth")
            }
            None => (None, None, Default::default()),
        };
        name = name.or(stem);
        ckpt = digest.or(ckpt);
        p.extend(params);
        let Some(name) = name else {
            bail!("--param needs a teacher: give --teacher or --model");
        };
        task.teacher = Some(Teacher::Model {
            name,
            checkpoint: ckpt,
            params: p,
        });
        task.validate()?;
        must_ds::teacher::TeacherParams::from_task(&task).map_err(anyhow::Error::msg)?;
    }
    let mut ds = rt.block_on(Dataset::open(&root))?;
    let before = ds.version();
    match rt.block_on(ds.define_task(task.clone()))? {
        None => writeln!(
            out,
            "task {:?} is already defined the same way; nothing to commit",
            task.name
        )?,
        Some(c) => writeln!(
            out,
            "defined task {:?} ({}) at version {} (was {before})",
            task.name,
            task.kind.name(),
            c.version
        )?,
    }
    Ok(())
}

fn parse_param(s: &str) -> Result<(String, serde_json::Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: use KEY=VALUE"))?;
    let v = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_owned()));
    Ok((k.to_owned(), v))
}
