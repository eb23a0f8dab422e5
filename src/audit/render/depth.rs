//! Depth in a picture: the map in viridis from its smallest to its largest
//! finite value, NaN in gray; the legend gives both ends.

use image::{Rgba, RgbaImage};

use super::{map_index, Canvas, Legend};
use crate::codec::DepthMap;

/// Viridis at nine stops, for depth.
const VIRIDIS: [[f32; 3]; 9] = [
    [68.0, 1.0, 84.0],
    [71.0, 44.0, 122.0],
    [59.0, 81.0, 139.0],
    [44.0, 113.0, 142.0],
    [33.0, 144.0, 141.0],
    [39.0, 173.0, 129.0],
    [92.0, 200.0, 99.0],
    [170.0, 220.0, 50.0],
    [253.0, 231.0, 37.0],
];

/// The color of invalid (NaN) pixels.
const NAN: Rgba<u8> = Rgba([128, 128, 128, 255]);

fn viridis(t: f32) -> Rgba<u8> {
    let t = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f32;
    let i = (t as usize).min(VIRIDIS.len() - 2);
    let f = t - i as f32;
    let c = |k: usize| (VIRIDIS[i][k] * (1.0 - f) + VIRIDIS[i + 1][k] * f) as u8;
    Rgba([c(0), c(1), c(2), 255])
}

/// The panel of map `d`, the size of the image's (not over it).
pub(super) fn panel(d: &DepthMap, at: &Canvas) -> (RgbaImage, Legend) {
    let (w, h) = at.base.dimensions();
    let vals = d.to_f32();
    let finite: Vec<f32> = vals.iter().copied().filter(|v| v.is_finite()).collect();
    let (lo, hi) = finite
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let mut p = RgbaImage::new(w, h);
    for y in 0..h {
        let my = ((y as f32 + 0.5) / h as f32 * d.height as f32) as usize;
        for x in 0..w {
            let mx = ((x as f32 + 0.5) / w as f32 * d.width as f32) as usize;
            let v = vals[map_index(my, mx, d.height, d.width)];
            let c = if v.is_finite() {
                viridis((v - lo) / (hi - lo).max(1e-6))
            } else {
                NAN
            };
            p.put_pixel(x, y, c);
        }
    }
    let legend = vec![
        (viridis(0.0), format!("{lo:.3}")),
        (viridis(1.0), format!("{hi:.3}")),
        (NAN, "NaN".into()),
    ];
    (p, legend)
}
