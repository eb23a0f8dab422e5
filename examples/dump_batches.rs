//! Writes the batches of the Rust loader to a folder, field by field, so that
//! another implementation (the Python package's tests) can compare its own
//! batches with them byte for byte.
//!
//! ```text
//! cargo run --release --example dump_batches -- ROOT OUT [--tasks a,b] [--batch-size 8]
//!     [--size 96 | --size 128x96] [--seed 0] [--epoch 0] [--rank 0 --world-size 1]
//!     [--label-stride 1] [--image-output u8|imagenet] [--workers 2] [--no-augment]
//! ```
//!
//! `OUT/index.json` lists each batch with its fields (name, dtype, shape),
//! image ids and sources; `OUT/<batch>/<field>.bin` holds the field's host
//! buffer as it is (little-endian; bool as one byte).

use std::io::Write;
use std::path::Path;

use must_ds::loader::{ImageOutput, Images, LoaderBuilder, Mask, TaskData};
use serde_json::{json, Value};

fn bytes_of<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: plain numeric types (u8, u16, bool, i64, f32, f16) without padding.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!("usage: dump_batches ROOT OUT [--tasks a,b] [--batch-size N] [--size S|WxH] [--seed N] [--epoch N] [--rank R --world-size W] [--label-stride K] [--image-output u8|imagenet] [--workers N] [--no-augment]");
        std::process::exit(2)
    };
    let [root, out, rest @ ..] = &args[..] else {
        usage()
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let ds = rt
        .block_on(must_ds::Dataset::open(root))
        .unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(1)
        });
    let mut tasks: Vec<String> = ds.snapshot().tasks.keys().cloned().collect();
    let mut b = LoaderBuilder::new(ds.clone());
    let (mut rank, mut world) = (0usize, 1usize);
    let mut i = 0;
    while i < rest.len() {
        let flag = rest[i].as_str();
        if flag == "--no-augment" {
            b = b.augment(false);
            i += 1;
            continue;
        }
        let Some(v) = rest.get(i + 1) else { usage() };
        let num = |s: &str| s.parse::<u64>().unwrap_or_else(|_| usage());
        b = match flag {
            "--tasks" => {
                tasks = v.split(',').map(str::to_owned).collect();
                b
            }
            "--batch-size" => b.batch_size(num(v) as usize),
            "--size" => match v.split_once('x') {
                Some((w, h)) => b.output_size(num(w) as u32, num(h) as u32),
                None => b.output_size(num(v) as u32, num(v) as u32),
            },
            "--seed" => b.seed(num(v)),
            "--epoch" => b.epoch(num(v)),
            "--rank" => {
                rank = num(v) as usize;
                b
            }
            "--world-size" => {
                world = num(v) as usize;
                b
            }
            "--label-stride" => b.label_stride(num(v) as u32),
            "--workers" => b.workers(num(v) as usize),
            "--image-output" => b.image_output(match v.as_str() {
                "imagenet" => ImageOutput::IMAGENET,
                _ => ImageOutput::U8,
            }),
            _ => usage(),
        };
        i += 2;
    }
    for t in &tasks {
        b = b.task(t, false);
    }
    let loader = b.rank(rank, world).build().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    let out = Path::new(out);
    std::fs::create_dir_all(out).expect("creating the output folder");
    let mut index = vec![];
    for (n, batch) in loader.enumerate() {
        let batch = batch.unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(1)
        });
        let dir = out.join(format!("{n:05}"));
        std::fs::create_dir_all(&dir).expect("creating a batch folder");
        let mut fields: Vec<Value> = vec![];
        let mut put = |name: String, dtype: &str, shape: Vec<usize>, data: &[u8]| {
            std::fs::File::create(dir.join(format!("{name}.bin")))
                .and_then(|mut f| f.write_all(data))
                .expect("writing a field");
            fields.push(json!({"name": name, "dtype": dtype, "shape": shape}));
        };
        let (bs, h, w) = (
            batch.batch_size,
            batch.height as usize,
            batch.width as usize,
        );
        let (lh, lw) = (batch.label_height as usize, batch.label_width as usize);
        match &batch.images {
            Images::U8(v) => put("images".into(), "uint8", vec![bs, 3, h, w], v),
            Images::F32(v) => put("images".into(), "float32", vec![bs, 3, h, w], bytes_of(v)),
        }
        put("padding".into(), "bool", vec![bs], bytes_of(&batch.padding));
        for (t, tb) in &batch.tasks {
            put(
                format!("{t}.present"),
                "bool",
                vec![bs],
                bytes_of(&tb.present),
            );
            match &tb.data {
                TaskData::Classification { num_classes, probs } => put(
                    format!("{t}.probs"),
                    "float32",
                    vec![bs, *num_classes],
                    bytes_of(probs),
                ),
                TaskData::Detection {
                    max_boxes,
                    boxes,
                    classes,
                    scores,
                    valid,
                } => {
                    let m = *max_boxes;
                    put(
                        format!("{t}.boxes"),
                        "float32",
                        vec![bs, m, 4],
                        bytes_of(boxes),
                    );
                    put(
                        format!("{t}.classes"),
                        "int64",
                        vec![bs, m],
                        bytes_of(classes),
                    );
                    put(
                        format!("{t}.scores"),
                        "float32",
                        vec![bs, m],
                        bytes_of(scores),
                    );
                    put(format!("{t}.valid"), "bool", vec![bs, m], bytes_of(valid));
                }
                TaskData::Segmentation { mask, .. } => match mask {
                    Mask::U8(v) => put(format!("{t}.mask"), "uint8", vec![bs, lh, lw], v),
                    Mask::U16(v) => {
                        put(format!("{t}.mask"), "uint16", vec![bs, lh, lw], bytes_of(v))
                    }
                },
                TaskData::Depth { depth } => put(
                    format!("{t}.depth"),
                    "float16",
                    vec![bs, 1, lh, lw],
                    bytes_of(depth),
                ),
            }
        }
        index.push(json!({
            "fields": fields,
            "image_ids": batch.image_ids,
            "sources": batch.sources,
        }));
    }
    std::fs::write(
        out.join("index.json"),
        serde_json::to_string(&index).expect("index"),
    )
    .expect("writing index.json");
}
