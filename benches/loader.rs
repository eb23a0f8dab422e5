//! Loader benchmarks: JPEG decoding alone, the augmentation of one sample,
//! and a whole epoch of the loader (batch 32, 384×384, the four demo tasks,
//! augmentation on) over a demo dataset. `must-ds bench` prints the same
//! epoch with its time split; `tools/bench/compare.sh` runs the PyTorch
//! baselines beside it.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use must_ds::codec::Resizer;
use must_ds::codec::{decode_rgb, Rgb, DEFAULT_MAX_PIXELS};
use must_ds::loader::augment::{self, Crop};
use must_ds::loader::LoaderBuilder;
use must_ds::loader::Rng;
use must_ds::Dataset;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One epoch of the four demo tasks (defaults: batch 32, 384×384, augmentation on).
fn epoch(mut b: LoaderBuilder) {
    for t in must_ds::demo::demo_tasks() {
        b = b.task(&t.name, false);
    }
    let mut l = b.build().unwrap();
    while let Some(batch) = l.next() {
        l.recycle(batch.unwrap());
    }
}

fn bench(c: &mut Criterion) {
    let jpeg = include_bytes!("../data/photos/chelsea.jpg");
    let mut g = c.benchmark_group("loader");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(1));
    let mut rgb = Rgb::default();
    g.bench_function("decode_jpeg_451x300", |b| {
        b.iter(|| decode_rgb(black_box(jpeg), &mut rgb, DEFAULT_MAX_PIXELS).unwrap())
    });
    let mut rs = Resizer::default();
    let crop = Crop::RandomResized {
        scale: (0.08, 1.0),
        ratio: (0.75, 4.0 / 3.0),
    };
    let mut rng = Rng::new(&[1]);
    g.bench_function("random_resized_crop_to_384", |b| {
        b.iter(|| {
            let geo = augment::draw(&crop, 0.5, rgb.width, rgb.height, 384, 384, &mut rng);
            rs.render(&rgb, &geo, 384, 384).unwrap();
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    must_ds::demo::build(&root, 700).unwrap();
    let root = root.to_str().unwrap().to_owned();
    g.throughput(Throughput::Elements(672));
    g.bench_function("epoch_700_images_b32_384_4_tasks_2_workers", |b| {
        b.iter(|| epoch(LoaderBuilder::open(&root, None).workers(2)))
    });
    g.finish();
    latency(c);
}

/// One epoch of the 2k demo corpus from the local folder and through the
/// same folder with 50 ms added to every request: with enough reads in
/// flight the two should match.
fn latency(c: &mut Criterion) {
    use must_ds::store::retry::FaultyStore;
    use must_ds::store::Location;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    must_ds::demo::build(&root, 2000).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let local = rt.block_on(Dataset::open(root.to_str().unwrap())).unwrap();
    // Every request waits 50 ms first (FaultyStore with no faults: the
    // ThrottledStore of object_store cannot wrap a local folder's file reads).
    let slow = FaultyStore::new(
        std::sync::Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&root).unwrap()),
        0.0,
        0,
    )
    .with_latency(Duration::from_millis(50));
    let loc = Location {
        store: std::sync::Arc::new(slow),
        root: Default::default(),
        url: "slow".into(),
    };
    let slow = rt
        .block_on(Dataset::open_location(loc, None, Default::default()))
        .unwrap();
    let mut g = c.benchmark_group("latency");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(1984));
    for (name, ds, inflight) in [
        ("local_8_in_flight", &local, 8),
        ("added_50ms_8_in_flight", &slow, 8),
        ("added_50ms_16_in_flight", &slow, 16),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                epoch(
                    LoaderBuilder::new(ds.clone())
                        .workers(2)
                        .requests_in_flight(inflight),
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
