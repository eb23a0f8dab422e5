//! Depth statistics: values, invalid (NaN) pixels and map sizes.

use serde::Serialize;

use super::{MapSizes, SizeCount};
use crate::audit::{Dist, Summary};
use crate::codec::DepthMap;

/// Depth statistics.
#[derive(Debug, Clone, Serialize)]
pub struct DepthStats {
    /// Rows with a label.
    pub labeled: u64,
    /// Pixels in all maps.
    pub pixels: u64,
    /// Finite values.
    pub values: Option<Summary>,
    /// Share of NaN (invalid) pixels.
    pub nan_fraction: f64,
    /// The most common map sizes.
    pub map_sizes: Vec<SizeCount>,
    /// Image width over map width.
    pub image_to_map_ratio: Option<Summary>,
}

/// What [`DepthStats`] is computed from, label by label.
#[derive(Default)]
pub(super) struct Acc {
    maps: MapSizes,
    values: Dist,
    nan: u64,
}

impl Acc {
    /// Adds the map of one image `image_width` wide (0 when not known).
    pub(super) fn add(&mut self, d: &DepthMap, image_width: u32) {
        self.maps.add(d.width, d.height, image_width);
        for v in d.to_f32() {
            if v.is_nan() {
                self.nan += 1;
            } else {
                self.values.add(v as f64);
            }
        }
    }

    /// The statistics of `labeled` rows.
    pub(super) fn finish(self, labeled: u64) -> DepthStats {
        DepthStats {
            labeled,
            pixels: self.maps.pixels,
            values: self.values.summary(),
            nan_fraction: self.nan as f64 / self.maps.pixels.max(1) as f64,
            map_sizes: self.maps.top(),
            image_to_map_ratio: self.maps.ratio.summary(),
        }
    }
}
