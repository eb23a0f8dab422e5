//! Pixels between a decoded image and a model or a batch: the geometry that
//! maps output pixels to image pixels, the resize through it, and the
//! interleaved → planar copy. The loader (with augmentation) and the
//! teachers (with a fixed resize) share them; decoding itself, with its
//! pixel limit, is [`decode_rgb`](super::decode_rgb).
//!
//! One [`Geometry`] maps output pixels to image pixels: output column `x`
//! (before the flip) looks at image column `x0 + (x + 0.5) · sx`. The image is
//! resized through it (bilinear, SIMD), boxes are moved through its inverse
//! and clipped, masks and depth are sampled at the nearest map pixel (a map
//! always covers the whole image, whatever its resolution).

use fast_image_resize as fr;

use super::Rgb;

/// Output pixel → image pixel map of one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Image x of the output's left edge.
    pub x0: f64,
    /// Image y of the output's top edge.
    pub y0: f64,
    /// Image pixels per output pixel, across.
    pub sx: f64,
    /// Image pixels per output pixel, down.
    pub sy: f64,
    /// Mirrored left to right.
    pub flip: bool,
}
impl Geometry {
    /// The whole `w`×`h` image resized (stretched) to `ow`×`oh`, not flipped.
    pub fn resize(w: u32, h: u32, ow: u32, oh: u32) -> Self {
        Geometry {
            x0: 0.0,
            y0: 0.0,
            sx: w as f64 / ow as f64,
            sy: h as f64 / oh as f64,
            flip: false,
        }
    }

    /// Output x (before the flip) of image x.
    fn out_x(&self, x: f64) -> f64 {
        (x - self.x0) / self.sx
    }

    fn out_y(&self, y: f64) -> f64 {
        (y - self.y0) / self.sy
    }

    /// Moves a box `[x0, y0, x1, y1]` (image pixels) to output pixels,
    /// clipped; `None` when less than `min_size` output pixels remain across
    /// or down.
    pub fn map_box(&self, b: [f32; 4], ow: u32, oh: u32, min_size: f32) -> Option<[f32; 4]> {
        let (ow, oh) = (ow as f64, oh as f64);
        let mut x0 = self.out_x(b[0] as f64).clamp(0.0, ow);
        let mut x1 = self.out_x(b[2] as f64).clamp(0.0, ow);
        let y0 = self.out_y(b[1] as f64).clamp(0.0, oh);
        let y1 = self.out_y(b[3] as f64).clamp(0.0, oh);
        if self.flip {
            (x0, x1) = (ow - x1, ow - x0);
        }
        let keep = (x1 - x0) as f32 >= min_size && (y1 - y0) as f32 >= min_size;
        keep.then_some([x0 as f32, y0 as f32, x1 as f32, y1 as f32])
    }

    /// Nearest-pixel sampling of a `map_w`×`map_h` map that covers an image
    /// of `w`×`h`: for each output column the map column (flip applied) and
    /// for each output row the map row, or `map_w` / `map_h` where the output
    /// falls outside the map.
    pub fn map_axes(
        &self,
        (w, h): (u32, u32),
        (map_w, map_h): (u32, u32),
        (ow, oh): (u32, u32),
    ) -> (Vec<usize>, Vec<usize>) {
        let cols = axis(
            self.x0,
            self.sx,
            map_w as f64 / w as f64,
            ow,
            map_w,
            self.flip,
        );
        let rows = axis(self.y0, self.sy, map_h as f64 / h as f64, oh, map_h, false);
        (cols, rows)
    }
}

/// Map index of each of `n` output pixels along one axis (`len` outside).
fn axis(origin: f64, step: f64, scale: f64, n: u32, len: u32, flip: bool) -> Vec<usize> {
    (0..n)
        .map(|o| {
            let o = if flip { n - 1 - o } else { o };
            let i = (origin + (o as f64 + 0.5) * step) * scale;
            if i >= 0.0 && i < len as f64 {
                i as usize
            } else {
                len as usize
            }
        })
        .collect()
}

/// Reusable resize state of one worker.
#[derive(Default)]
pub struct Resizer {
    inner: fr::Resizer,
    dst: Vec<u8>,
}

/// The output region an image covers under a geometry:
/// (output x range, output y range), before the flip.
fn covered(g: &Geometry, w: u32, h: u32, ow: u32, oh: u32) -> ((u32, u32), (u32, u32)) {
    let span = |a: f64, b: f64, n: u32| -> (u32, u32) {
        let lo = a.round().clamp(0.0, n as f64) as u32;
        let hi = b.round().clamp(0.0, n as f64) as u32;
        (lo, hi.max(lo))
    };
    (
        span(g.out_x(0.0), g.out_x(w as f64), ow),
        span(g.out_y(0.0), g.out_y(h as f64), oh),
    )
}

impl Resizer {
    /// Renders `img` through `g` into an `ow`×`oh` interleaved RGB output
    /// (zeros where the image does not reach), *without* the flip (the
    /// planar copy applies it); the result is in `self.output()`.
    pub fn render(&mut self, img: &Rgb, g: &Geometry, ow: u32, oh: u32) -> Result<(), String> {
        let ((ax, bx), (ay, by)) = covered(g, img.width, img.height, ow, oh);
        let (rw, rh) = (bx - ax, by - ay);
        let full = (ow * oh * 3) as usize;
        let whole = (ax, ay, rw, rh) == (0, 0, ow, oh);
        if whole {
            self.dst.resize(full, 0);
        } else {
            self.dst.clear();
            self.dst.resize(full, 0);
        }
        if rw == 0 || rh == 0 {
            return Ok(());
        }
        let src = fr::images::ImageRef::new(img.width, img.height, &img.data, fr::PixelType::U8x3)
            .map_err(|e| e.to_string())?;
        let left = (g.x0 + ax as f64 * g.sx).clamp(0.0, img.width as f64);
        let top = (g.y0 + ay as f64 * g.sy).clamp(0.0, img.height as f64);
        let cw = (rw as f64 * g.sx).min(img.width as f64 - left).max(1e-3);
        let ch = (rh as f64 * g.sy).min(img.height as f64 - top).max(1e-3);
        let opts = fr::ResizeOptions::new()
            .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear))
            .crop(left, top, cw, ch);
        if whole {
            let mut dst =
                fr::images::Image::from_slice_u8(ow, oh, &mut self.dst, fr::PixelType::U8x3)
                    .map_err(|e| e.to_string())?;
            self.inner
                .resize(&src, &mut dst, &opts)
                .map_err(|e| e.to_string())?;
        } else {
            let mut part = fr::images::Image::new(rw, rh, fr::PixelType::U8x3);
            self.inner
                .resize(&src, &mut part, &opts)
                .map_err(|e| e.to_string())?;
            let p = part.buffer();
            for y in 0..rh as usize {
                let d = ((ay as usize + y) * ow as usize + ax as usize) * 3;
                let s = y * rw as usize * 3;
                self.dst[d..d + rw as usize * 3].copy_from_slice(&p[s..s + rw as usize * 3]);
            }
        }
        Ok(())
    }

    /// The last rendered output, interleaved RGB.
    pub fn output(&self) -> &[u8] {
        &self.dst
    }
}

/// Interleaved RGB rows `w` wide → three planes (`out`), each value through
/// `f(channel, byte)`, rows mirrored when `flip`.
pub fn to_planar<T: Copy>(
    px: &[u8],
    out: &mut [T],
    w: usize,
    flip: bool,
    f: impl Fn(usize, u8) -> T,
) {
    let hw = px.len() / 3;
    let (r, rest) = out.split_at_mut(hw);
    let (g, b) = rest.split_at_mut(hw);
    for (k, p) in px.chunks_exact(3).enumerate() {
        (r[k], g[k], b[k]) = (f(0, p[0]), f(1, p[1]), f(2, p[2]));
    }
    if flip {
        for plane in [r, g, b] {
            plane.chunks_exact_mut(w).for_each(<[T]>::reverse);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_follow_crop_and_flip() {
        let g = Geometry {
            x0: 10.0,
            y0: 20.0,
            sx: 2.0,
            sy: 2.0,
            flip: false,
        };
        assert_eq!(
            g.map_box([10.0, 20.0, 30.0, 40.0], 100, 100, 1.0),
            Some([0.0, 0.0, 10.0, 10.0])
        );
        let f = Geometry { flip: true, ..g };
        assert_eq!(
            f.map_box([10.0, 20.0, 30.0, 40.0], 100, 100, 1.0),
            Some([90.0, 0.0, 100.0, 10.0])
        );
        // Outside the window: dropped.
        assert_eq!(g.map_box([0.0, 0.0, 9.0, 9.0], 100, 100, 1.0), None);
    }
}
