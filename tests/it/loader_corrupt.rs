//! Corrupt data at load time: one damaged row group behind an intact footer
//! is the only thing reported, and a label that fails its value check stops
//! the epoch with its image id (`Fail`) or leaves a padding slot without
//! labels (`Skip`).

use std::collections::BTreeSet;
use std::path::Path;

use must_ds::codec::{labels_to_batch, ClassLabel, Label, SegMap};
use must_ds::format::{checksum_of, Action, AddLabels, TaskDef};
use must_ds::loader::{Batch, CorruptPolicy, LoaderBuilder};
use must_ds::write::LabelWriter;
use must_ds::{Dataset, Error, Transaction};
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::util;

const CLS: &str = r#"{"name":"cls","kind":"classification","num_classes":4,"encoding":"dense","teacher":{"name":"t"}}"#;
const SEG: &str = r#"{"name":"seg","kind":"segmentation","num_classes":2,"dtype":"u8","ignore_index":255,"teacher":{"name":"t"}}"#;

use crate::util::real_ids as ids;

/// 12 photos in one shard (row groups of 4), `cls` on every image.
fn with_cls(rt: &tokio::runtime::Runtime, root: &Path) -> (Dataset, Vec<String>) {
    let mut ds = util::dataset_with_images(rt, root, 12, 12, 4);
    rt.block_on(ds.define_task(TaskDef::from_json(CLS).unwrap()))
        .unwrap();
    let mut l = rt.block_on(LabelWriter::for_shard(&ds, "cls", 0)).unwrap();
    let ids = l.image_ids().to_vec();
    for id in &ids {
        l.set(id, Label::Classification(ClassLabel::Dense(vec![0.25; 4])))
            .unwrap();
    }
    rt.block_on(ds.add_label_file("cls", 0, l.finish().unwrap(), false))
        .unwrap();
    (ds, ids)
}

#[test]
fn one_damaged_row_group_behind_an_intact_footer_is_the_only_one_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let root_s = root.to_str().unwrap();
    let rt = util::rt();
    let (ds, all) = with_cls(&rt, &root);
    let shard = ds.snapshot().images[&0].path.clone();
    let path = root.join(&shard);
    let bytes = bytes::Bytes::from(std::fs::read(&path).unwrap());
    let md = SerializedFileReader::new(bytes.clone()).unwrap();
    let md = md.metadata();
    assert_eq!(md.num_row_groups(), 3);
    // Every column chunk of row group 1, page headers included; the footer
    // and the other row groups keep their bytes.
    let lost: BTreeSet<String> = rt
        .block_on(ds.read_image_ids(0))
        .unwrap()
        .into_iter()
        .skip(4)
        .take(4)
        .collect();
    let mut damaged = bytes.to_vec();
    for c in md.row_group(1).columns() {
        let (start, len) = c.byte_range();
        damaged[start as usize..(start + len) as usize]
            .iter_mut()
            .for_each(|b| *b = 0x5a);
    }
    let footer = bytes.len()
        - 8
        - u32::from_le_bytes(bytes[bytes.len() - 8..][..4].try_into().unwrap()) as usize;
    assert_eq!(damaged[footer..], bytes[footer..], "the footer is intact");
    std::fs::write(&path, &damaged).unwrap();
    // Still parses: only the data of one row group is gone.
    SerializedFileReader::new(bytes::Bytes::from(damaged)).unwrap();

    let b = |p| {
        LoaderBuilder::open(root_s, None)
            .task("cls", false)
            .batch_size(4)
            .output_size(32, 32)
            .seed(5)
            .on_corrupt(p)
    };
    let errs: Vec<Error> = b(CorruptPolicy::Fail)
        .build()
        .unwrap()
        .filter_map(|r| r.err())
        .collect();
    assert_eq!(errs.len(), 1, "{errs:?}");
    let msg = errs[0].to_string();
    assert!(
        matches!(errs[0], Error::Corrupt { row_group: 1, .. })
            && msg.contains(&shard)
            && msg.contains("row group 1"),
        "{msg}"
    );

    let mut skip = b(CorruptPolicy::Skip).build().unwrap();
    let batches: Vec<Batch> = skip.by_ref().map(|r| r.unwrap()).collect();
    let got: BTreeSet<String> = ids(&batches).into_iter().collect();
    let want: BTreeSet<String> = all.iter().filter(|i| !lost.contains(*i)).cloned().collect();
    assert_eq!(got, want, "every sample of the intact row groups, once");
    assert_eq!(ids(&batches).len(), 8);
    let rep = skip.skipped();
    assert_eq!(rep.len(), 1, "only the damaged group: {rep:?}");
    assert_eq!(
        (rep[0].file.as_str(), rep[0].row_group),
        (shard.as_str(), 1)
    );
    assert_eq!(rep[0].image_id, None);
}

#[test]
fn a_label_that_fails_its_check_at_load_time_fails_or_leaves_a_padding_slot() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let root_s = root.to_str().unwrap();
    let rt = util::rt();
    let (mut ds, all) = with_cls(&rt, &root);
    let seg = TaskDef::from_json(SEG).unwrap();
    rt.block_on(ds.define_task(seg.clone())).unwrap();
    // A mask value of 7 (num_classes 2, ignore_index 255) in row 5, written
    // and committed by a tool that checks nothing.
    let mut labels: Vec<Option<Label>> = (0..12)
        .map(|_| {
            Some(Label::Segmentation(SegMap::from_u8(
                2,
                2,
                vec![0, 1, 1, 255],
            )))
        })
        .collect();
    labels[5] = Some(Label::Segmentation(SegMap::from_u8(2, 2, vec![0, 1, 7, 0])));
    let bad = all[5].clone();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        Vec::new(),
        std::sync::Arc::new(must_ds::format::label_schema(&seg, false)),
        None,
    )
    .unwrap();
    for s in [0, 4, 8] {
        w.write(&labels_to_batch(&seg, &all[s..s + 4], &labels[s..s + 4], false).unwrap())
            .unwrap();
        w.flush().unwrap();
    }
    let bytes = w.into_inner().unwrap();
    let path = "labels/seg/part-unchecked-0.parquet".to_owned();
    std::fs::create_dir_all(root.join("labels/seg")).unwrap();
    std::fs::write(root.join(&path), &bytes).unwrap();
    let add = AddLabels {
        task: "seg".into(),
        shard: 0,
        path,
        rows: 12,
        bytes: bytes.len() as u64,
        checksum: checksum_of(&bytes),
        labeled: 12,
        replace: false,
    };
    rt.block_on(ds.commit(Transaction::new("add-labels").with(Action::AddLabels(add))))
        .unwrap();

    let b = |p| {
        LoaderBuilder::open(root_s, None)
            .task("cls", false)
            .task("seg", false)
            .batch_size(4)
            .output_size(32, 32)
            .seed(3)
            .on_corrupt(p)
    };
    let errs: Vec<Error> = b(CorruptPolicy::Fail)
        .build()
        .unwrap()
        .filter_map(|r| r.err())
        .collect();
    assert_eq!(errs.len(), 1, "{errs:?}");
    let msg = errs[0].to_string();
    assert!(
        msg.contains(&format!("{bad:?}")) && msg.contains("row group 1"),
        "the error names the image: {msg}"
    );

    let mut skip = b(CorruptPolicy::Skip).build().unwrap();
    let batches: Vec<Batch> = skip.by_ref().map(|r| r.unwrap()).collect();
    assert_eq!(batches.len(), 3);
    let got = ids(&batches);
    assert_eq!(got.len(), 11);
    assert!(!got.contains(&bad));
    let pads: Vec<(usize, usize)> = batches
        .iter()
        .enumerate()
        .flat_map(|(k, b)| {
            (0..b.padding.len())
                .filter(|&i| b.padding[i])
                .map(move |i| (k, i))
        })
        .collect();
    assert_eq!(
        pads.len(),
        1,
        "the bad sample's slot, and only it, is padding"
    );
    let (k, i) = pads[0];
    let b = &batches[k];
    assert!(b.image_ids[i].is_empty(), "{:?}", b.image_ids[i]);
    for (name, tb) in &b.tasks {
        assert!(!tb.present[i], "{name} present in the skipped slot");
        // Every other slot has both labels.
        assert!(
            (0..b.padding.len())
                .filter(|&j| j != i)
                .all(|j| tb.present[j]),
            "{name}"
        );
    }
    let rep = skip.skipped();
    assert_eq!(rep.len(), 1, "{rep:?}");
    assert_eq!(rep[0].image_id.as_deref(), Some(bad.as_str()));
    assert_eq!(rep[0].row_group, 1);
}
