//! The HPACK Huffman code (RFC 7541 §5.2, Appendix B): decoding only, since `encode` writes
//! raw strings.
//!
//! The code is canonical (codes of one length are consecutive, in symbol order), so decoding
//! needs no tree: a 1024-entry table indexed by the next 10 bits resolves every code of up to
//! 10 bits (all the common ASCII) in one lookup, and the rest are found by comparing the next
//! 32 bits against each longer length's last code. Both are built at compile time.

use super::HpackError;
use bytes::{BufMut, BytesMut};

/// `(code, bit length)` of symbols 0..=255 and EOS (256), from RFC 7541 Appendix B.
pub(crate) const CODES: [(u32, u8); 257] = [
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28),
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28),
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28),
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28),
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28),
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28),
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28),
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28),
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12),
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11),
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11),
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8),
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10),
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7),
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7),
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7),
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13),
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6),
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5),
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7),
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15),
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28),
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20),
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23),
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23),
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23),
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23),
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23),
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23),
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24),
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22),
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21),
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24),
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23),
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21),
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23),
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22),
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23),
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19),
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25),
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27),
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25),
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27),
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24),
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26),
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27),
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21),
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23),
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25),
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23),
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26),
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27),
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27),
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),
    (0x3fffffff, 30),
];

const EOS: u16 = 256;
const MAX_LEN: usize = 30;
/// Bits resolved by one lookup in [`PRIMARY`].
const PRIMARY_BITS: u32 = 10;

/// For each value of the next [`PRIMARY_BITS`] bits: `symbol << 4 | length` of the code they
/// start with, or 0 when that code is longer (no code is 0 bits, so 0 is free).
static PRIMARY: [u16; 1 << PRIMARY_BITS] = build_primary();

const fn build_primary() -> [u16; 1 << PRIMARY_BITS] {
    let mut table = [0u16; 1 << PRIMARY_BITS];
    let mut sym = 0;
    while sym < CODES.len() {
        let (code, len) = CODES[sym];
        let len = len as u32;
        if len <= PRIMARY_BITS {
            let spread = PRIMARY_BITS - len;
            let first = (code << spread) as usize;
            let mut fill = 0;
            while fill < 1 << spread {
                table[first + fill] = ((sym as u16) << 4) | len as u16;
                fill += 1;
            }
        }
        sym += 1;
    }
    table
}

/// The canonical-code view of [`CODES`] for codes longer than [`PRIMARY_BITS`].
struct Canonical {
    /// Per length: one past the last code of that length, left-aligned in 32 bits (as u64
    /// so that the last length's bound, 2^32, fits); a 32-bit window below it and at or
    /// above the shorter lengths' bound starts with a code of this length.
    limit: [u64; MAX_LEN + 1],
    /// Per length: the first code of that length.
    first: [u32; MAX_LEN + 1],
    /// Per length: where its symbols start in `symbols`.
    offset: [u16; MAX_LEN + 1],
    /// Symbols sorted by (length, symbol): with a canonical code, also sorted by code.
    symbols: [u16; 257],
}

static CANONICAL: Canonical = build_canonical();

const fn build_canonical() -> Canonical {
    let mut count = [0u16; MAX_LEN + 1];
    let mut first = [u32::MAX; MAX_LEN + 1];
    let mut sym = 0;
    while sym < CODES.len() {
        let (code, len) = CODES[sym];
        if first[len as usize] == u32::MAX {
            first[len as usize] = code;
        }
        count[len as usize] += 1;
        sym += 1;
    }
    let mut offset = [0u16; MAX_LEN + 1];
    let mut limit = [0u64; MAX_LEN + 1];
    let mut at = 0u16;
    let mut len = 1;
    while len <= MAX_LEN {
        offset[len] = at;
        at += count[len];
        if count[len] > 0 {
            limit[len] = ((first[len] as u64) + count[len] as u64) << (32 - len);
        } else {
            // No code of this length: the previous bound, so the search skips it.
            limit[len] = limit[len - 1];
        }
        len += 1;
    }
    let mut symbols = [0u16; 257];
    let mut next = offset;
    let mut sym = 0;
    while sym < CODES.len() {
        let len = CODES[sym].1 as usize;
        symbols[next[len] as usize] = sym as u16;
        next[len] += 1;
        sym += 1;
    }
    Canonical {
        limit,
        first,
        offset,
        symbols,
    }
}

/// `(symbol, length)` of the code that `window` (the next 32 bits, left-aligned) starts with.
#[inline]
fn lookup(window: u32) -> (u16, u32) {
    let entry = PRIMARY[(window >> (32 - PRIMARY_BITS)) as usize];
    if entry != 0 {
        return (entry >> 4, u32::from(entry & 0xf));
    }
    let c = &CANONICAL;
    let mut len = PRIMARY_BITS as usize + 1;
    // The last bound is 2^32, above any window, so this ends by MAX_LEN.
    while len < MAX_LEN && u64::from(window) >= c.limit[len] {
        len += 1;
    }
    let code = window >> (32 - len);
    let index = usize::from(c.offset[len]) + (code - c.first[len]) as usize;
    (c.symbols[index], len as u32)
}

/// Appends the decoding of `src` to `dst` (at most `src.len() * 8 / 5` bytes: the shortest
/// code is 5 bits).
pub(crate) fn decode(src: &[u8], dst: &mut BytesMut) -> Result<(), HpackError> {
    // `bits` valid bits, right-aligned in `acc`; refilled a byte at a time up to 56.
    let mut acc: u64 = 0;
    let mut bits: u32 = 0;
    let mut input = src.iter();
    loop {
        while bits <= 56 {
            match input.next() {
                Some(&b) => {
                    acc = (acc << 8) | u64::from(b);
                    bits += 8;
                }
                None => break,
            }
        }
        if bits == 0 {
            return Ok(());
        }
        // The next 32 bits; past the end, ones, so that padding reads as a prefix of EOS
        // (all ones), which no code shorter than 30 bits is.
        let window = if bits >= 32 {
            (acc >> (bits - 32)) as u32
        } else {
            ((acc << (32 - bits)) as u32) | (u32::MAX >> bits)
        };
        let (sym, len) = lookup(window);
        if len > bits {
            // The input ends inside this code: valid only as padding, fewer than 8 bits of
            // ones (the most significant bits of EOS).
            let ones = (1u64 << bits) - 1;
            if bits > 7 {
                return Err(HpackError::HuffmanPadding);
            }
            if acc & ones != ones {
                return Err(HpackError::HuffmanPaddingNotEos);
            }
            return Ok(());
        }
        if sym == EOS {
            return Err(HpackError::HuffmanEos);
        }
        dst.put_u8(sym as u8);
        bits -= len;
        acc &= (1u64 << bits) - 1;
    }
}
