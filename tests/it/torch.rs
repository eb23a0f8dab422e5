//! Batches as libtorch tensors (feature `tch`): names, shapes, kinds and
//! values, on the CPU here and on CUDA where there is one (pinned host
//! buffers, non-blocking copies).

use must_ds::loader::{Images, LoaderBuilder, Mask, TaskData};
use tch::{Device, Kind};

#[test]
fn batches_become_named_tensors_with_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    must_ds::demo::build(&root, 35).unwrap();
    let mut loader =
        crate::util::with_demo_tasks(LoaderBuilder::open(root.to_str().unwrap(), None))
            .batch_size(4)
            .output_size(40, 32)
            .build()
            .unwrap();
    let batch = loader.next().unwrap().unwrap();
    let mut devices = vec![Device::Cpu];
    if tch::Cuda::is_available() {
        devices.push(Device::Cuda(0));
    }
    for device in devices {
        let t = must_ds::torch::to_tensors(&batch, device);
        let img = &t["images"];
        assert_eq!(
            (img.size(), img.kind(), img.device()),
            (vec![4, 3, 32, 40], Kind::Uint8, device)
        );
        let Images::U8(px) = &batch.images else {
            unreachable!()
        };
        let back: Vec<u8> = Vec::try_from(img.to_device(Device::Cpu).flatten(0, -1)).unwrap();
        assert_eq!(&back, px);
        assert_eq!(t["luma-bands.mask"].size(), vec![4, 32, 40]);
        assert_eq!(t["luma-bands.mask"].kind(), Kind::Int64);
        assert_eq!(t["vertical-depth.valid"].kind(), Kind::Bool);
        assert_eq!(t["vertical-depth.depth"].size(), vec![4, 1, 32, 40]);
        assert_eq!(t["vertical-depth.depth"].kind(), Kind::Float);
        // The compact host layout, widened on the device, gives the tensors
        // of the wide layout: i64 class ids, f32 depth with 0 and
        // valid = false where the map has NaN.
        let TaskData::Segmentation {
            mask: Mask::U8(m), ..
        } = &batch.task("luma-bands").unwrap().data
        else {
            unreachable!()
        };
        let got: Vec<i64> =
            Vec::try_from(t["luma-bands.mask"].to_device(Device::Cpu).flatten(0, -1)).unwrap();
        assert_eq!(got, m.iter().map(|&v| v as i64).collect::<Vec<_>>());
        let TaskData::Depth { depth } = &batch.task("vertical-depth").unwrap().data else {
            unreachable!()
        };
        let d: Vec<f32> = Vec::try_from(
            t["vertical-depth.depth"]
                .to_device(Device::Cpu)
                .flatten(0, -1),
        )
        .unwrap();
        let v: Vec<bool> = Vec::try_from(
            t["vertical-depth.valid"]
                .to_device(Device::Cpu)
                .flatten(0, -1),
        )
        .unwrap();
        let want_v: Vec<bool> = depth.iter().map(|x| x.is_finite()).collect();
        let want_d: Vec<f32> = depth
            .iter()
            .map(|x| if x.is_finite() { x.to_f32() } else { 0.0 })
            .collect();
        assert_eq!(v, want_v);
        assert_eq!(d, want_d);
        assert!(want_v.iter().any(|x| *x), "some depth is valid");
        let TaskData::Detection {
            max_boxes, classes, ..
        } = &batch.task("bright-regions").unwrap().data
        else {
            unreachable!()
        };
        assert_eq!(
            t["bright-regions.boxes"].size(),
            vec![4, *max_boxes as i64, 4]
        );
        let c: Vec<i64> = Vec::try_from(
            t["bright-regions.classes"]
                .to_device(Device::Cpu)
                .flatten(0, -1),
        )
        .unwrap();
        assert_eq!(&c, classes);
        let present: Vec<bool> =
            Vec::try_from(t["scene-color.present"].to_device(Device::Cpu)).unwrap();
        assert_eq!(present, batch.task("scene-color").unwrap().present);
        let TaskData::Classification { probs, .. } = &batch.task("scene-color").unwrap().data
        else {
            unreachable!()
        };
        let p: Vec<f32> =
            Vec::try_from(t["scene-color.probs"].to_device(Device::Cpu).flatten(0, -1)).unwrap();
        assert_eq!(&p, probs);
    }
}

#[test]
fn u16_masks_and_normalized_images_widen_on_the_device() {
    use must_ds::loader::{Batch, TaskBatch};
    let mut tasks = std::collections::BTreeMap::new();
    let values: Vec<u16> = vec![0, 1, 40000, 65535, 7, 65534];
    tasks.insert(
        "seg".to_owned(),
        TaskBatch {
            present: vec![true],
            data: TaskData::Segmentation {
                mask: Mask::U16(values.clone()),
                ignore_index: 65535,
            },
        },
    );
    let batch = Batch {
        epoch: 0,
        index: 0,
        batch_size: 1,
        height: 2,
        width: 3,
        label_height: 2,
        label_width: 3,
        images: Images::U8(vec![
            0, 255, 51, 0, 255, 51, 0, 255, 51, 0, 255, 51, 0, 255, 51, 0, 255, 51,
        ]),
        image_ids: vec!["a".into()],
        sources: vec!["s".into()],
        padding: vec![false],
        tasks,
    };
    let (mean, std) = ([0.5f32, 0.25, 0.0], [0.5f32, 0.25, 1.0]);
    let t = must_ds::torch::to_tensors_with(&batch, Device::Cpu, Some((mean, std)));
    let m: Vec<i64> = Vec::try_from(t["seg.mask"].flatten(0, -1)).unwrap();
    assert_eq!(m, values.iter().map(|&v| v as i64).collect::<Vec<_>>());
    let img: Vec<f32> = Vec::try_from(t["images"].flatten(0, -1)).unwrap();
    let Images::U8(px) = &batch.images else {
        unreachable!()
    };
    for (k, (&got, &x)) in img.iter().zip(px).enumerate() {
        let c = k / 6;
        let want = (x as f32 / 255.0 - mean[c]) / std[c];
        assert!((got - want).abs() < 1e-5, "{k}: {got} vs {want}");
    }
}
