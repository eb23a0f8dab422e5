//! Batches as libtorch tensors (feature `tch`): names, shapes, kinds and
//! values, on the CPU here and on CUDA where there is one (pinned host
//! buffers, non-blocking copies).

use must_ds::loader::{Images, LoaderBuilder, TaskData};
use tch::{Device, Kind};

#[test]
fn batches_become_named_tensors_with_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    must_ds::cli::demo::build(&root, 35).unwrap();
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
