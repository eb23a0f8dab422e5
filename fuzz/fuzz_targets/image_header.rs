//! Arbitrary bytes as an encoded image: header sniffing must refuse without
//! panicking; an image it accepts is also decoded to RGB by the crate's
//! decoder (`codec::decode_rgb`, which the loader, teachers, `render` and
//! `validate` use) under a small pixel limit, and what decodes must have
//! the header's size (the decoder's documented contract).
#![no_main]

use libfuzzer_sys::fuzz_target;
use must_ds::codec::{decode_rgb, sniff_image, Rgb};

/// Pixels decoded at most: a 12 MiB RGB buffer (the default limit, about
/// 89 million pixels, is more than a fuzzer's memory).
const MAX_PIXELS: u64 = 4 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok((kind, w, h)) = sniff_image(data) else {
        return;
    };
    assert!(w > 0 && h > 0, "sniff_image accepted a {w}x{h} {kind:?}");
    let mut out = Rgb::default();
    if decode_rgb(data, &mut out, MAX_PIXELS).is_ok() {
        assert_eq!(
            out.data.len() as u64,
            out.width as u64 * out.height as u64 * 3,
            "decoded buffer does not match {}x{} RGB",
            out.width,
            out.height
        );
        assert_eq!(
            (out.width, out.height),
            (w, h),
            "a {kind:?} decodes to another size than its header's"
        );
    }
});
