//! docs/FORMAT.md, schemas/ and the code say the same thing.
//!
//! The page is read with plain string processing: its markdown tables (the
//! column tables of image shards, checkpoints and each label kind; the
//! action table; the task field table) and the literal paths it gives. Each
//! is compared with `schemas/` and with what the Rust code writes, so that
//! a change to one of the three that the others do not follow fails here
//! with the mismatch named. `tests/it/schemas.rs` ties `schemas/` to the
//! Rust types too.

use std::collections::BTreeSet;
use std::path::Path;

use must_ds::format::{
    arrow_type_name, image_schema, label_schema, TaskDef, META_FORMAT_VERSION, META_TABLE,
    META_TASK,
};
use must_ds::store::{checkpoint, Snapshot};
use serde_json::Value;

pub(crate) const DOC: &str = "docs/FORMAT.md";

pub(crate) fn read(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

pub(crate) fn doc() -> String {
    read(DOC)
}

pub(crate) fn load(rel: &str) -> Value {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not JSON: {e}"))
}

/// One markdown table of the page.
#[derive(Debug)]
pub(crate) struct Table {
    /// The lines right above it (a heading or a caption paragraph), joined.
    pub(crate) caption: String,
    /// Its line number (1-based), for messages.
    pub(crate) line: usize,
    pub(crate) header: Vec<String>,
    pub(crate) rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn at(&self) -> String {
        format!("{DOC} line {} (after {:?})", self.line, self.caption)
    }
}

pub(crate) fn cells(line: &str) -> Vec<String> {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = t.strip_suffix('|').unwrap_or(t);
    t.split('|').map(|c| c.trim().to_owned()).collect()
}

pub(crate) fn is_separator(line: &str) -> bool {
    let t = line.trim();
    t.starts_with('|') && t.contains('-') && t.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
}

/// Every table outside code blocks, with the lines right above it.
pub(crate) fn tables(text: &str) -> Vec<Table> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut fenced = false;
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced
            && l.trim_start().starts_with('|')
            && lines.get(i + 1).is_some_and(|n| is_separator(n))
        {
            let header = cells(l);
            let line = i + 1;
            let above = lines[..i]
                .iter()
                .rev()
                .skip_while(|l| l.trim().is_empty())
                .take_while(|l| !l.trim().is_empty())
                .map(|l| l.trim_start_matches('#').trim())
                .collect::<Vec<_>>();
            let caption = above.into_iter().rev().collect::<Vec<_>>().join(" ");
            i += 2;
            let mut rows = Vec::new();
            while i < lines.len() && lines[i].trim_start().starts_with('|') {
                let row = cells(lines[i]);
                assert_eq!(
                    row.len(),
                    header.len(),
                    "{DOC} line {}: a row of {} cells in a table of {} columns",
                    i + 1,
                    row.len(),
                    header.len()
                );
                rows.push(row);
                i += 1;
            }
            out.push(Table {
                caption,
                line,
                header,
                rows,
            });
            continue;
        }
        i += 1;
    }
    out
}

/// The text between backticks, in order.
pub(crate) fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, t)| t.to_owned())
        .collect()
}

/// A cell without its backticks.
pub(crate) fn plain(s: &str) -> String {
    s.replace('`', "").trim().to_owned()
}

/// Splits `s` at the commas outside parentheses.
pub(crate) fn items(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut depth = 0usize;
    for ch in s.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(String::new());
                continue;
            }
            _ => {}
        }
        out.last_mut().unwrap().push(ch);
    }
    out.into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `s` without its parenthesized parts.
pub(crate) fn outside_parens(s: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for ch in s.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(ch),
            _ => {}
        }
    }
    out
}

/// (name, type, nullable, optional column) of a schema's columns.
pub(crate) type Columns = Vec<(String, String, bool, bool)>;

pub(crate) fn doc_columns(t: &Table) -> Columns {
    t.rows
        .iter()
        .map(|r| {
            let name = plain(&r[0]);
            let (name, optional) = match name.strip_suffix(" (optional)") {
                Some(n) => (n.trim().to_owned(), true),
                None => (name, false),
            };
            let nullable = match plain(&r[2]).as_str() {
                "yes" => true,
                "no" => false,
                other => panic!(
                    "{}: column {name:?} has nullable {other:?}, not yes or no",
                    t.at()
                ),
            };
            (name, plain(&r[1]), nullable, optional)
        })
        .collect()
}

pub(crate) fn schema_file_columns(cols: &Value, what: &str) -> Columns {
    cols.as_array()
        .unwrap_or_else(|| panic!("{what}: no column list"))
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["type"].as_str().unwrap().to_owned(),
                c["nullable"].as_bool().unwrap(),
                c["optional"] == Value::Bool(true),
            )
        })
        .collect()
}

pub(crate) fn rust_columns(schema: &arrow_schema::Schema) -> Vec<(String, String, bool)> {
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

/// The doc's columns with `num_classes` set, less the optional ones unless
/// `with_optional`, as the Rust schema lists them.
pub(crate) fn expected(
    cols: &Columns,
    num_classes: u32,
    with_optional: bool,
) -> Vec<(String, String, bool)> {
    cols.iter()
        .filter(|c| with_optional || !c.3)
        .map(|(n, t, null, _)| {
            (
                n.clone(),
                t.replace("num_classes", &num_classes.to_string()),
                *null,
            )
        })
        .collect()
}

/// Which schema file (and label kind) a column table stands for, from the
/// `schemas/arrow/…json` and the kind named after it in its caption.
pub(crate) fn table_key(t: &Table) -> (String, Option<String>) {
    let ticks = backticked(&t.caption);
    let pos = ticks
        .iter()
        .position(|s| s.starts_with("schemas/arrow/") && s.ends_with(".json"))
        .unwrap_or_else(|| {
            panic!(
                "{}: a column table's heading or caption must name its schema file in backticks (`schemas/arrow/….json`)",
                t.at()
            )
        });
    let file = ticks[pos].clone();
    let kind = (file == "schemas/arrow/labels.json").then(|| {
        ticks.get(pos + 1).cloned().unwrap_or_else(|| {
            panic!(
                "{}: a label column table's heading or caption must name its kind of schemas/arrow/labels.json after the file",
                t.at()
            )
        })
    });
    (file, kind)
}

/// A valid task of each label kind of `schemas/arrow/labels.json`, with 7 classes.
pub(crate) fn task_of_label_kind(kind: &str) -> TaskDef {
    let json = match kind {
        "classification_topk" => {
            r#"{"name":"c","kind":"classification","num_classes":7,"encoding":"topk"}"#
        }
        "classification_dense" => {
            r#"{"name":"c","kind":"classification","num_classes":7,"encoding":"dense"}"#
        }
        "detection" => r#"{"name":"d","kind":"detection","num_classes":7}"#,
        "segmentation" => r#"{"name":"s","kind":"segmentation","num_classes":7,"dtype":"u8"}"#,
        "depth" => r#"{"name":"z","kind":"depth","representation":"relative"}"#,
        other => panic!("label kind {other:?} of {DOC} has no test task: add one to format_doc.rs"),
    };
    TaskDef::from_json(json).unwrap()
}

/// The columns of a checkpoint as the code writes them, and its `must.*`
/// key-value metadata keys.
pub(crate) fn checkpoint_as_written() -> (Vec<(String, String, bool)>, BTreeSet<String>) {
    let bytes = checkpoint::encode(&Snapshot::default()).unwrap();
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(bytes),
    )
    .unwrap();
    let keys = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|e| e.key.clone())
                .filter(|k| k.starts_with("must."))
                .collect()
        })
        .unwrap_or_default();
    (rust_columns(builder.schema()), keys)
}

#[test]
fn column_tables_match_schemas_and_code() {
    let text = doc();
    let mut seen: BTreeSet<(String, Option<String>)> = BTreeSet::new();
    let mut checked = 0;
    for t in tables(&text) {
        if t.header.first().map(String::as_str) != Some("column") {
            continue;
        }
        assert_eq!(
            t.header[..3],
            ["column", "Arrow type", "nullable"],
            "{}: a column table's header must start with | column | Arrow type | nullable |",
            t.at()
        );
        let (file, kind) = table_key(&t);
        assert!(
            seen.insert((file.clone(), kind.clone())),
            "{}: a second table for {file} {kind:?}",
            t.at()
        );
        let cols = doc_columns(&t);
        let schema = load(&file);
        let from_schema = match &kind {
            Some(k) => {
                let c = &schema["kinds"][k.as_str()];
                assert!(!c.is_null(), "{}: {file} has no label kind {k:?}", t.at());
                schema_file_columns(c, &format!("{file} kinds.{k}"))
            }
            None => schema_file_columns(&schema["columns"], &file),
        };
        assert_eq!(
            cols,
            from_schema,
            "{}: the columns (name, type, nullable, optional) differ from {file}{}",
            t.at(),
            kind.as_ref()
                .map(|k| format!(" kinds.{k}"))
                .unwrap_or_default()
        );
        // And straight against what the code writes.
        match (file.as_str(), &kind) {
            ("schemas/arrow/images.json", None) => assert_eq!(
                rust_columns(&image_schema()),
                expected(&cols, 0, true),
                "{}: the image shard columns differ from must_ds::format::image_schema()",
                t.at()
            ),
            ("schemas/arrow/checkpoint.json", None) => assert_eq!(
                checkpoint_as_written().0,
                expected(&cols, 0, true),
                "{}: the checkpoint columns differ from what must_ds::store::checkpoint::encode writes",
                t.at()
            ),
            ("schemas/arrow/labels.json", Some(k)) => {
                let task = task_of_label_kind(k);
                for with_optional in [true, false] {
                    assert_eq!(
                        rust_columns(&label_schema(&task, with_optional)),
                        expected(&cols, 7, with_optional),
                        "{}: label kind {k}: the columns differ from must_ds::format::label_schema(.., {with_optional})",
                        t.at()
                    );
                }
            }
            _ => panic!("{}: no code to compare {file} {kind:?} with", t.at()),
        }
        checked += 1;
    }
    // Every table of schemas/arrow has its table in the page.
    let mut want: BTreeSet<(String, Option<String>)> = [
        ("schemas/arrow/images.json".to_owned(), None),
        ("schemas/arrow/checkpoint.json".to_owned(), None),
    ]
    .into_iter()
    .collect();
    for k in load("schemas/arrow/labels.json")["kinds"]
        .as_object()
        .unwrap()
        .keys()
    {
        want.insert(("schemas/arrow/labels.json".to_owned(), Some(k.clone())));
    }
    let missing: Vec<_> = want.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "{DOC} has no column table for {missing:?} (a table after a heading or caption naming the schema file and kind)"
    );
    assert_eq!(checked, want.len());
}

#[test]
fn key_value_metadata_and_paths_of_tables_are_in_the_page() {
    let text = doc();
    let ticks: BTreeSet<String> = backticked(&text).into_iter().collect();
    for file in [
        "schemas/arrow/images.json",
        "schemas/arrow/labels.json",
        "schemas/arrow/checkpoint.json",
    ] {
        let s = load(file);
        for key in s["key_value_metadata"].as_object().unwrap().keys() {
            assert!(
                ticks.contains(key),
                "{DOC} does not name the key-value metadata key `{key}` of {file}"
            );
        }
        let path = s["path"].as_str().unwrap();
        assert!(
            text.contains(path),
            "{DOC} does not give the path {path:?} of {file}"
        );
    }
    for key in [META_FORMAT_VERSION, META_TABLE, META_TASK] {
        assert!(ticks.contains(key), "{DOC} does not name `{key}`");
    }
    // What a checkpoint carries is what schemas/ lists.
    let listed: BTreeSet<String> = load("schemas/arrow/checkpoint.json")["key_value_metadata"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        checkpoint_as_written().1,
        listed,
        "the must.* metadata of a checkpoint as written differs from schemas/arrow/checkpoint.json"
    );
}
