//! `must-ds task define`: a task definition from a JSON file or from flags.
//!
//! The flags are the fields of a task definition (FORMAT.md section 4): the
//! library reads them as it reads a JSON file, with its own kinds, fields
//! and defaults; each kind reads its fields and ignores the others.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::builder::PossibleValuesParser;
use clap::Subcommand;
use serde_json::{json, Map, Value};

use must_ds::format::{DepthRepresentation, TaskDef, TaskKind, Teacher};
use must_ds::store::Dataset;

#[derive(clap::Args, Debug)]
pub(crate) struct TaskArgs {
    #[command(subcommand)]
    command: TaskCommand,
}

#[derive(Subcommand, Debug)]
enum TaskCommand {
    /// Define a task from a JSON file (see schemas/task.schema.json) or from flags.
    ///
    /// Examples:
    ///   must-ds task define /data/corpus task.json
    ///   must-ds task define /data/corpus --name det --kind detection --num-classes 80 --teacher owl-vit --min-score 0.3
    Define(DefineArgs),
}

#[derive(clap::Args, Debug)]
struct DefineArgs {
    /// Dataset root.
    root: String,
    /// A task definition in JSON (instead of the flags below).
    file: Option<PathBuf>,
    /// Task name, [a-z0-9_-]{1,64}.
    #[arg(long)]
    name: Option<String>,
    /// Task kind.
    #[arg(long, value_parser = PossibleValuesParser::new(TaskKind::NAMES))]
    kind: Option<String>,
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
    params: Vec<(String, Value)>,
}

pub(crate) fn run(
    a: TaskArgs,
    rt: &tokio::runtime::Runtime,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let TaskCommand::Define(d) = a.command;
    let mut task = match &d.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            TaskDef::from_json(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => from_flags(&d)?,
    };
    if d.model.is_some() || !d.params.is_empty() {
        set_model(&mut task, d.model.as_deref(), d.params)?;
    }
    let mut ds = rt.block_on(Dataset::open(&d.root))?;
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

/// The task the flags define: the definition in JSON they make, read by
/// the library (which fills in its defaults), then checked.
fn from_flags(d: &DefineArgs) -> anyhow::Result<TaskDef> {
    let (Some(name), Some(kind)) = (&d.name, &d.kind) else {
        bail!("give a task JSON file, or at least --name and --kind");
    };
    let num_classes = d
        .num_classes
        .or(d.class_names.as_ref().map(|c| c.len() as u32));
    let mut def = Map::new();
    let mut set = |key: &str, value: Value| def.insert(key.to_owned(), value);
    set("name", json!(name));
    set("kind", json!(kind));
    // A stand-in where none is given: whether the kind has classes is
    // known once the library has read it.
    set("num_classes", json!(num_classes.unwrap_or(1)));
    if let Some(c) = &d.class_names {
        set("class_names", json!(c));
    }
    if d.dense {
        set("encoding", json!("dense"));
    }
    if d.multi_label {
        set("multi_label", json!(true));
    }
    // JSON has no NaN or infinity: those are set below, for validate() to refuse.
    if d.min_score.is_finite() {
        set("min_score_written", json!(d.min_score));
    }
    set("dtype", json!(if d.u16 { "u16" } else { "u8" }));
    if let Some(i) = d.ignore_index {
        set("ignore_index", json!(i));
    }
    set("representation", json!(d.representation));
    if let Some(u) = &d.unit {
        set("unit", json!(u));
    }
    if let Some(t) = &d.teacher {
        set(
            "teacher",
            match t.as_str() {
                "ground-truth" => json!(t),
                _ => json!({ "name": t, "checkpoint": d.checkpoint }),
            },
        );
    }
    let mut task: TaskDef = serde_json::from_value(Value::Object(def)).map_err(|e| {
        // Every other field has the type the library reads.
        let r = &d.representation;
        match serde_json::from_value::<DepthRepresentation>(json!(r)) {
            Err(re) => anyhow::Error::new(re).context(format!(
                "--representation {r:?}: use inverse_relative, relative or metric"
            )),
            Ok(_) => anyhow::Error::new(e).context("the task the flags define"),
        }
    })?;
    if task.kind.num_classes().is_some() && num_classes.is_none() {
        bail!("--num-classes (or --class-names) is required for this kind");
    }
    if let TaskKind::Detection {
        min_score_written, ..
    } = &mut task.kind
    {
        if !d.min_score.is_finite() {
            *min_score_written = d.min_score;
        }
    }
    task.validate()?;
    Ok(task)
}

/// `--model` and `--param`: the model file's digest becomes the checkpoint
/// (its file stem the teacher, where none is named), the params are added
/// to the teacher's; the teacher params must then be ones `label` reads.
fn set_model(
    task: &mut TaskDef,
    model: Option<&Path>,
    params: Vec<(String, Value)>,
) -> anyhow::Result<()> {
    let digest = model.map(must_ds::teacher::sha256_file).transpose()?;
    let stem = model
        .and_then(|m| m.file_stem())
        .map(|s| s.to_string_lossy().into_owned());
    let (name, checkpoint, mut p) = match task.teacher.take() {
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
    p.extend(params);
    let Some(name) = name.or(stem) else {
        bail!("--param needs a teacher: give --teacher or --model");
    };
    task.teacher = Some(Teacher::Model {
        name,
        checkpoint: digest.or(checkpoint),
        params: p,
    });
    task.validate()?;
    must_ds::teacher::TeacherParams::from_task(task).map_err(anyhow::Error::msg)?;
    Ok(())
}

fn parse_param(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: use KEY=VALUE"))?;
    let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
    Ok((k.to_owned(), v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn flags(args: &[&str]) -> anyhow::Result<TaskDef> {
        #[derive(Parser)]
        struct P {
            #[command(flatten)]
            d: DefineArgs,
        }
        let p = P::try_parse_from(["define", "root"].iter().chain(args))?;
        from_flags(&p.d)
    }

    /// `--kind` takes the library's kind names, all of them, in its order.
    #[test]
    fn kinds_are_the_library_s() {
        let e = serde_json::from_str::<TaskDef>(r#"{"name":"t","kind":"?"}"#)
            .unwrap_err()
            .to_string();
        let names: Vec<String> = TaskKind::NAMES.iter().map(|k| format!("`{k}`")).collect();
        assert!(
            e.contains(&format!("expected one of {}", names.join(", "))),
            "{e}"
        );
        for k in TaskKind::NAMES {
            let t = flags(&["--name", "t", "--kind", k, "--num-classes", "3"]).unwrap();
            assert_eq!(t.kind.name(), k);
        }
    }

    /// The flags make the definitions the JSON of the same fields makes,
    /// with the library's defaults for what they leave out.
    #[test]
    fn flags_make_the_library_s_definitions() {
        let cases: [(&[&str], &str); 6] = [
            (
                &["--kind", "classification", "--num-classes", "3"],
                r#""kind":"classification","num_classes":3"#,
            ),
            (
                &[
                    "--kind",
                    "classification",
                    "--class-names",
                    "a,b",
                    "--dense",
                    "--multi-label",
                ],
                r#""kind":"classification","num_classes":2,"class_names":["a","b"],"encoding":"dense","multi_label":true"#,
            ),
            (
                &[
                    "--kind",
                    "detection",
                    "--num-classes",
                    "2",
                    "--min-score",
                    "0.3",
                    "--teacher",
                    "owl",
                    "--checkpoint",
                    "c",
                ],
                r#""kind":"detection","num_classes":2,"min_score_written":0.3,"teacher":{"name":"owl","checkpoint":"c"}"#,
            ),
            (
                &[
                    "--kind",
                    "segmentation",
                    "--num-classes",
                    "300",
                    "--u16",
                    "--teacher",
                    "ground-truth",
                ],
                r#""kind":"segmentation","num_classes":300,"dtype":"u16","teacher":"ground-truth""#,
            ),
            (
                &["--kind", "depth"],
                r#""kind":"depth","representation":"inverse_relative""#,
            ),
            (
                &[
                    "--kind",
                    "depth",
                    "--representation",
                    "metric",
                    "--unit",
                    "m",
                ],
                r#""kind":"depth","representation":"metric","unit":"m""#,
            ),
        ];
        for (args, fields) in cases {
            let mut a = vec!["--name", "t"];
            a.extend(args);
            let json = TaskDef::from_json(&format!(r#"{{"name":"t",{fields}}}"#)).unwrap();
            assert_eq!(flags(&a).unwrap(), json, "{args:?}");
        }
    }

    #[test]
    fn flag_errors() {
        let e = |args: &[&str]| format!("{:#}", flags(args).unwrap_err());
        assert!(e(&["--name", "t"]).contains("at least --name and --kind"));
        let classes = e(&["--name", "t", "--kind", "segmentation"]);
        assert!(classes.contains("--num-classes (or --class-names) is required"));
        let r = e(&["--name", "t", "--kind", "depth", "--representation", "far"]);
        assert!(
            r.starts_with("--representation \"far\": use inverse_relative"),
            "{r}"
        );
        assert!(flags(&[
            "--name",
            "t",
            "--kind",
            "detection",
            "--representation",
            "far",
            "--num-classes",
            "1"
        ])
        .is_ok());
        let nan = e(&[
            "--name",
            "t",
            "--kind",
            "detection",
            "--num-classes",
            "1",
            "--min-score",
            "NaN",
        ]);
        assert!(nan.contains("min_score_written NaN"), "{nan}");
        assert!(e(&["--name", "T", "--kind", "depth"]).contains("invalid task name"));
    }
}
