//! The worker stage: one batch job at a time, each sample's image decoded,
//! augmented and written into its slot with every task's label
//! ([`Collator`]); a sample that cannot be used is handled by the
//! corrupt-data policy.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::Array;

use super::augment::{self, Crop};
use super::batch::{Batch, Images};
use super::collate::{BoxOut, Collator};
use super::config::ImageOutput;
use super::coordinator::{Job, Slot};
use super::corrupt::{CorruptPolicy, CorruptReport};
use super::fetch;
use super::group::OpenGroup;
use super::metrics::Metrics;
use super::plan::Rng;
use super::shared::Shared;
use crate::codec::{to_planar, Resizer, Rgb};
use crate::error::Result;

/// A worker's buffers, reused from sample to sample.
#[derive(Default)]
pub(super) struct WorkerState {
    rgb: Rgb,
    resizer: Resizer,
}

/// Builds the batch of `job`: every sample decoded, augmented and
/// collated into its slot; padding slots cleared.
pub(super) fn build_batch(job: Job, sh: &Shared, ws: &mut WorkerState) -> Result<Batch> {
    let (w, h) = sh.cfg.size;
    let b = sh.cfg.batch_size;
    let hw = (w * h) as usize;
    let col = Collator {
        tasks: &sh.tasks,
        opts: &sh.cfg.labels,
        b,
        w,
        h,
        stride: sh.cfg.label_stride,
    };
    let (lw, lh) = col.label_size();
    let mut batch = match sh.spare.try_recv() {
        Ok(old) => old,
        Err(_) => Batch {
            epoch: sh.cfg.epoch,
            index: 0,
            batch_size: b,
            height: h,
            width: w,
            label_height: lh,
            label_width: lw,
            images: Images::U8(Vec::new()),
            image_ids: vec![],
            sources: vec![],
            padding: vec![],
            tasks: BTreeMap::new(),
        },
    };
    batch.epoch = sh.cfg.epoch;
    batch.index = job.index;
    batch.batch_size = b;
    (batch.width, batch.height) = (w, h);
    (batch.label_width, batch.label_height) = (lw, lh);
    batch.image_ids.clear();
    batch.image_ids.resize(b, String::new());
    batch.sources.clear();
    batch.sources.resize(b, String::new());
    batch.padding.clear();
    batch.padding.resize(b, true);
    batch.images = match (
        std::mem::replace(&mut batch.images, Images::U8(vec![])),
        sh.cfg.output,
    ) {
        // A reused buffer keeps stale pixels: every slot is written, or
        // cleared below when it stays padding.
        (Images::U8(mut v), ImageOutput::U8) => {
            v.resize(b * 3 * hw, 0);
            Images::U8(v)
        }
        (Images::F32(mut v), ImageOutput::F32 { .. }) => {
            v.resize(b * 3 * hw, 0.0);
            Images::F32(v)
        }
        (_, ImageOutput::U8) => Images::U8(vec![0; b * 3 * hw]),
        (_, ImageOutput::F32 { .. }) => Images::F32(vec![0.0; b * 3 * hw]),
    };
    batch.tasks = col.empty_tasks(Some(std::mem::take(&mut batch.tasks)));
    let mut boxes: BTreeMap<String, Vec<Vec<BoxOut>>> = BTreeMap::new();
    let mut slots = job.slots.into_iter().enumerate();
    let mut failed = None;
    for (i, slot) in slots.by_ref() {
        let (g, row) = match slot {
            Slot::Empty => continue,
            Slot::Bad(rep) => {
                failed = Some(rep);
                break;
            }
            Slot::Sample(g, row) => (g, row),
        };
        let r = fill_sample(&mut batch, i, &g, row, sh, ws, &col, &mut boxes);
        g.release(row);
        match r {
            Ok(true) => batch.padding[i] = false,
            Ok(false) => {
                // Missing a required task: padding (cleared below).
                sh.metrics.missing_required.fetch_add(1, Ordering::Relaxed);
            }
            Err((image_id, reason)) => {
                let rep = CorruptReport {
                    file: g.images.path.to_string(),
                    row_group: g.row_group,
                    image_id,
                    reason,
                };
                match sh.cfg.corrupt {
                    CorruptPolicy::Fail => {
                        failed = Some(rep);
                        break;
                    }
                    CorruptPolicy::Skip => {
                        // The slot stays padding, cleared below.
                        batch.image_ids[i].clear();
                        batch.sources[i].clear();
                        for v in boxes.values_mut() {
                            if let Some(x) = v.get_mut(i) {
                                x.clear();
                            }
                        }
                        // A whole group that cannot be read is reported once.
                        if rep.image_id.is_some() || !g.reported.swap(true, Ordering::Relaxed) {
                            sh.skip(rep);
                        }
                    }
                }
            }
        }
    }
    // Rows of the job not reached (after a failure) are given up too.
    for (_, slot) in slots {
        if let Slot::Sample(g, row) = slot {
            g.release(row);
        }
    }
    if let Some(rep) = failed {
        return Err(rep.into());
    }
    let t0 = Instant::now();
    for i in 0..b {
        if batch.padding[i] {
            clear_image(&mut batch.images, i, hw);
            col.clear(&mut batch.tasks, i);
        }
    }
    for (name, tb) in batch.tasks.iter_mut() {
        col.finish_boxes(tb, boxes.remove(name).unwrap_or_default());
    }
    Metrics::add(&sh.metrics.collate_ns, t0.elapsed());
    Ok(batch)
}

fn clear_image(images: &mut Images, i: usize, hw: usize) {
    match images {
        Images::U8(v) => v[i * 3 * hw..(i + 1) * 3 * hw].fill(0),
        Images::F32(v) => v[i * 3 * hw..(i + 1) * 3 * hw].fill(0.0),
    }
}

/// What went wrong with a sample: its image id when known, and why.
type SampleError = (Option<String>, String);

/// Fills slot `i` with row `row` of group `g`: `Ok(false)` when a required
/// task has no label (the slot stays padding).
#[allow(clippy::too_many_arguments)]
fn fill_sample(
    batch: &mut Batch,
    i: usize,
    g: &OpenGroup,
    row: usize,
    sh: &Shared,
    ws: &mut WorkerState,
    col: &Collator<'_>,
    boxes: &mut BTreeMap<String, Vec<Vec<BoxOut>>>,
) -> std::result::Result<bool, SampleError> {
    let (w, h) = sh.cfg.size;
    let hw = (w * h) as usize;
    let t_read = Instant::now();
    let (img_block, k) = g.images.get(row).map_err(|e| (None, e))?;
    let fetch::Decoded::Images {
        ids,
        source,
        image,
        uri,
    } = &*img_block
    else {
        return Err((None, "image columns expected".into()));
    };
    let image_id = ids.value(k);
    let err = |e: String| (Some(image_id.to_owned()), e);
    // Every task's block first: a required task without a label leaves the
    // slot as padding before any pixel is decoded.
    let mut labels = Vec::with_capacity(sh.tasks.len());
    for file in &g.labels {
        let Some(file) = file else {
            labels.push(None);
            continue;
        };
        let (blk, j) = file.get(row).map_err(err)?;
        labels.push(Some((blk, j, file)));
    }
    let mut refs: Vec<Option<crate::codec::LabelRef<'_>>> = Vec::with_capacity(labels.len());
    for l in &labels {
        let Some((blk, j, file)) = l else {
            refs.push(None);
            continue;
        };
        let fetch::Decoded::Labels(cols) = &**blk else {
            return Err(err("label columns expected".into()));
        };
        if cols.image_id(*j) != image_id {
            return Err(err(format!(
                "{}: row {} has image_id {:?} where the image shard has {image_id:?} (misaligned)",
                file.path,
                g.first_row as usize + row,
                cols.image_id(*j)
            )));
        }
        refs.push(cols.get(*j).map_err(|e| err(e.to_string()))?);
    }
    Metrics::add(&sh.metrics.read_ns, t_read.elapsed());
    if sh.required.iter().any(|&t| refs[t].is_none()) {
        return Ok(false);
    }
    let bytes = image
        .as_ref()
        .filter(|c| !c.is_null(k))
        .map(|c| c.as_binary::<i32>().value(k));
    let Some(bytes) = bytes else {
        let u = uri
            .as_ref()
            .filter(|c| !c.is_null(k))
            .map(|c| c.as_string::<i32>().value(k));
        return Err(err(match u {
            Some(u) => {
                format!("image not embedded (uri {u}); the loader reads embedded images only")
            }
            None => "no image bytes".into(),
        }));
    };
    let t0 = Instant::now();
    crate::codec::decode_rgb(bytes, &mut ws.rgb, sh.cfg.max_image_pixels).map_err(err)?;
    let t1 = Instant::now();
    Metrics::add(&sh.metrics.decode_ns, t1 - t0);
    sh.metrics.decoded.fetch_add(1, Ordering::Relaxed);
    let mut rng = Rng::new(&[
        sh.cfg.seed,
        sh.cfg.epoch,
        g.shard,
        g.first_row + row as u64,
        3,
    ]);
    let (iw, ih) = (ws.rgb.width, ws.rgb.height);
    let geo = if sh.cfg.augment {
        augment::draw(&sh.cfg.crop, sh.cfg.flip, iw, ih, w, h, &mut rng)
    } else {
        augment::draw(&Crop::Resize, 0.0, iw, ih, w, h, &mut rng)
    };
    ws.resizer.render(&ws.rgb, &geo, w, h).map_err(err)?;
    let t2 = Instant::now();
    // Interleaved RGB → planar, into the batch, mirrored when flipped.
    let px = ws.resizer.output();
    let slot = i * 3 * hw..(i + 1) * 3 * hw;
    match (&mut batch.images, sh.cfg.output) {
        (Images::U8(v), _) => to_planar(px, &mut v[slot], w as usize, geo.flip, |_, x| x),
        (Images::F32(v), ImageOutput::F32 { mean, std }) => {
            let scale = std.map(|s| 1.0 / (255.0 * s));
            let off = [0, 1, 2].map(|c| mean[c] / std[c]);
            to_planar(px, &mut v[slot], w as usize, geo.flip, |c, x| {
                x as f32 * scale[c] - off[c]
            })
        }
        (Images::F32(_), ImageOutput::U8) => {
            return Err(err("image buffer of the wrong type".into()))
        }
    }
    let t3 = Instant::now();
    Metrics::add(&sh.metrics.collate_ns, t3 - t2);
    for (t, label) in sh.tasks.iter().zip(refs) {
        let Some(tb) = batch.tasks.get_mut(&t.name) else {
            continue;
        };
        let Some(label) = label else {
            col.clear_task(tb, i);
            continue;
        };
        if let Some(bx) = col.put(tb, t, i, label, &geo, iw, ih).map_err(err)? {
            let v = boxes
                .entry(t.name.clone())
                .or_insert_with(|| vec![vec![]; sh.cfg.batch_size]);
            v[i] = bx;
        }
    }
    Metrics::add(&sh.metrics.augment_ns, (t2 - t1) + t3.elapsed());
    batch.image_ids[i] = image_id.to_owned();
    batch.sources[i] = source
        .as_ref()
        .filter(|c| !c.is_null(k))
        .map(|c| c.as_string::<i32>().value(k).to_owned())
        .unwrap_or_default();
    Ok(true)
}
