//! The h2c client's HPACK decoder (`sluice_proxy::h2c::hpack`): arbitrary bytes, split into
//! several header blocks fed to one decoder, so the dynamic table carries from block to block.
//! The decoder never panics; a header-list limit only stops fields from being emitted (a
//! second decoder without a limit emits a list that the limited one's is a prefix of, whose
//! sizes stay within the limit, and both stay in sync afterwards); and every decoded list,
//! re-encoded with `encode` and decoded by a fresh decoder, comes back the same.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sluice_proxy::h2c::hpack::{encode, Decoder, HpackError};

const TABLE_SIZES: [usize; 4] = [0, 64, 256, 4096];
const LIST_LIMITS: [usize; 4] = [0, 100, 1000, 16 * 1024];

fn size(fields: &[(Bytes, Bytes)]) -> usize {
    fields.iter().map(|(n, v)| n.len() + v.len() + 32).sum()
}

fn decode(
    dec: &mut Decoder,
    block: &Bytes,
    limit: usize,
) -> (Vec<(Bytes, Bytes)>, Result<(), HpackError>) {
    let mut out = Vec::new();
    let result = dec.decode(block, limit, |n, v| out.push((n, v)));
    (out, result)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let table_size = TABLE_SIZES[usize::from(flags & 3)];
    let limit = LIST_LIMITS[usize::from((flags >> 2) & 3)];
    let mut limited = Decoder::new(table_size);
    let mut unlimited = Decoder::new(table_size);
    // Blocks: a length byte, then that many bytes (or what is left).
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let block = Bytes::copy_from_slice(&tail[..n]);
        rest = &tail[n..];

        let (all, full) = decode(&mut unlimited, &block, usize::MAX);
        let (some, part) = decode(&mut limited, &block, limit);
        assert!(size(&some) <= limit, "emitted past the list limit");
        assert_eq!(
            all[..some.len()],
            some[..],
            "the limit changed what was emitted"
        );
        match (&full, &part) {
            (Ok(()), Ok(())) => assert_eq!(all.len(), some.len()),
            (Ok(()), Err(HpackError::ListTooLarge)) => {
                let next = &all[some.len()];
                assert!(size(&some) + next.0.len() + next.1.len() + 32 > limit);
            }
            (Err(a), Err(b)) => assert_eq!(a, b),
            _ => panic!("with the limit {part:?}, without {full:?}"),
        }
        let Ok(()) = full else {
            // A connection error: the decoders are done.
            return;
        };

        // Round trip through `encode` (never indexed for every other field).
        let mut encoded = BytesMut::new();
        for (i, (name, value)) in all.iter().enumerate() {
            encode(name, value, i % 2 == 1, &mut encoded);
        }
        let (again, result) = decode(&mut Decoder::new(0), &encoded.freeze(), usize::MAX);
        assert_eq!(result, Ok(()), "encode's output did not decode");
        assert_eq!(again, all, "the round trip changed the fields");
    }
});
