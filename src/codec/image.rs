//! Image header sniffing: format, width and height without decoding pixels.

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
}
