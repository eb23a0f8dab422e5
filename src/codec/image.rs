//! Images: header sniffing (format, width and height without decoding
//! pixels) and decoding to RGB under a pixel limit, checked from the header
//! before any allocation, for everything that decodes (the loader,
//! teachers, `render`, `validate`).

use std::sync::atomic::{AtomicU64, Ordering};

/// The default pixel limit: Pillow's (`Image.MAX_IMAGE_PIXELS`, about 89
/// million pixels, a 1 GiB RGBA image).
pub const DEFAULT_MAX_PIXELS: u64 = 89_478_485;

/// The process-wide pixel limit; 0: not set yet.
static MAX_PIXELS: AtomicU64 = AtomicU64::new(0);

/// The pixel limit in force: set by [`set_max_image_pixels`], else the
/// environment variable `MUST_MAX_IMAGE_PIXELS`, else
/// [`DEFAULT_MAX_PIXELS`].
pub fn max_image_pixels() -> u64 {
    match MAX_PIXELS.load(Ordering::Relaxed) {
        0 => {
            let n = std::env::var("MUST_MAX_IMAGE_PIXELS")
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|&n| n > 0)
                .unwrap_or(DEFAULT_MAX_PIXELS);
            MAX_PIXELS.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

/// Sets the process-wide pixel limit (at least 1).
pub fn set_max_image_pixels(n: u64) {
    MAX_PIXELS.store(n.max(1), Ordering::Relaxed);
}

/// Checks a `width`×`height` image against `max_pixels`.
pub fn check_pixels(width: u32, height: u32, max_pixels: u64) -> Result<(), String> {
    let n = width as u64 * height as u64;
    if n > max_pixels {
        return Err(format!(
            "{width}x{height} is {n} pixels, over the limit of {max_pixels} (a decompression bomb or a very large image; raise the limit with MUST_MAX_IMAGE_PIXELS or --max-image-pixels)"
        ));
    }
    Ok(())
}

/// A decoded RGB image, row-major, 3 bytes a pixel.
#[derive(Debug, Default)]
pub struct Rgb {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Pixels.
    pub data: Vec<u8>,
}

/// Decodes an image into `out` (reusing its buffer): JPEG with zune-jpeg in
/// strict mode (a cut or corrupt stream is an error, not grey pixels),
/// other accepted formats with the `image` crate. The size is read from
/// the header first and checked against `max_pixels` before anything is
/// allocated; the decoded size must match the header's.
pub fn decode_rgb(bytes: &[u8], out: &mut Rgb, max_pixels: u64) -> Result<(), String> {
    let (kind, hw, hh) = sniff_image(bytes)?;
    check_pixels(hw, hh, max_pixels)?;
    if kind == ImageKind::Jpeg {
        let opts = zune_core::options::DecoderOptions::default()
            .jpeg_set_out_colorspace(zune_core::colorspace::ColorSpace::RGB)
            .set_max_width(1 << 16)
            .set_max_height(1 << 16)
            .set_strict_mode(true);
        let mut d = zune_jpeg::JpegDecoder::new_with_options(
            zune_core::bytestream::ZCursor::new(bytes),
            opts,
        );
        d.decode_headers().map_err(|e| format!("JPEG: {e}"))?;
        let (w, h) = d.dimensions().ok_or("JPEG: no dimensions")?;
        check_pixels(w as u32, h as u32, max_pixels)?;
        let n = d.output_buffer_size().ok_or("JPEG: image too large")?;
        if n != w * h * 3 {
            return Err(format!("JPEG: {n} bytes to decode for {w}x{h} RGB"));
        }
        out.data.resize(n, 0);
        d.decode_into(&mut out.data)
            .map_err(|e| format!("JPEG: {e}"))?;
        (out.width, out.height) = (w as u32, h as u32);
        return Ok(());
    }
    let mut reader = ::image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut limits = ::image::Limits::default();
    limits.max_image_width = Some(hw);
    limits.max_image_height = Some(hh);
    // RGBA at 16 bits a channel, the widest the accepted formats decode to.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).max(1 << 20));
    reader.limits(limits);
    let img = reader.decode().map_err(|e| e.to_string())?.into_rgb8();
    if img.dimensions() != (hw, hh) {
        return Err(format!(
            "decodes to {}x{} but its header says {hw}x{hh}",
            img.width(),
            img.height()
        ));
    }
    (out.width, out.height) = img.dimensions();
    out.data = img.into_raw();
    Ok(())
}

/// Encoded image formats an image shard may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// JPEG.
    Jpeg,
    /// PNG.
    Png,
    /// WebP.
    Webp,
    /// GIF.
    Gif,
    /// BMP.
    Bmp,
    /// TIFF.
    Tiff,
}

/// Reads the format and pixel size from an encoded image's header.
/// Returns a reason when the bytes are not an image of a supported format.
pub fn sniff_image(bytes: &[u8]) -> Result<(ImageKind, u32, u32), String> {
    use imagesize::ImageType as T;
    let kind = match imagesize::image_type(bytes) {
        Ok(T::Jpeg) => ImageKind::Jpeg,
        Ok(T::Png) => ImageKind::Png,
        Ok(T::Webp) => ImageKind::Webp,
        Ok(T::Gif) => ImageKind::Gif,
        Ok(T::Bmp) => ImageKind::Bmp,
        Ok(T::Tiff) => ImageKind::Tiff,
        Ok(other) => return Err(format!("format {other:?} is not accepted")),
        Err(_) => {
            return Err(if bytes.is_empty() {
                "empty file".into()
            } else {
                "unrecognized header".into()
            })
        }
    };
    let size =
        imagesize::blob_size(bytes).map_err(|e| format!("unreadable {kind:?} header: {e}"))?;
    let (w, h) = (size.width, size.height);
    if w == 0 || h == 0 || w > u32::MAX as usize || h > u32::MAX as usize {
        return Err(format!("invalid pixel size {w}x{h}"));
    }
    Ok((kind, w as u32, h as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_jpeg_size_and_refuses_text() {
        let jpeg = include_bytes!("../../data/photos/chelsea.jpg");
        let (kind, w, h) = sniff_image(jpeg).unwrap();
        assert_eq!(kind, ImageKind::Jpeg);
        assert!(w > 100 && h > 100);
        assert!(sniff_image(b"hello, I am text").is_err());
        assert!(sniff_image(&jpeg[..4]).is_err());
    }

    #[test]
    fn decodes_under_a_pixel_limit_and_refuses_cut_streams() {
        let jpeg = include_bytes!("../../data/photos/chelsea.jpg");
        let (_, w, h) = sniff_image(jpeg).unwrap();
        let mut rgb = Rgb::default();
        decode_rgb(jpeg, &mut rgb, DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!(
            (rgb.width, rgb.height, rgb.data.len()),
            (w, h, (w * h * 3) as usize)
        );
        let err = decode_rgb(jpeg, &mut Rgb::default(), (w * h - 1) as u64).unwrap_err();
        assert!(err.contains("over the limit"), "{err}");
        let cut = &jpeg[..jpeg.len() * 2 / 5];
        assert!(decode_rgb(cut, &mut Rgb::default(), DEFAULT_MAX_PIXELS).is_err());
    }
}
