//! The request id: kept when the client sent a usable one, made otherwise.

use http::header::HeaderValue;

/// A request id worth keeping: short, visible ASCII, no spaces or quotes that
/// could break a log line or a header.
pub fn valid_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b.iter()
            .all(|c| (0x21..=0x7e).contains(c) && *c != b'"' && *c != b'\\')
}

/// A fresh 128-bit request id, hex encoded. Not cryptographic: ids identify,
/// they do not authorise.
pub fn new_request_id() -> HeaderValue {
    use std::cell::Cell;
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        static STATE: Cell<(u64, u64)> = Cell::new({
            let s = std::collections::hash_map::RandomState::new();
            let mut h = s.build_hasher();
            h.write_u64(0x9e37_79b9_7f4a_7c15);
            let a = h.finish();
            let mut h = s.build_hasher();
            h.write_u64(a);
            (a | 1, h.finish() | 1)
        });
    }
    let (a, b) = STATE.with(|s| {
        // xorshift128+
        let (mut x, y) = s.get();
        x ^= x << 23;
        x ^= x >> 17;
        x ^= y ^ (y >> 26);
        s.set((y, x));
        let r1 = x.wrapping_add(y);
        let mut z = r1 ^ 0x2545_f491_4f6c_dd1d;
        z ^= z >> 33;
        z = z.wrapping_mul(0xff51_afd7_ed55_8ccd);
        (r1, z ^ (z >> 29))
    });
    let mut buf = [0u8; 32];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in a
        .to_be_bytes()
        .iter()
        .chain(b.to_be_bytes().iter())
        .enumerate()
    {
        buf[i * 2] = HEX[(byte >> 4) as usize];
        buf[i * 2 + 1] = HEX[(byte & 0xf) as usize];
    }
    // 32 lowercase hex digits are always a valid header value.
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
}
