//! The Rust schemas and `schemas/` say the same thing.

use std::path::Path;

use must_ds::format::{arrow_type_name, image_schema, label_schema, Commit, TaskDef};
use serde_json::Value;

use crate::util;

fn load(rel: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(rel);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn columns(schema: &arrow_schema::Schema) -> Vec<(String, String, bool)> {
    schema
        .fields()
        .iter()
        .map(|f| {
            (
                f.name().clone(),
                arrow_type_name(f.data_type()),
                f.is_nullable(),
            )
        })
        .collect()
}

fn from_file(cols: &Value, num_classes: u32) -> Vec<(String, String, bool)> {
    cols.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let ty = c["type"]
                .as_str()
                .unwrap()
                .replace("num_classes", &num_classes.to_string());
            (
                c["name"].as_str().unwrap().to_owned(),
                ty,
                c["nullable"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn task(json: &str) -> TaskDef {
    TaskDef::from_json(json).unwrap()
}

#[test]
fn arrow_schemas_match_schemas_folder() {
    let images = load("arrow/images.json");
    assert_eq!(columns(&image_schema()), from_file(&images["columns"], 0));
    let labels = load("arrow/labels.json");
    let kinds = &labels["kinds"];
    let cases = [
        (
            "classification_topk",
            r#"{"name":"c","kind":"classification","num_classes":7,"encoding":"topk"}"#,
            false,
        ),
        (
            "classification_dense",
            r#"{"name":"c","kind":"classification","num_classes":7,"encoding":"dense"}"#,
            false,
        ),
        (
            "detection",
            r#"{"name":"d","kind":"detection","num_classes":7}"#,
            false,
        ),
        (
            "segmentation",
            r#"{"name":"s","kind":"segmentation","num_classes":7,"dtype":"u8"}"#,
            true,
        ),
        (
            "depth",
            r#"{"name":"z","kind":"depth","representation":"relative"}"#,
            false,
        ),
    ];
    for (key, def, optional_conf) in cases {
        let t = task(def);
        let want = from_file(&kinds[key], 7);
        assert_eq!(columns(&label_schema(&t, optional_conf)), want, "{key}");
        if optional_conf {
            // Without confidence: the same columns less the optional one.
            let opt: Vec<_> = kinds[key]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["optional"] != Value::Bool(true))
                .cloned()
                .collect();
            assert_eq!(
                columns(&label_schema(&t, false)),
                from_file(&Value::Array(opt), 7)
            );
        }
    }
    assert_eq!(
        kinds.as_object().unwrap().len(),
        cases.len(),
        "every kind in schemas/ is checked"
    );
}

/// Resolves `$ref`s to sibling files of `schemas/`.
struct SchemasFolder;

impl jsonschema::Retrieve for SchemasFolder {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri
            .as_str()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        Ok(load(&name))
    }
}

fn validator(name: &str) -> jsonschema::Validator {
    jsonschema::options()
        .with_retriever(SchemasFolder)
        .build(&load(name))
        .unwrap()
}

#[test]
fn task_definitions_agree_with_json_schema() {
    let v = validator("task.schema.json");
    let good = [
        r#"{"name":"cls","kind":"classification","num_classes":1000,"encoding":"topk","teacher":{"name":"vit","checkpoint":"sha256:00","params":{"k":5}}}"#,
        r#"{"name":"cls-dense","kind":"classification","num_classes":3,"class_names":["a","b","c"],"encoding":"dense","multi_label":true}"#,
        r#"{"name":"det","kind":"detection","num_classes":80,"min_score_written":0.3,"teacher":"ground-truth"}"#,
        r#"{"name":"seg","kind":"segmentation","num_classes":300,"dtype":"u16","ignore_index":65535}"#,
        r#"{"name":"depth","kind":"depth","representation":"metric","unit":"m"}"#,
    ];
    for g in good {
        let t = task(g);
        let written: Value = serde_json::from_str(&t.to_json()).unwrap();
        assert!(
            v.is_valid(&written),
            "schema refuses what Rust writes: {written}"
        );
    }
    let bad = [
        r#"{"name":"Bad Name","kind":"depth","representation":"relative"}"#,
        r#"{"name":"c","kind":"classification","encoding":"topk"}"#,
        r#"{"name":"z","kind":"depth","representation":"metric"}"#,
        r#"{"name":"q","kind":"keypoints"}"#,
    ];
    for b in bad {
        let value: Value = serde_json::from_str(b).unwrap();
        assert!(!v.is_valid(&value), "schema accepts {b}");
        assert!(TaskDef::from_json(b).is_err(), "Rust accepts {b}");
    }
}

#[test]
fn commits_written_by_rust_agree_with_json_schema() {
    let dir = tempfile::tempdir().unwrap();
    let rt = util::rt();
    let mut ds = util::dataset_with_images(&rt, dir.path(), 6, 3, 2);
    let t = task(
        r#"{"name":"cls","kind":"classification","num_classes":4,"encoding":"topk","teacher":"ground-truth"}"#,
    );
    rt.block_on(ds.define_task(t)).unwrap();
    let commit_schema = validator("commit.schema.json");
    let history = rt.block_on(ds.history()).unwrap();
    assert!(history.len() >= 4);
    for c in &history {
        let v: Value = serde_json::from_slice(&c.to_bytes()).unwrap();
        let errors: Vec<String> = commit_schema
            .iter_errors(&v)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "version {}: {errors:?}", c.version);
        assert_eq!(&Commit::from_slice(&c.to_bytes(), "x").unwrap(), c);
    }
    let bad: Value = serde_json::json!({"version": 1, "actions": [{"add_images": {"shard": 0, "path": "images/x.parquet", "rows": 1, "bytes": 1, "checksum": "md5:00", "row_groups": [1]}}]});
    assert!(
        !commit_schema.is_valid(&bad),
        "a bad checksum format must be refused"
    );
    let unknown: Value = serde_json::json!({"version": 1, "actions": [{"add_mystery": {}}]});
    assert!(!commit_schema.is_valid(&unknown));
}

/// The teacher parameters `must-ds label` reads: the schema and
/// `TeacherParams` accept and refuse the same values.
#[test]
fn teacher_params_agree_with_json_schema() {
    let v = validator("task.schema.json");
    let with = |params: &str| {
        format!(
            r#"{{"name":"c","kind":"classification","num_classes":3,"encoding":"topk","teacher":{{"name":"m","checkpoint":"sha256:00","params":{params}}}}}"#
        )
    };
    let good = [
        r#"{}"#,
        r#"{"input_size":64,"resize":"letterbox","temperature":2,"top_k":3}"#,
        r#"{"input_size":[64,32],"mean":[0.5,0.5,0.5],"std":[0.2,0.2,0.2],"output":"probs"}"#,
        r#"{"confidence_ignore_below":0.4,"extra":"kept"}"#,
    ];
    for g in good {
        let text = with(g);
        assert!(
            v.is_valid(&serde_json::from_str::<Value>(&text).unwrap()),
            "schema refuses {g}"
        );
        must_ds::teacher::TeacherParams::from_task(&task(&text))
            .unwrap_or_else(|e| panic!("{g}: {e}"));
    }
    let bad = [
        r#"{"resize":"crop"}"#,
        r#"{"temperature":0}"#,
        r#"{"input_size":[64]}"#,
        r#"{"std":[0.2,0.2]}"#,
        r#"{"output":"scores"}"#,
    ];
    for b in bad {
        let text = with(b);
        assert!(
            !v.is_valid(&serde_json::from_str::<Value>(&text).unwrap()),
            "schema accepts {b}"
        );
        assert!(
            must_ds::teacher::TeacherParams::from_task(&task(&text)).is_err(),
            "Rust accepts {b}"
        );
    }
}
