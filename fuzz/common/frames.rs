//! What the HTTP/2 targets (`h2c`, `h2_server`) check of the bytes their code under test
//! writes, parsed here independently of that code.

/// Checks that `out` is a sequence of whole frames no larger than `max_frame`.
pub fn well_framed(mut out: &[u8], max_frame: usize) {
    while !out.is_empty() {
        assert!(out.len() >= 9, "a frame head cut short");
        let len = u32::from_be_bytes([0, out[0], out[1], out[2]]) as usize;
        assert!(len <= max_frame, "a frame of {len} bytes");
        assert!(out.len() >= 9 + len, "a frame cut short");
        out = &out[9 + len..];
    }
}
