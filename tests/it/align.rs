//! Labels from any engine (`add-labels` by image id): files written the
//! way DuckDB, Spark and other tools write them (tests/it/engines/write.py),
//! in any order and row grouping, across shards, with other column names
//! and box formats; errors name the file and row; an interrupted run leaves
//! whole shards and a rerun continues.

use std::path::{Path, PathBuf};

use must_ds::codec::Label;
use must_ds::format::TaskDef;
use must_ds::write::LabelWriter;
use must_ds::Dataset;

use crate::util;
use crate::writers::label_for;

/// 3 shards of 10 (row groups of 4, 4, 2). Reference labels of `cls`, `det`,
/// `seg` and `depth` on every image, written by must-ds; each task has a
/// twin `<task>_b` with the same definition and no labels.
struct Fx {
    _dir: tempfile::TempDir,
    root: PathBuf,
    work: PathBuf,
    rt: tokio::runtime::Runtime,
}

const TASKS: &[&str] = &[
    r#"{"name":"cls","kind":"classification","num_classes":10,"encoding":"topk","teacher":{"name":"t"}}"#,
    r#"{"name":"det","kind":"detection","num_classes":4,"teacher":{"name":"t"}}"#,
    r#"{"name":"seg","kind":"segmentation","num_classes":5,"dtype":"u8","teacher":{"name":"t"}}"#,
    r#"{"name":"depth","kind":"depth","representation":"relative","teacher":{"name":"t"}}"#,
];

fn fixture() -> Fx {
    let rt = util::rt();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut ds = util::dataset_with_images(&rt, &root, 30, 10, 4);
    for t in TASKS {
        let task = TaskDef::from_json(t).unwrap();
        let twin = TaskDef::from_json(&t.replace(
            &format!("\"name\":\"{}\"", task.name),
            &format!("\"name\":\"{}_b\"", task.name),
        ))
        .unwrap();
        rt.block_on(ds.define_task(task.clone())).unwrap();
        rt.block_on(ds.define_task(twin)).unwrap();
        for shard in 0..3 {
            let mut w = rt
                .block_on(LabelWriter::for_shard(&ds, &task.name, shard))
                .unwrap();
            for g in 0..3 {
                let rg = rt
                    .block_on(ds.read_row_group(shard, g, &[], Some(&["width", "height"])))
                    .unwrap();
                for (j, r) in rg.images.iter().enumerate() {
                    let row = shard as usize * 10 + rg.first_row as usize + j;
                    w.set(&r.image_id, label_for(&task, row, r.width, r.height))
                        .unwrap();
                }
            }
            rt.block_on(ds.add_label_file(&task.name, shard, w.finish().unwrap(), false))
                .unwrap();
        }
    }
    Fx {
        _dir: dir,
        root,
        work,
        rt,
    }
}

impl Fx {
    fn ds(&self) -> Dataset {
        self.rt
            .block_on(Dataset::open(self.root.to_str().unwrap()))
            .unwrap()
    }

    /// The reference label files of `task`, shard by shard.
    fn files(&self, task: &str) -> Vec<String> {
        let ds = self.ds();
        (0..3)
            .map(|s| {
                self.root
                    .join(&ds.snapshot().labels[&(task.to_owned(), s)].path)
                    .display()
                    .to_string()
            })
            .collect()
    }

    fn write(&self, cmd: &str, out: &Path, extra: &[&str], task: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/engines/write.py");
        let files = self.files(task);
        let mut args = vec![script.to_str().unwrap(), cmd, out.to_str().unwrap()];
        args.extend(extra);
        args.extend(files.iter().map(String::as_str));
        util::run_python(&args);
    }

    fn add(&self, task: &str, args: &[&str]) -> std::process::Output {
        let mut a = vec!["add-labels", self.root.to_str().unwrap(), "--task", task];
        a.extend(args);
        util::must(&a)
    }

    /// Every row's label of `a` and `b`, shard by shard.
    fn labels(&self, task: &str) -> Vec<Option<Label>> {
        let ds = self.ds();
        let mut out = vec![];
        for shard in 0..3 {
            for g in 0..3 {
                let rg = self
                    .rt
                    .block_on(ds.read_row_group(shard, g, &[task], Some(&["image_id"])))
                    .unwrap();
                out.extend(rg.labels[task].clone());
            }
        }
        out
    }
}

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        util::stdout(o),
        util::stderr(o)
    );
    util::stdout(o)
}

#[test]
fn duckdb_output_in_any_order_and_one_row_group_comes_in_aligned() {
    if util::python_with(&["numpy", "pyarrow", "duckdb"]).is_none() {
        return;
    }
    let fx = fixture();
    for task in ["cls", "det", "seg", "depth"] {
        let f = fx.work.join(format!("{task}-duck.parquet"));
        fx.write("duckdb", &f, &["--drop", "3"], task);
        let out = ok(&fx.add(&format!("{task}_b"), &[f.to_str().unwrap()]));
        assert!(
            out.contains("27 input rows from 1 file(s): 3 shard(s) committed"),
            "{out}"
        );
        assert!(
            out.contains("3 image id(s) of them without a label"),
            "{out}"
        );
        let (want, got) = (fx.labels(task), fx.labels(&format!("{task}_b")));
        assert_eq!(got.iter().filter(|l| l.is_none()).count(), 3, "{task}");
        for (w, g) in want.iter().zip(&got) {
            if g.is_some() {
                assert_eq!(w, g, "{task}");
            }
        }
    }
    assert!(util::must(&["validate", fx.root.to_str().unwrap()])
        .status
        .success());
}

#[test]
fn a_folder_of_spark_part_files_in_shuffled_order_and_spills() {
    if util::python_with(&["numpy", "pyarrow", "moto.server"]).is_none() {
        return;
    }
    let fx = fixture();
    let dir = fx.work.join("spark-out");
    fx.write("spark", &dir, &[], "seg");
    // --memory 0: every pending shard goes to disk and comes back.
    let out = ok(&fx.add("seg_b", &[dir.to_str().unwrap(), "--memory", "0"]));
    assert!(out.contains("30 input rows from 4 file(s)"), "{out}");
    assert!(out.contains("spill(s) to disk"), "{out}");
    assert_eq!(fx.labels("seg"), fx.labels("seg_b"));
    // A glob over the same parts.
    let glob = format!("{}/**/part-*.parquet", dir.display());
    let out = ok(&fx.add("seg_b", &[&glob, "--replace"]));
    assert!(out.contains("30 input rows from 4 file(s)"), "{out}");
    assert_eq!(fx.labels("seg"), fx.labels("seg_b"));
    // The same folder on S3 (a real server on loopback): listed, hidden
    // names skipped, read in place.
    let bucket = crate::s3::bucket("align-src");
    let loc = must_ds::store::open_location(&format!("{bucket}/spark-out"), false).unwrap();
    for p in util::walk(&dir) {
        let rel = p.strip_prefix(&dir).unwrap().to_str().unwrap().to_owned();
        let key = object_store::path::Path::from(format!("{}/{rel}", loc.root));
        let bytes = util::read(&p);
        fx.rt
            .block_on(object_store::ObjectStoreExt::put(
                &loc.store,
                &key,
                bytes.into(),
            ))
            .unwrap();
    }
    let out = ok(&fx.add("seg_b", &[&format!("{bucket}/spark-out/"), "--replace"]));
    assert!(out.contains("30 input rows from 4 file(s)"), "{out}");
    let out = ok(&fx.add(
        "seg_b",
        &[
            &format!("{bucket}/spark-out/**/part-*.parquet"),
            "--replace",
        ],
    ));
    assert!(out.contains("30 input rows from 4 file(s)"), "{out}");
    assert_eq!(fx.labels("seg"), fx.labels("seg_b"));
}

#[test]
fn unknown_and_repeated_ids_are_refused_naming_file_and_row() {
    if util::python_with(&["pyarrow"]).is_none() {
        return;
    }
    let fx = fixture();
    let script = "import pyarrow as pa, pyarrow.parquet as pq, sys\n\
         t = pq.read_table(sys.argv[1]).replace_schema_metadata(None)\n\
         ids = t.column('image_id').to_pylist()\n\
         bad = ids[:]; bad[5] = 'zzz-unknown'\n\
         pq.write_table(t.set_column(0, 'image_id', pa.array(bad)), sys.argv[2])\n\
         dup = ids[:]; dup[6] = ids[2]\n\
         pq.write_table(t.set_column(0, 'image_id', pa.array(dup)), sys.argv[3])\n";
    let (unknown, dup) = (fx.work.join("unknown.parquet"), fx.work.join("dup.parquet"));
    util::run_python(&[
        "-c",
        script,
        &fx.files("cls")[1],
        unknown.to_str().unwrap(),
        dup.to_str().unwrap(),
    ]);
    let before = util::tree(&fx.root);
    let o = fx.add("cls_b", &[unknown.to_str().unwrap()]);
    let err = util::stderr(&o);
    assert!(!o.status.success());
    for n in [
        "unknown.parquet",
        "row 5",
        "zzz-unknown",
        "not in the dataset",
    ] {
        assert!(err.contains(n), "{err:?} lacks {n:?}");
    }
    let o = fx.add("cls_b", &[dup.to_str().unwrap()]);
    let err = util::stderr(&o);
    assert!(!o.status.success());
    for n in ["dup.parquet", "row 6", "appears twice"] {
        assert!(err.contains(n), "{err:?} lacks {n:?}");
    }
    // With --shard, an id of another shard is unknown too.
    let other = fx.files("cls")[2].clone();
    let o = fx.add("cls_b", &["--shard", "1", &other]);
    assert!(!o.status.success());
    assert!(
        util::stderr(&o).contains("not in image shard 1"),
        "{}",
        util::stderr(&o)
    );
    assert!(
        before == util::tree(&fx.root),
        "a refused input changed the dataset"
    );
}

#[test]
fn an_interrupted_run_leaves_whole_shards_and_a_rerun_continues() {
    if util::python_with(&["pyarrow"]).is_none() {
        return;
    }
    let fx = fixture();
    let files = fx.files("det");
    // Part 1: all of shard 0. Part 2: shards 1 and 2, then a bad row.
    let script = "import pyarrow as pa, pyarrow.parquet as pq, sys, os\n\
        a, b, c, out = sys.argv[1:5]\n\
        os.makedirs(out)\n\
        strip = lambda t: t.replace_schema_metadata(None)\n\
        pq.write_table(strip(pq.read_table(a)), out + '/part-0.parquet')\n\
        rest = pa.concat_tables([strip(pq.read_table(b)), strip(pq.read_table(c))])\n\
        f = rest.schema.field(0)\n\
        bad = rest.slice(0, 1).set_column(0, f, pa.array(['not-an-image'], f.type))\n\
        pq.write_table(pa.concat_tables([rest, bad]), out + '/part-1.parquet')\n\
        pq.write_table(rest, out + '/fixed-1.parquet')\n";
    let dir = fx.work.join("parts");
    util::run_python(&[
        "-c",
        script,
        &files[0],
        &files[1],
        &files[2],
        dir.to_str().unwrap(),
    ]);
    let fixed = dir.join("fixed-1.parquet");
    let fixed_tmp = fx.work.join("fixed-1.parquet");
    std::fs::rename(&fixed, &fixed_tmp).unwrap();
    let o = fx.add("det_b", &[dir.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        util::stderr(&o).contains("not-an-image"),
        "{}",
        util::stderr(&o)
    );
    let ds = fx.ds();
    let done: Vec<u64> = (0..3)
        .filter(|s| ds.snapshot().labels.contains_key(&("det_b".into(), *s)))
        .collect();
    assert_eq!(done, vec![0], "shard 0 was whole before the bad row");
    // The rerun: the bad part fixed; shard 0 is left as it is.
    std::fs::rename(&fixed_tmp, dir.join("part-1.parquet")).unwrap();
    let o = fx.add("det_b", &[dir.to_str().unwrap()]);
    assert!(
        !o.status.success(),
        "shard 0 already labeled: refused without --skip-labeled"
    );
    assert!(
        util::stderr(&o).contains("already has labels"),
        "{}",
        util::stderr(&o)
    );
    let out = ok(&fx.add("det_b", &[dir.to_str().unwrap(), "--skip-labeled"]));
    assert!(out.contains("image shard 0 already has labels"), "{out}");
    assert!(out.contains("2 shard(s) committed"), "{out}");
    assert_eq!(fx.labels("det"), fx.labels("det_b"));
    // Once more: nothing left to do.
    let out = ok(&fx.add("det_b", &[dir.to_str().unwrap(), "--skip-labeled"]));
    assert!(out.contains("0 shard(s) committed"), "{out}");
}

#[test]
fn mapped_columns_xywh_normalized_dense_top_k_and_png_masks() {
    if util::python_with(&["numpy", "pyarrow", "PIL"]).is_none() {
        return;
    }
    let fx = fixture();
    let f = fx.work.join("mapped.parquet");
    fx.write("mapped-det", &f, &[], "det");
    let o = fx.add("det_b", &[f.to_str().unwrap()]);
    assert!(
        !o.status.success(),
        "without the mapping the columns are not found"
    );
    ok(&fx.add(
        "det_b",
        &[
            f.to_str().unwrap(),
            "--map",
            "image_id=key,boxes=pred_boxes,classes=cls,scores=conf",
            "--box-format",
            "xywh",
        ],
    ));
    let close = |a: &[Option<Label>], b: &[Option<Label>]| {
        for (x, y) in a.iter().zip(b) {
            let (Some(Label::Detection(x)), Some(Label::Detection(y))) = (x, y) else {
                panic!("{x:?} {y:?}")
            };
            assert_eq!((&x.classes, &x.scores), (&y.classes, &y.scores));
            for (p, q) in x.boxes.iter().zip(&y.boxes) {
                for k in 0..4 {
                    assert!((p[k] - q[k]).abs() < 1e-3, "{p:?} {q:?}");
                }
            }
        }
    };
    close(&fx.labels("det"), &fx.labels("det_b"));
    // Normalized boxes, per image size.
    let ds = fx.ds();
    let shard0 = fx.root.join(&ds.snapshot().images[&0].path);
    let n = fx.work.join("normalized.parquet");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/engines/write.py");
    let files = fx.files("det");
    util::run_python(&[
        script.to_str().unwrap(),
        "normalized-det",
        n.to_str().unwrap(),
        shard0.to_str().unwrap(),
        &files[0],
    ]);
    ok(&fx.add(
        "det_b",
        &[
            n.to_str().unwrap(),
            "--box-format",
            "xyxy-normalized",
            "--replace",
            "--shard",
            "0",
        ],
    ));
    close(&fx.labels("det")[..10], &fx.labels("det_b")[..10]);
    // All ten probabilities for a top-k task: the top 2 are kept.
    let d = fx.work.join("dense.parquet");
    fx.write("dense-topk", &d, &[], "cls");
    ok(&fx.add("cls_b", &[d.to_str().unwrap(), "--top-k", "2"]));
    assert_eq!(fx.labels("cls"), fx.labels("cls_b"));
    // Masks as PNG bytes (the reference's confidence is not in the PNGs).
    let p = fx.work.join("png.parquet");
    fx.write("png-seg", &p, &[], "seg");
    ok(&fx.add("seg_b", &[p.to_str().unwrap()]));
    for (a, b) in fx.labels("seg").iter().zip(fx.labels("seg_b")) {
        let (Some(Label::Segmentation(a)), Some(Label::Segmentation(b))) = (a, b) else {
            panic!()
        };
        assert_eq!((a.height, a.width, &a.mask), (b.height, b.width, &b.mask));
    }
}
