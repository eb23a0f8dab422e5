//! The loader's options: what the builder collects ([`Options`]), checked
//! once into the [`Config`] every stage reads, and the typed key of the
//! options that shape the plan, which a saved [`LoaderState`] carries.

use std::collections::BTreeMap;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

use super::augment::Crop;
use super::batch::LabelOptions;
use super::corrupt::CorruptPolicy;
use super::plan::Segment;
use crate::error::{Error, Result};

/// How ranks are brought to the same number of batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Every rank stops at the smallest rank's last full batch.
    #[default]
    Drop,
    /// Every rank goes on to the largest rank's last batch, with padding slots.
    Pad,
}

/// Pixel type of [`Batch::images`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ImageOutput {
    /// u8, 0..=255.
    U8,
    /// f32, `(x / 255 − mean) / std` per channel.
    F32 {
        /// Per-channel mean (RGB).
        mean: [f32; 3],
        /// Per-channel standard deviation (RGB).
        std: [f32; 3],
    },
}

impl ImageOutput {
    /// f32 with the ImageNet mean and standard deviation.
    pub const IMAGENET: ImageOutput = ImageOutput::F32 {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };
}

/// Where the loader stands in an epoch: the same on every rank. Save it with
/// the model; hand it to [`LoaderBuilder::resume`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoaderState {
    /// Dataset version planned.
    pub version: u64,
    /// Seed.
    pub seed: u64,
    /// Epoch.
    pub epoch: u64,
    /// Options that shape the plan (tasks required, batch size, shuffle, balance, weights).
    pub plan: PlanKey,
    /// World sizes used so far in this epoch and the batches each rank yielded under each.
    pub segments: Vec<Segment>,
}

/// The options that decide which samples a rank gets in which batch: a
/// state resumes only a loader whose key is equal. Typed, so that its
/// saved form is the serde form of these fields and nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanKey {
    /// Samples per batch.
    pub batch_size: usize,
    /// Row groups open in the shuffle buffer.
    pub shuffle_row_groups: usize,
    /// How ranks get equal steps.
    pub balance: Balance,
    /// The required tasks, in the order requested.
    pub required: Vec<String>,
    /// Source weights, when mixing by weight.
    pub weights: Option<BTreeMap<String, f64>>,
    /// Samples per epoch, when set.
    pub epoch_size: Option<u64>,
}

impl std::fmt::Display for PlanKey {
    /// The key in one line, as errors show it:
    /// `b=32;k=4;balance=Drop;required=["cls"];weights=None;epoch_size=None`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "b={};k={};balance={:?};required={:?};weights={:?};epoch_size={:?}",
            self.batch_size,
            self.shuffle_row_groups,
            self.balance,
            self.required,
            self.weights,
            self.epoch_size
        )
    }
}

/// Every option of a loader, as the builder sets them (unchecked).
#[derive(Debug, Clone)]
pub(super) struct Options {
    pub(super) tasks: Vec<(String, bool)>,
    pub(super) batch_size: usize,
    pub(super) size: (u32, u32),
    pub(super) label_stride: u32,
    pub(super) max_image_pixels: u64,
    pub(super) crop: Crop,
    pub(super) flip: f64,
    pub(super) augment: bool,
    pub(super) seed: u64,
    pub(super) epoch: u64,
    pub(super) rank: usize,
    pub(super) world_size: usize,
    pub(super) workers: usize,
    pub(super) prefetch_bytes: u64,
    pub(super) prefetch_batches: usize,
    pub(super) shuffle_row_groups: usize,
    pub(super) requests: usize,
    pub(super) output: ImageOutput,
    pub(super) labels: LabelOptions,
    pub(super) corrupt: CorruptPolicy,
    pub(super) balance: Balance,
    pub(super) weights: Option<BTreeMap<String, f64>>,
    pub(super) epoch_size: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tasks: vec![],
            batch_size: 32,
            size: (384, 384),
            label_stride: 1,
            max_image_pixels: crate::codec::max_image_pixels(),
            crop: Crop::RandomResized {
                scale: (0.08, 1.0),
                ratio: (3.0 / 4.0, 4.0 / 3.0),
            },
            flip: 0.5,
            augment: true,
            seed: 0,
            epoch: 0,
            rank: 0,
            world_size: 1,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            prefetch_bytes: 64 << 20,
            prefetch_batches: 0,
            shuffle_row_groups: 4,
            requests: 8,
            output: ImageOutput::U8,
            labels: LabelOptions::default(),
            corrupt: CorruptPolicy::Fail,
            balance: Balance::Drop,
            weights: None,
            epoch_size: None,
        }
    }
}

impl Options {
    /// The key of the options that shape the plan.
    pub(super) fn plan_key(&self) -> PlanKey {
        PlanKey {
            batch_size: self.batch_size,
            shuffle_row_groups: self.shuffle_row_groups,
            balance: self.balance,
            required: self
                .tasks
                .iter()
                .filter(|t| t.1)
                .map(|t| t.0.clone())
                .collect(),
            weights: self.weights.clone(),
            epoch_size: self.epoch_size,
        }
    }

    /// Checks the options that need no dataset, once: the [`Config`] the
    /// stages read.
    pub(super) fn check(&self) -> Result<Config> {
        let bad = |m: String| Err(Error::Loader(m));
        if self.tasks.is_empty() {
            return bad("no task requested (LoaderBuilder::task)".into());
        }
        if self.batch_size == 0 || self.size.0 == 0 || self.size.1 == 0 {
            return bad("batch size and output size must be positive".into());
        }
        if ![1, 2, 4, 8].contains(&self.label_stride)
            || !self.size.0.is_multiple_of(self.label_stride)
            || !self.size.1.is_multiple_of(self.label_stride)
        {
            return bad(format!(
                "label stride {} must be 1, 2, 4 or 8 and divide the output size {}x{}",
                self.label_stride, self.size.0, self.size.1
            ));
        }
        if self.world_size == 0 || self.rank >= self.world_size {
            return bad(format!(
                "rank {} is not in a world of {}",
                self.rank, self.world_size
            ));
        }
        let ahead = if self.prefetch_batches == 0 {
            self.workers
        } else {
            self.prefetch_batches
        };
        Ok(Config {
            o: self.clone(),
            ahead: ahead.max(1),
            budget_kib: (self.prefetch_bytes / 1024).max(1) as usize,
        })
    }
}

/// Checked options, built once per loader and shared by its stages (read
/// through `Deref` as [`Options`]), with the values derived from them.
#[derive(Debug)]
pub(super) struct Config {
    o: Options,
    /// Batches prepared ahead of the consumer.
    pub(super) ahead: usize,
    /// The prefetch budget in KiB.
    pub(super) budget_kib: usize,
}

impl Deref for Config {
    type Target = Options;

    fn deref(&self) -> &Options {
        &self.o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The resume key is saved as named fields, compared field by field,
    /// and shown in errors in one line.
    #[test]
    fn the_plan_key_is_typed_in_the_saved_state() {
        let o = Options {
            tasks: vec![("cls".into(), true), ("seg".into(), false)],
            balance: Balance::Pad,
            weights: Some(BTreeMap::from([("jft".to_string(), 2.0)])),
            ..Options::default()
        };
        let key = o.plan_key();
        let state = LoaderState {
            version: 3,
            seed: 7,
            epoch: 1,
            plan: key.clone(),
            segments: vec![],
        };
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(
            json["plan"],
            serde_json::json!({
                "batch_size": 32, "shuffle_row_groups": 4, "balance": "pad",
                "required": ["cls"], "weights": {"jft": 2.0}, "epoch_size": null
            })
        );
        let back: LoaderState = serde_json::from_value(json).unwrap();
        assert_eq!(back, state);
        let mut other = o.clone();
        other.batch_size = 16;
        assert_ne!(other.plan_key(), key);
        // Options that do not shape the plan leave the key alone.
        other = o.clone();
        other.workers = 7;
        other.flip = 0.0;
        assert_eq!(other.plan_key(), key);
        assert_eq!(
            key.to_string(),
            r#"b=32;k=4;balance=Pad;required=["cls"];weights=Some({"jft": 2.0});epoch_size=None"#
        );
    }
}
