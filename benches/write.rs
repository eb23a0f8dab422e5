//! Writer benchmarks: ingest throughput (MB/s of encoded images) and label
//! writing (rows/s) per task kind. `tools/bench/bench_label_write.py` writes the
//! same label arrays with pyarrow for the comparison in BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use must_ds::codec::{ClassLabel, DepthMap, Detections, Label, SegMap};
use must_ds::format::TaskDef;
use must_ds::ingest::{ingest, IngestOptions, InputData, InputImage};
use must_ds::write::{ImageShardOptions, ImageShardWriter, LabelWriter};
use must_ds::Dataset;

// The same allocator as the must-ds binary (pyarrow brings its own too).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn photos() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/photos");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    v.sort();
    v.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn bench_ingest(c: &mut Criterion) {
    let photos = photos();
    let n = 280; // 40 copies of each photo, ~33 MB
    let total: usize = (0..n).map(|i| photos[i % photos.len()].len()).sum();
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Bytes(total as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function("shard_writer_in_memory", |b| {
        b.iter(|| {
            let mut w = ImageShardWriter::new(ImageShardOptions::default()).unwrap();
            for i in 0..n {
                w.add_image(&format!("img-{i}"), "bench", &photos[i % photos.len()])
                    .unwrap();
            }
            black_box(w.finish().unwrap())
        })
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let inputs: Vec<InputImage> = (0..n)
        .map(|i| InputImage {
            image_id: format!("img-{i}"),
            data: InputData::Bytes(photos[i % photos.len()].clone().into()),
        })
        .collect();
    for workers in [1, 2] {
        g.bench_function(format!("local_folder_{workers}_workers"), |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().unwrap();
                    let ds = rt
                        .block_on(Dataset::init(
                            dir.path().to_str().unwrap(),
                            Default::default(),
                        ))
                        .unwrap();
                    (dir, ds)
                },
                |(dir, ds)| {
                    let mut opts = IngestOptions::new("bench");
                    opts.workers = workers;
                    opts.shard.shard_bytes = 16 << 20;
                    let r = ingest(rt.handle(), &ds, inputs.clone(), &opts, None).unwrap();
                    assert_eq!(r.images, n as u64);
                    dir
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// The label arrays, identical to `tools/bench/bench_label_write.py`.
pub fn make_labels(kind: &str, rows: usize) -> (TaskDef, Vec<Label>) {
    let task = |j: &str| TaskDef::from_json(j).unwrap();
    match kind {
        "classification_topk" => (
            task(r#"{"name":"cls","kind":"classification","num_classes":1000,"encoding":"topk"}"#),
            (0..rows)
                .map(|i| {
                    let classes = (0..5).map(|j| ((i * 7 + j * 13) % 1000) as u32).collect();
                    Label::Classification(ClassLabel::TopK {
                        classes,
                        probs: vec![0.5, 0.2, 0.1, 0.05, 0.05],
                    })
                })
                .collect(),
        ),
        "classification_dense" => (
            task(
                r#"{"name":"dense","kind":"classification","num_classes":1000,"encoding":"dense"}"#,
            ),
            (0..rows)
                .map(|i| {
                    Label::Classification(ClassLabel::Dense(
                        (0..1000)
                            .map(|c| ((i * 31 + c * 17) % 100) as f32 / 100000.0)
                            .collect(),
                    ))
                })
                .collect(),
        ),
        "detection" => (
            task(r#"{"name":"det","kind":"detection","num_classes":80}"#),
            (0..rows)
                .map(|i| {
                    let boxes = (0..20)
                        .map(|j| {
                            let (x, y, s) = (
                                ((i * 3 + j * 11) % 400) as f32,
                                ((i * 5 + j * 7) % 300) as f32,
                                ((j * 3) % 50 + 10) as f32,
                            );
                            [x, y, x + s, y + s]
                        })
                        .collect();
                    let classes = (0..20).map(|j| ((i + j) % 80) as u32).collect();
                    let scores = (0..20).map(|j| 1.0 - j as f32 / 25.0).collect();
                    Label::Detection(Detections {
                        boxes,
                        classes,
                        scores,
                    })
                })
                .collect(),
        ),
        "segmentation" => (
            task(r#"{"name":"seg","kind":"segmentation","num_classes":21,"dtype":"u8"}"#),
            (0..rows)
                .map(|i| {
                    let mask = (0..128 * 128)
                        .map(|p| (((p % 128) / 16 + (p / 128) / 16 + i) % 21) as u8)
                        .collect();
                    let conf = (0..128 * 128).map(|p| ((p * 7 + i) % 256) as u8).collect();
                    Label::Segmentation(SegMap {
                        height: 128,
                        width: 128,
                        mask,
                        confidence: Some(conf),
                    })
                })
                .collect(),
        ),
        _ => (
            task(r#"{"name":"depth","kind":"depth","representation":"relative"}"#),
            (0..rows)
                .map(|_| {
                    let v: Vec<f32> = (0..96 * 128)
                        .map(|p| 1.0 + (p / 128) as f32 / 96.0 + ((p % 128) % 7) as f32 / 100.0)
                        .collect();
                    Label::Depth(DepthMap::from_f32(96, 128, &v))
                })
                .collect(),
        ),
    }
}

/// Rows per kind and rows per row group, identical to the Python script.
pub const CASES: &[(&str, usize, usize)] = &[
    ("classification_topk", 20_000, 5_000),
    ("classification_dense", 2_000, 500),
    ("detection", 20_000, 5_000),
    ("segmentation", 2_000, 500),
    ("depth", 2_000, 500),
];

fn bench_labels(c: &mut Criterion) {
    let mut g = c.benchmark_group("label_write");
    g.sample_size(10).measurement_time(Duration::from_secs(6));
    for &(kind, rows, group) in CASES {
        let (task, labels) = make_labels(kind, rows);
        let ids: Vec<String> = (0..rows).map(|i| format!("img-{i:08}")).collect();
        let groups: Vec<u64> = (0..rows / group).map(|_| group as u64).collect();
        g.throughput(Throughput::Elements(rows as u64));
        g.bench_function(kind, |b| {
            b.iter_batched(
                || (labels.clone(), ids.clone()),
                |(labels, ids)| {
                    let mut w = LabelWriter::new(task.clone(), 0, ids, groups.clone()).unwrap();
                    for (i, l) in labels.into_iter().enumerate() {
                        w.set_row(i, l).unwrap();
                    }
                    black_box(w.finish().unwrap())
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench_ingest, bench_labels);
criterion_main!(benches);
