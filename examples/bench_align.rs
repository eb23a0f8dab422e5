//! Labels from any engine, measured: the same labels committed through the
//! aligned path (one file per shard, already in the shard's order and row
//! groups: checked and committed as it is, `add-labels --shard K`) and
//! through alignment by image id (one shuffled file for every shard, one row
//! group: what DuckDB writes), in the same run.
//!
//! ```text
//! cargo run --release --example bench_align -- topk 1000000
//! cargo run --release --example bench_align -- detection 100000
//! ```
//!
//! The dataset holds `N` images by URI (no pixels: only ids and sizes
//! matter here) in shards of 100,000 rows and row groups of 4,096.

use std::time::Instant;

// The allocator of the must-ds command (src/main.rs), so that the figures
// are the command's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use must_ds::codec::{labels_to_batch, ClassLabel, Detections, Label};
use must_ds::format::TaskDef;
use must_ds::write::{
    check_label_file, AlignOptions, ImageShardOptions, ImageShardWriter, LabelAligner, LabelWriter,
};
use must_ds::Dataset;
use rand::seq::SliceRandom;
use rand::SeedableRng;

fn label(kind: &str, i: usize) -> Label {
    if kind == "topk" {
        let classes = (0..5).map(|j| ((i * 7 + j * 13) % 1000) as u32).collect();
        return Label::Classification(ClassLabel::TopK {
            classes,
            probs: vec![0.5, 0.2, 0.1, 0.05, 0.05],
        });
    }
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
    Label::Detection(Detections {
        boxes,
        classes: (0..20).map(|j| ((i + j) % 80) as u32).collect(),
        scores: (0..20).map(|j| 1.0 - j as f32 / 25.0).collect(),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).map_or("topk", String::as_str).to_owned();
    let n: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let task_json = if kind == "topk" {
        r#"{"name":"T","kind":"classification","num_classes":1000,"encoding":"topk","teacher":{"name":"t"}}"#
    } else {
        r#"{"name":"T","kind":"detection","num_classes":80,"teacher":{"name":"t"}}"#
    };
    let rt = tokio::runtime::Runtime::new()?;
    let dir = std::env::temp_dir().join(format!("must-bench-align-{}", std::process::id()));
    let root = dir.join("ds");
    std::fs::create_dir_all(&root)?;
    let url = root.to_str().unwrap_or_default().to_owned();
    let mut ds = rt.block_on(Dataset::init(&url, Default::default()))?;
    let mut ids = Vec::with_capacity(n);
    let t0 = Instant::now();
    for start in (0..n).step_by(100_000) {
        let mut w = ImageShardWriter::new(ImageShardOptions {
            row_group_rows: 4096,
            shard_rows: 100_000,
            ..Default::default()
        })?;
        for i in start..(start + 100_000).min(n) {
            let id = format!("web/img-{i:08}.jpg");
            w.add_uri(&id, "web", &format!("s3://photos/{i}.jpg"), 640, 480)?;
            ids.push(id);
        }
        rt.block_on(ds.add_image_shard(w.finish()?))?;
    }
    eprintln!(
        "{n} images in {} shards ({:.1} s)",
        ds.snapshot().images.len(),
        t0.elapsed().as_secs_f64()
    );
    for name in ["aligned", "by_id"] {
        let t = TaskDef::from_json(&task_json.replace("\"T\"", &format!("\"{name}\"")))?;
        rt.block_on(ds.define_task(t))?;
    }
    let task = ds.snapshot().task("aligned")?.clone();
    // The inputs: aligned files, one per shard; one shuffled file of every row.
    let mut aligned_files = vec![];
    let mut first = 0usize;
    let shards: Vec<u64> = ds.snapshot().images.keys().copied().collect();
    for &s in &shards {
        let rows = ds.snapshot().images[&s].rows as usize;
        let mut w = rt.block_on(LabelWriter::for_shard(&ds, "aligned", s))?;
        for r in 0..rows {
            w.set_row(r, label(&kind, first + r))?;
        }
        let path = dir.join(format!("aligned-{s}.parquet"));
        std::fs::write(&path, &w.finish()?.bytes)?;
        aligned_files.push((s, path));
        first += rows;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(1));
    let shuffled = dir.join("shuffled.parquet");
    {
        let f = std::fs::File::create(&shuffled)?;
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(n.max(1)))
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let mut w: Option<parquet::arrow::ArrowWriter<std::fs::File>> = None;
        let mut f = Some(f);
        for chunk in order.chunks(65_536) {
            let cid: Vec<String> = chunk.iter().map(|&i| ids[i].clone()).collect();
            let cl: Vec<Option<Label>> = chunk.iter().map(|&i| Some(label(&kind, i))).collect();
            let b = labels_to_batch(&task, &cid, &cl, false)?;
            if w.is_none() {
                w = Some(parquet::arrow::ArrowWriter::try_new(
                    f.take().expect("file"),
                    b.schema(),
                    Some(props.clone()),
                )?);
            }
            w.as_mut().expect("writer").write(&b)?;
        }
        if let Some(w) = w {
            w.close()?;
        }
    }
    drop(ids);
    // Aligned: read each file, check it against its shard, commit it as it is.
    let t0 = Instant::now();
    for (s, path) in &aligned_files {
        let a = ds.snapshot().shard(*s)?.clone();
        let bytes = std::fs::read(path)?;
        let shard_ids = rt.block_on(ds.read_image_ids(*s))?;
        let report = check_label_file(
            &task,
            *s,
            &shard_ids,
            &a.row_groups,
            bytes.clone().into(),
            &path.display().to_string(),
        )?;
        let file = must_ds::write::EncodedFile {
            bytes: bytes.into(),
            rows: report.rows,
            row_groups: report.row_groups,
            sources: Default::default(),
            labeled: report.labeled,
        };
        rt.block_on(ds.add_label_file("aligned", *s, file, false))?;
    }
    let aligned_s = t0.elapsed().as_secs_f64();
    // By image id, from the shuffled file.
    let t0 = Instant::now();
    let report = rt.block_on(async {
        let mut al = LabelAligner::new(&mut ds, "by_id", AlignOptions::default()).await?;
        let f =
            std::fs::File::open(&shuffled).map_err(|e| must_ds::Error::Loader(e.to_string()))?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .and_then(|b| b.with_batch_size(8192).build())
            .map_err(|e| must_ds::Error::Loader(e.to_string()))?;
        let mut row = 0;
        for b in reader {
            let b = b.map_err(|e| must_ds::Error::Loader(e.to_string()))?;
            al.push(&b, "shuffled.parquet", row).await?;
            row += b.num_rows();
        }
        al.finish().await
    })?;
    let by_id_s = t0.elapsed().as_secs_f64();
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    println!(
        "{{\"kind\": \"{kind}\", \"rows\": {n}, \"aligned_rows_per_s\": {:.0}, \"by_id_rows_per_s\": {:.0}, \"by_id_over_aligned\": {:.2}, \"shards\": {}, \"spills\": {}, \"peak_rss_mib\": {}}}",
        n as f64 / aligned_s,
        n as f64 / by_id_s,
        aligned_s / by_id_s,
        report.shards.len(),
        report.spills,
        rss / 1024
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
