//! A corpus at JFT-300M scale on paper: a log and a checkpoint describing
//! N image shards and their labels for several tasks, with no data file
//! behind them but one small real template shard, which a redirecting
//! store serves for every shard's path. So opening, planning and the first
//! batch of a rank run the real code on the real metadata size, on a
//! laptop's disk. Shared by `examples/scale` (the measurement) and the
//! metadata-scale test.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use must_ds::codec::{ClassLabel, DepthMap, Detections, Label, SegMap};
use must_ds::format::{Action, AddImages, AddLabels, Commit, DatasetInfo, Protocol, TaskDef};
use must_ds::ingest::{ingest, IngestOptions, InputData, InputImage};
use must_ds::store::layout;
use must_ds::write::LabelWriter;
use must_ds::Dataset;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// The tasks of the corpus: the four kinds, as a MuST student learns them.
pub const TASKS: [&str; 4] = [
    r#"{"name":"cls","kind":"classification","num_classes":1000,"encoding":"topk","teacher":{"name":"cls-teacher"}}"#,
    r#"{"name":"det","kind":"detection","num_classes":80,"teacher":{"name":"det-teacher"}}"#,
    r#"{"name":"seg","kind":"segmentation","num_classes":21,"dtype":"u8","teacher":{"name":"seg-teacher"}}"#,
    r#"{"name":"depth","kind":"depth","representation":"relative","teacher":{"name":"depth-teacher"}}"#,
];

/// The one real shard every shard of the corpus points at.
pub struct Template {
    /// Its image shard, as committed.
    pub images: AddImages,
    /// Its label files, one per task, as committed.
    pub labels: Vec<AddLabels>,
    /// The tasks.
    pub tasks: Vec<TaskDef>,
    /// The template dataset's folder.
    pub dir: std::path::PathBuf,
}

fn tiny_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(32, 24, |x, y| {
        image::Rgb([(x * 8) as u8, (y * 10) as u8, 90])
    });
    let mut out = vec![];
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&img)
        .expect("jpeg");
    out
}

fn label(task: &TaskDef, i: usize) -> Label {
    match task.name.as_str() {
        "cls" => Label::Classification(ClassLabel::TopK {
            classes: (0..5).map(|j| ((i * 7 + j * 13) % 1000) as u32).collect(),
            probs: vec![0.5, 0.2, 0.1, 0.05, 0.05],
        }),
        "det" => Label::Detection(Detections {
            boxes: (0..3)
                .map(|j| [j as f32, 1.0, 10.0 + j as f32, 12.0])
                .collect(),
            classes: (0..3).map(|j| ((i + j) % 80) as u32).collect(),
            scores: vec![0.9, 0.6, 0.3],
        }),
        "seg" => Label::Segmentation(SegMap::from_u8(
            6,
            8,
            (0..48).map(|p| ((p + i) % 21) as u8).collect(),
        )),
        _ => Label::Depth(DepthMap::from_f32(
            6,
            8,
            &(0..48)
                .map(|p| (p + i % 7) as f32 / 8.0)
                .collect::<Vec<_>>(),
        )),
    }
}

/// Builds the template at `dir`: one image shard of `rows` small real
/// JPEGs in `groups` row groups, labeled for every task.
pub fn template(
    rt: &tokio::runtime::Runtime,
    dir: &FsPath,
    rows: usize,
    groups: usize,
) -> Template {
    let url = dir.to_str().expect("utf-8 path");
    let mut ds = rt
        .block_on(Dataset::init(url, DatasetInfo::default()))
        .expect("init template");
    let jpeg = Bytes::from(tiny_jpeg());
    let inputs = (0..rows)
        .map(|i| InputImage {
            image_id: format!("jft/{i:09}"),
            data: InputData::Bytes(jpeg.clone()),
        })
        .collect();
    let mut opts = IngestOptions::new("jft");
    opts.workers = 1; // one shard
    opts.shard.shard_rows = rows;
    opts.shard.row_group_rows = rows.div_ceil(groups);
    ingest(rt.handle(), &ds, inputs, &opts, None).expect("ingest template");
    rt.block_on(ds.refresh()).expect("refresh");
    assert_eq!(ds.snapshot().images.len(), 1, "the template is one shard");
    let tasks: Vec<TaskDef> = TASKS
        .iter()
        .map(|j| TaskDef::from_json(j).expect("task"))
        .collect();
    let ids = rt.block_on(ds.read_image_ids(0)).expect("ids");
    let mut labels = vec![];
    for t in &tasks {
        rt.block_on(ds.define_task(t.clone())).expect("define");
        let mut w = rt
            .block_on(LabelWriter::for_shard(&ds, &t.name, 0))
            .expect("writer");
        for (i, id) in ids.iter().enumerate() {
            w.set(id, label(t, i)).expect("label");
        }
        let file = w.finish().expect("finish");
        labels.push(
            rt.block_on(ds.add_label_file(&t.name, 0, file, false))
                .expect("commit labels"),
        );
    }
    Template {
        images: ds.snapshot().images[&0].clone(),
        labels,
        tasks,
        dir: dir.to_owned(),
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A UUID-shaped name as writers make them (random-looking, so that the
/// log and checkpoint compress as real ones do).
fn fake_uuid(shard: u64, file: u64) -> String {
    let (a, b) = (mix(shard * 8 + file), mix(!(shard * 8 + file)));
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// Writes the corpus's log at `dir`: `shards` image shards like the
/// template's, `per_commit` to an ingest commit, then each task's label
/// files in commits of `per_commit`. Returns the last version.
pub fn write_log(dir: &FsPath, t: &Template, shards: u64, per_commit: u64) -> u64 {
    std::fs::create_dir_all(dir.join(layout::LOG_DIR)).expect("log folder");
    let mut commits = vec![vec![
        Action::Protocol(Protocol::default()),
        Action::Dataset(DatasetInfo {
            name: "jft-300m-on-paper".into(),
            description: format!(
                "{shards} image shards of the template at {}",
                t.dir.display()
            ),
        }),
    ]];
    commits.push(t.tasks.iter().cloned().map(Action::Task).collect());
    let chunks = shards.div_ceil(per_commit);
    for c in 0..chunks {
        commits.push(
            (c * per_commit..((c + 1) * per_commit).min(shards))
                .map(|shard| {
                    Action::AddImages(AddImages {
                        shard,
                        path: format!("images/part-{}.parquet", fake_uuid(shard, 0)),
                        checksum: format!("crc32c:{:08x}", mix(shard) as u32),
                        ..t.images.clone()
                    })
                })
                .collect(),
        );
    }
    for (k, l) in t.labels.iter().enumerate() {
        for c in 0..chunks {
            commits.push(
                (c * per_commit..((c + 1) * per_commit).min(shards))
                    .map(|shard| {
                        Action::AddLabels(AddLabels {
                            shard,
                            path: format!(
                                "labels/{}/part-{}.parquet",
                                l.task,
                                fake_uuid(shard, k as u64 + 1)
                            ),
                            checksum: format!(
                                "crc32c:{:08x}",
                                mix(shard ^ (k as u64) << 40) as u32
                            ),
                            ..l.clone()
                        })
                    })
                    .collect(),
            );
        }
    }
    let last = commits.len() as u64 - 1;
    for (v, actions) in commits.into_iter().enumerate() {
        let c = Commit {
            version: v as u64,
            timestamp: "2026-12-05T00:00:00Z".into(),
            operation: "synthetic".into(),
            writer: "examples/scale".into(),
            actions,
            transaction: None,
        };
        std::fs::write(dir.join(layout::log_file(v as u64)), c.to_bytes()).expect("write commit");
    }
    last
}

/// A store over the corpus's folder whose data files (`images/…`,
/// `labels/<task>/…`) are all served by the template's.
#[derive(Debug)]
pub struct Redirect {
    meta: Arc<dyn ObjectStore>,
    data: Arc<dyn ObjectStore>,
    images: Path,
    labels: BTreeMap<String, Path>,
}

impl Redirect {
    /// The corpus at `dir`, data from template `t`.
    pub fn new(dir: &FsPath, t: &Template) -> Self {
        Self {
            meta: Arc::new(LocalFileSystem::new_with_prefix(dir).expect("corpus folder")),
            data: Arc::new(LocalFileSystem::new_with_prefix(&t.dir).expect("template folder")),
            images: Path::from(t.images.path.as_str()),
            labels: t
                .labels
                .iter()
                .map(|l| (l.task.clone(), Path::from(l.path.as_str())))
                .collect(),
        }
    }

    fn data_path(&self, p: &Path) -> Option<&Path> {
        let s = p.as_ref();
        if s.starts_with("images/") {
            return Some(&self.images);
        }
        let task = s.strip_prefix("labels/")?.split('/').next()?;
        self.labels.get(task)
    }
}

impl std::fmt::Display for Redirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redirect({})", self.meta)
    }
}

#[async_trait]
impl ObjectStore for Redirect {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.meta.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.meta.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        match self.data_path(location) {
            Some(p) => self.data.get_opts(p, options).await,
            None => self.meta.get_opts(location, options).await,
        }
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        match self.data_path(location) {
            Some(p) => self.data.get_ranges(p, ranges).await,
            None => self.meta.get_ranges(location, ranges).await,
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.meta.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.meta.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.meta.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.meta.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.meta.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.meta.rename_opts(from, to, options).await
    }
}
