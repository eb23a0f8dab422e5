//! The random geometry of a sample: which window of the image becomes the
//! output ([`Crop`]) and whether it is mirrored, drawn from the sample's own
//! random stream. The [`Geometry`] it gives, and the resize through it, are
//! the codec's ([`crate::codec::pixels`]), shared with the teachers.

use super::plan::Rng;
use crate::codec::Geometry;

/// How a sample's output window is chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Crop {
    /// The whole image resized to the output size (evaluation).
    Resize,
    /// Inception-style random resized crop: an area fraction in `scale` and
    /// an aspect ratio (w/h, drawn log-uniformly) in `ratio`, ten tries,
    /// then the largest centred crop within `ratio`.
    RandomResized {
        /// Area fraction range, e.g. (0.08, 1.0).
        scale: (f64, f64),
        /// Aspect ratio range, e.g. (3/4, 4/3).
        ratio: (f64, f64),
    },
    /// Scale jitter: the image fitted into the output size, scaled by a
    /// factor in `range`, then a random output-sized window (zero padding
    /// and ignored labels where the image does not reach).
    ScaleJitter {
        /// Factor range, e.g. (0.1, 2.0) for large-scale jitter.
        range: (f64, f64),
    },
}

/// Draws the geometry of an image of `w`×`h` for an output of `ow`×`oh`.
pub fn draw(crop: &Crop, flip_p: f64, w: u32, h: u32, ow: u32, oh: u32, rng: &mut Rng) -> Geometry {
    let (w, h, ow, oh) = (w as f64, h as f64, ow as f64, oh as f64);
    let (x0, y0, cw, ch) = match crop {
        Crop::Resize => (0.0, 0.0, w, h),
        Crop::RandomResized { scale, ratio } => {
            let area = w * h;
            let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
            let mut found = None;
            for _ in 0..10 {
                let target = area * rng.range(scale.0, scale.1.max(scale.0));
                let ar = rng.range(lr0, lr1.max(lr0)).exp();
                let cw = (target * ar).sqrt().round();
                let ch = (target / ar).sqrt().round();
                if cw >= 1.0 && ch >= 1.0 && cw <= w && ch <= h {
                    let x = rng.below((w - cw) as usize + 1) as f64;
                    let y = rng.below((h - ch) as usize + 1) as f64;
                    found = Some((x, y, cw, ch));
                    break;
                }
            }
            found.unwrap_or_else(|| {
                let r = w / h;
                let (cw, ch) = if r < ratio.0 {
                    (w, (w / ratio.0).round())
                } else if r > ratio.1 {
                    ((h * ratio.1).round(), h)
                } else {
                    (w, h)
                };
                ((w - cw) / 2.0, (h - ch) / 2.0, cw, ch)
            })
        }
        Crop::ScaleJitter { range } => {
            let f = rng.range(range.0, range.1.max(range.0));
            let s = f * (ow / w).min(oh / h);
            let (sw, sh) = (w * s, h * s);
            let ox = rng.unit() * (sw - ow).max(0.0);
            let oy = rng.unit() * (sh - oh).max(0.0);
            (ox / s, oy / s, ow / s, oh / s)
        }
    };
    let flip = flip_p > 0.0 && rng.unit() < flip_p;
    Geometry {
        x0,
        y0,
        sx: cw / ow,
        sy: ch / oh,
        flip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_resized_crops_stay_inside_and_respect_ranges() {
        let mut rng = Rng::new(&[1]);
        let crop = Crop::RandomResized {
            scale: (0.08, 1.0),
            ratio: (0.75, 4.0 / 3.0),
        };
        for _ in 0..500 {
            let g = draw(&crop, 0.5, 500, 375, 64, 64, &mut rng);
            let (cw, ch) = (g.sx * 64.0, g.sy * 64.0);
            assert!(
                g.x0 >= 0.0
                    && g.y0 >= 0.0
                    && g.x0 + cw <= 500.0 + 1e-9
                    && g.y0 + ch <= 375.0 + 1e-9
            );
            let frac = cw * ch / (500.0 * 375.0);
            assert!(frac <= 1.0 + 1e-9 && frac > 0.07, "{frac}");
        }
    }
}
