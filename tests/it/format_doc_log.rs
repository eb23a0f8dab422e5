//! docs/FORMAT.md against `schemas/` and the code, continued: log actions,
//! task fields, the paths the code writes, and the page's place in the
//! repository (helpers in `format_doc.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use must_ds::format::{
    checksum_of, Action, AddImages, AddLabels, DatasetInfo, Protocol, Remove, TaskDef,
};
use must_ds::store::{checkpoint, layout, Snapshot};
use serde_json::Value;

use crate::format_doc::*;
use crate::util;

/// One action of each kind. The match is exhaustive, so that a new kind
/// fails to compile here until the page and schemas/ have it.
fn one_of_each_action() -> Vec<Action> {
    let all = vec![
        Action::Protocol(Protocol::default()),
        Action::Dataset(DatasetInfo {
            name: "d".into(),
            description: "x".into(),
        }),
        Action::Task(task_of_label_kind("detection")),
        Action::AddImages(AddImages {
            shard: 0,
            path: layout::new_image_file(),
            rows: 2,
            bytes: 10,
            checksum: checksum_of(b"x"),
            row_groups: vec![2],
            sources: BTreeMap::from([("s".to_owned(), 2)]),
        }),
        Action::AddLabels(AddLabels {
            task: "d".into(),
            shard: 0,
            path: layout::new_label_file("d"),
            rows: 2,
            bytes: 10,
            checksum: checksum_of(b"y"),
            labeled: 1,
            replace: false,
        }),
        Action::Remove(Remove {
            path: layout::new_image_file(),
        }),
    ];
    for a in &all {
        match a {
            Action::Protocol(_)
            | Action::Dataset(_)
            | Action::Task(_)
            | Action::AddImages(_)
            | Action::AddLabels(_)
            | Action::Remove(_) => {}
        }
    }
    all
}

/// An action's fields and the optional ones among them.
type FieldSets = (BTreeSet<String>, BTreeSet<String>);

#[test]
fn actions_match_schemas_and_code() {
    let text = doc();
    let tables = tables(&text);
    let t = tables
        .iter()
        .find(|t| t.header.first().map(String::as_str) == Some("action"))
        .unwrap_or_else(|| panic!("{DOC} has no table with | action | fields | … |"));
    assert_eq!(t.header[1], "fields", "{}", t.at());
    // name → (fields, optional fields); None for `task` (section 4 has them).
    let mut in_doc: BTreeMap<String, Option<FieldSets>> = BTreeMap::new();
    for r in &t.rows {
        let name = plain(&r[0]);
        let mut fields = BTreeSet::new();
        let mut optional = BTreeSet::new();
        for item in items(&r[1]) {
            if let Some(f) = backticked(&outside_parens(&item)).first() {
                fields.insert(f.clone());
                if item.contains("optional") {
                    optional.insert(f.clone());
                }
            }
        }
        let entry = (!fields.is_empty()).then_some((fields, optional));
        assert!(
            in_doc.insert(name.clone(), entry).is_none(),
            "{}: action {name:?} twice",
            t.at()
        );
    }
    let schema = load("schemas/action.schema.json");
    let props = schema["properties"].as_object().unwrap();
    let names_doc: BTreeSet<&String> = in_doc.keys().collect();
    let names_schema: BTreeSet<&String> = props.keys().collect();
    assert_eq!(
        names_doc,
        names_schema,
        "the action names of {} differ from schemas/action.schema.json",
        t.at()
    );
    let actions = one_of_each_action();
    let names_code: BTreeSet<String> = actions.iter().map(|a| a.name().to_owned()).collect();
    assert_eq!(
        names_doc,
        names_code.iter().collect(),
        "the action names of {} differ from must_ds::format::Action",
        t.at()
    );
    for a in &actions {
        let v = serde_json::to_value(a).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 1, "an action is an object with one key: {v}");
        let (key, body) = obj.iter().next().unwrap();
        assert_eq!(key, a.name(), "Action serializes under another name: {v}");
        let Some((fields, optional)) = &in_doc[key] else {
            assert_eq!(key, "task", "{}: action {key} lists no fields", t.at());
            continue;
        };
        let p = &props[key.as_str()];
        let in_schema: BTreeSet<String> = p["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            fields,
            &in_schema,
            "{}: the fields of action {key} differ from schemas/action.schema.json",
            t.at()
        );
        let written: BTreeSet<String> = body.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            fields,
            &written,
            "{}: the fields of action {key} differ from what must_ds::format::Action writes: {v}",
            t.at()
        );
        let required: BTreeSet<String> = p["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        let schema_optional: BTreeSet<String> = in_schema.difference(&required).cloned().collect();
        assert_eq!(
            optional,
            &schema_optional,
            "{}: the fields of action {key} said optional differ from those schemas/action.schema.json does not require",
            t.at()
        );
    }
    // The checksum form the page gives is the one the code writes.
    let c = checksum_of(b"123456789");
    assert!(
        c.strip_prefix("crc32c:").is_some_and(|h| h.len() == 8
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))),
        "{c}"
    );
    assert!(text.contains("`crc32c:` and 8 lowercase hex digits"));
}

/// A valid task of `kind` (the task definition's kind) with `extra` fields.
fn minimal_task(kind: &str, extra: &str) -> String {
    let base = match kind {
        "classification" => r#""kind":"classification","num_classes":3"#,
        "detection" => r#""kind":"detection","num_classes":3"#,
        "segmentation" => r#""kind":"segmentation","num_classes":3,"dtype":"u8""#,
        "depth" => r#""kind":"depth","representation":"relative""#,
        other => {
            panic!("task kind {other:?} of {DOC} has no minimal task: add one to format_doc.rs")
        }
    };
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(",{extra}")
    };
    format!(r#"{{"name":"t",{base}{extra}}}"#)
}

#[test]
fn task_fields_and_values_match_schemas_and_code() {
    let text = doc();
    let tables = tables(&text);
    let t = tables
        .iter()
        .find(|t| {
            t.header.first().map(String::as_str) == Some("field")
                && t.header.get(1).map(String::as_str) == Some("kinds")
        })
        .unwrap_or_else(|| {
            panic!("{DOC} has no task field table (| field | kinds | values | default | meaning |)")
        });
    assert_eq!(
        t.header[..4],
        ["field", "kinds", "values", "default"],
        "{}",
        t.at()
    );
    let schema = load("schemas/task.schema.json");
    let props = schema["properties"].as_object().unwrap();
    let rows: BTreeMap<String, &Vec<String>> = t.rows.iter().map(|r| (plain(&r[0]), r)).collect();
    assert_eq!(
        rows.keys().collect::<BTreeSet<_>>(),
        props.keys().collect::<BTreeSet<_>>(),
        "{}: the task fields differ from schemas/task.schema.json",
        t.at()
    );
    let validator = jsonschema::validator_for(&schema).unwrap();
    let parses = |json: &str, what: &str| {
        let task = TaskDef::from_json(json)
            .unwrap_or_else(|e| panic!("{}: {what}: must_ds refuses {json}: {e}", t.at()));
        let v: Value = serde_json::from_str(json).unwrap();
        assert!(
            validator.is_valid(&v),
            "{}: {what}: schemas/task.schema.json refuses {json}",
            t.at()
        );
        task
    };

    // Enumerations: the values the page lists are the schema's, and each parses.
    let values = |field: &str| -> Vec<String> { backticked(&rows[field][2]) };
    let enum_of = |field: &str| -> Vec<String> {
        props[field]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("schemas/task.schema.json: {field} is not an enum"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    for field in ["kind", "encoding", "dtype", "representation"] {
        assert_eq!(
            values(field),
            enum_of(field),
            "{}: the values of `{field}` differ from schemas/task.schema.json",
            t.at()
        );
    }
    let kinds = values("kind");
    for kind in &kinds {
        let task = parses(&minimal_task(kind, ""), &format!("kind {kind}"));
        assert_eq!(task.kind.name(), kind);
    }
    for enc in values("encoding") {
        let json = minimal_task("classification", &format!(r#""encoding":"{enc}""#));
        let task = parses(&json, &format!("encoding {enc}"));
        let back: Value = serde_json::from_str(&task.to_json()).unwrap();
        assert_eq!(back["encoding"], Value::String(enc.clone()), "{json}");
    }
    for dtype in values("dtype") {
        let json =
            format!(r#"{{"name":"t","kind":"segmentation","num_classes":3,"dtype":"{dtype}"}}"#);
        let task = parses(&json, &format!("dtype {dtype}"));
        let back: Value = serde_json::from_str(&task.to_json()).unwrap();
        assert_eq!(back["dtype"], Value::String(dtype.clone()), "{json}");
    }
    for rep in values("representation") {
        let unit = if rep == "metric" {
            r#","unit":"m""#
        } else {
            ""
        };
        let json = format!(r#"{{"name":"t","kind":"depth","representation":"{rep}"{unit}}}"#);
        let task = parses(&json, &format!("representation {rep}"));
        let back: Value = serde_json::from_str(&task.to_json()).unwrap();
        assert_eq!(back["representation"], Value::String(rep.clone()), "{json}");
    }
    // A metric depth task without a unit is refused, as the page says.
    assert!(
        TaskDef::from_json(r#"{"name":"t","kind":"depth","representation":"metric"}"#).is_err()
    );

    // Required fields: the page's "required…" defaults are the schema's.
    let mut required: BTreeSet<String> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    for rule in schema["allOf"].as_array().unwrap() {
        for f in rule["then"]["required"].as_array().into_iter().flatten() {
            required.insert(f.as_str().unwrap().to_owned());
        }
    }
    let said_required: BTreeSet<String> = rows
        .iter()
        .filter(|(_, r)| plain(&r[3]).starts_with("required"))
        .map(|(f, _)| f.clone())
        .collect();
    assert_eq!(
        said_required,
        required,
        "{}: the fields said required differ from those schemas/task.schema.json requires",
        t.at()
    );

    // Defaults given as one literal: the schema's, and what the code fills in.
    for (field, r) in &rows {
        let cell = r[3].trim();
        let ticks = backticked(cell);
        if ticks.len() != 1 || cell != format!("`{}`", ticks[0]) {
            continue;
        }
        let said = &ticks[0];
        let in_schema = &props[field.as_str()]["default"];
        let render = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(
            &render(in_schema),
            said,
            "{}: the default of `{field}` differs from schemas/task.schema.json",
            t.at()
        );
        let applies: Vec<String> = r[1]
            .split(',')
            .map(|k| k.trim().to_owned())
            .filter(|k| kinds.contains(k))
            .collect();
        assert!(
            !applies.is_empty(),
            "{}: `{field}` has a default but names no task kind",
            t.at()
        );
        for kind in applies {
            let task = TaskDef::from_json(&minimal_task(&kind, "")).unwrap();
            let back: Value = serde_json::from_str(&task.to_json()).unwrap();
            let v = &back[field.as_str()];
            let same = match v {
                // Left out when it has its default (`false`).
                Value::Null => said == "false",
                Value::Number(n) => said.parse::<f64>().ok() == n.as_f64(),
                other => &render(other) == said,
            };
            assert!(
                same,
                "{}: a {kind} task without `{field}` gets {v}, not the default {said}",
                t.at()
            );
        }
    }
}

#[test]
fn paths_in_the_page_are_what_the_code_writes() {
    let text = doc();
    let want = [
        layout::log_file(0),
        layout::log_file(1),
        layout::checkpoint_file(100),
        layout::LAST_CHECKPOINT.to_owned(),
        format!("{}/{{version:020}}.json", layout::LOG_DIR),
        format!("{}/{{version:020}}.parquet", layout::CHECKPOINT_DIR),
        "images/part-<uuid>.parquet".to_owned(),
        "labels/<task>/part-<uuid>.parquet".to_owned(),
        "part-<uuid>.parquet#N".to_owned(),
    ];
    for s in &want {
        assert!(text.contains(s.as_str()), "{DOC} does not give {s:?}");
    }
    // The patterns are what the writers make.
    let uuid_name = |rel: &str, prefix: &str| {
        let id = rel
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(".parquet"))
            .unwrap_or_else(|| panic!("{rel:?} is not {prefix}<uuid>.parquet"));
        assert!(
            uuid::Uuid::parse_str(id).is_ok() && id == id.to_lowercase() && id.len() == 36,
            "{rel:?}"
        );
        assert!(layout::is_writer_name(rel), "{rel:?}");
    };
    uuid_name(&layout::new_image_file(), "images/part-");
    uuid_name(&layout::new_label_file("det"), "labels/det/part-");
    assert!(layout::is_writer_name(&format!(
        "{}#3",
        layout::new_image_file()
    )));
    assert_eq!(layout::log_file(7), "_must/log/00000000000000000007.json");
    // schemas/ names the same files.
    assert!(load("schemas/commit.schema.json")["title"]
        .as_str()
        .unwrap()
        .contains(&format!("{}/{{version:020}}.json", layout::LOG_DIR)));
    assert!(load("schemas/last_checkpoint.schema.json")["title"]
        .as_str()
        .unwrap()
        .contains(layout::LAST_CHECKPOINT));
    assert!(
        text.contains(r#"`{"version": N}`"#),
        "{DOC} does not give the hint's form"
    );

    // A written checkpoint and hint are where the page says, in its form.
    let rt = util::rt();
    rt.block_on(async {
        use object_store::{ObjectStore, ObjectStoreExt};
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let root = object_store::path::Path::from("ds");
        let mut snap = Snapshot::default();
        snap.version = 100;
        checkpoint::write(&store, &root, &snap).await.unwrap();
        let hint = store
            .get(&layout::join(&root, layout::LAST_CHECKPOINT))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let hint: Value = serde_json::from_slice(&hint).unwrap();
        assert_eq!(hint, serde_json::json!({"version": 100}));
        let schema = load("schemas/last_checkpoint.schema.json");
        assert!(jsonschema::validator_for(&schema).unwrap().is_valid(&hint));
        store
            .head(&layout::join(&root, &layout::checkpoint_file(100)))
            .await
            .unwrap_or_else(|e| panic!("no checkpoint at {}: {e}", layout::checkpoint_file(100)));
    });
}

#[test]
fn the_format_lives_in_the_repository() {
    let readme = read("README.md");
    assert!(
        readme.contains("](docs/FORMAT.md)"),
        "README.md does not link docs/FORMAT.md"
    );
    let lib = read("src/lib.rs");
    let crate_doc: String = lib
        .lines()
        .take_while(|l| l.starts_with("//!") || l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        crate_doc.contains("docs/FORMAT.md"),
        "the crate documentation (src/lib.rs) does not point to docs/FORMAT.md"
    );
    // Nothing points outside the repository for the format.
    let mut files = vec!["README.md".to_owned(), "src/lib.rs".to_owned()];
    for dir in ["docs", "schemas"] {
        for e in walkdir::WalkDir::new(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)) {
            let e = e.unwrap();
            let ext = e.path().extension().and_then(|x| x.to_str());
            if e.file_type().is_file() && matches!(ext, Some("md" | "json")) {
                let rel = e
                    .path()
                    .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.push(rel);
            }
        }
    }
    for f in &files {
        let text = read(f);
        for bad in ["shared/design", "../shared"] {
            assert!(
                !text.contains(bad),
                "{f} mentions {bad:?}: the format is docs/FORMAT.md in this repository"
            );
        }
    }
    assert!(files.iter().any(|f| f.ends_with("FORMAT.md")));
}
