//! HPACK (RFC 7541) for our HTTP/2 client (h2c upstreams) and server (clients): a [`Decoder`]
//! for the peer's header blocks, with the connection's dynamic table, and a stateless
//! [`encode`] for ours.
//!
//! Our encoder never inserts into the peer's dynamic table (literals "without indexing"), so
//! it needs no state and never sends a table size update; heads from a proxy rarely repeat
//! enough for indexing to pay for its bookkeeping, and the static table catches the common
//! pseudo-header values.

mod huffman;

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("hpack: integer too large")]
    IntegerOverflow,
    #[error("hpack: header block truncated")]
    Truncated,
    #[error("hpack: index 0")]
    ZeroIndex,
    #[error("hpack: index {0} past the table")]
    BadIndex(usize),
    #[error("hpack: huffman padding longer than 7 bits")]
    HuffmanPadding,
    #[error("hpack: huffman padding not a prefix of eos")]
    HuffmanPaddingNotEos,
    #[error("hpack: huffman string contains eos")]
    HuffmanEos,
    #[error("hpack: table size update to {size} above the advertised {max}")]
    TableSizeTooLarge { size: usize, max: usize },
    #[error("hpack: table size update after a header field")]
    LateTableSizeUpdate,
    #[error("hpack: header list too large")]
    ListTooLarge,
    #[error("hpack: decoder failed on an earlier block")]
    Failed,
}

/// RFC 7541 §4.1: an entry's size counts 32 bytes of overhead besides its name and value.
const ENTRY_OVERHEAD: usize = 32;
/// The initial SETTINGS_HEADER_TABLE_SIZE (RFC 9113 §6.5.2): the peer's encoder uses up to
/// this much until it has seen our SETTINGS.
const DEFAULT_TABLE_SIZE: usize = 4096;
/// Integers above this are rejected: no length, index or table size we accept comes near it,
/// and it keeps all arithmetic on them far from overflow.
const MAX_INT: u64 = 1 << 28;

/// Decodes the header blocks of one connection (the dynamic table lives as long as the
/// connection).
pub struct Decoder {
    /// Newest entry first: HPACK index 62 is `table[0]`.
    table: VecDeque<(Bytes, Bytes)>,
    /// Sum of the entries' sizes (§4.1).
    size: usize,
    /// The table's current maximum, as last set by the peer (§4.2).
    max_size: usize,
    /// The SETTINGS_HEADER_TABLE_SIZE we advertised: the bound on the peer's size updates.
    limit: usize,
    /// Huffman output of the current block: one allocation shared by the block's decoded
    /// strings, each split off as `Bytes`.
    scratch: BytesMut,
    /// Set by any error but `ListTooLarge`: the table may be out of sync with the peer.
    failed: bool,
    /// The list size (§4.1) of the last block decoded, counted to its end even past the limit.
    last_list_size: usize,
}

impl Decoder {
    /// `max_table_size`: the SETTINGS_HEADER_TABLE_SIZE we advertised (the peer's size
    /// updates may not exceed it).
    pub fn new(max_table_size: usize) -> Decoder {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            // Below the default, the peer must open its next block with a size update to at
            // most our value; above it, it may raise the size with one.
            max_size: max_table_size.min(DEFAULT_TABLE_SIZE),
            limit: max_table_size,
            scratch: BytesMut::new(),
            failed: false,
            last_list_size: 0,
        }
    }

    /// Decodes one complete header block (a HEADERS payload plus its CONTINUATIONs, already
    /// joined, padding and priority already removed).
    ///
    /// Calls `emit(name, value)` for each field in order. Names/values are not validated here
    /// beyond HPACK (the caller checks them); names from the static table are
    /// `Bytes::from_static`, literal strings without Huffman are zero-copy slices of `block`,
    /// dynamic-table hits are cheap `Bytes` clones.
    ///
    /// The whole block is always decoded when it is well formed, even past `max_list_size`,
    /// because the dynamic table must stay in sync with the peer's encoder; in that case
    /// fields stop being emitted once the list size (RFC 7541 §4.1: name len + value len + 32
    /// per field) exceeds `max_list_size`, and the result is `Err(HpackError::ListTooLarge)`
    /// at the end. Any other error is a connection error (COMPRESSION_ERROR) and the decoder
    /// is unusable afterwards.
    pub fn decode(
        &mut self,
        block: &Bytes,
        max_list_size: usize,
        emit: impl FnMut(Bytes, Bytes),
    ) -> Result<(), HpackError> {
        if self.failed {
            return Err(HpackError::Failed);
        }
        let result = self.decode_block(block, max_list_size, emit);
        if matches!(result, Err(ref e) if *e != HpackError::ListTooLarge) {
            self.failed = true;
        }
        result
    }

    /// The list size (RFC 7541 §4.1) of the last block [`decode`](Self::decode) finished,
    /// counted past `max_list_size` too: how far a block that was too large went.
    pub fn last_list_size(&self) -> usize {
        self.last_list_size
    }

    fn decode_block(
        &mut self,
        block: &Bytes,
        max_list_size: usize,
        mut emit: impl FnMut(Bytes, Bytes),
    ) -> Result<(), HpackError> {
        let mut src = Cursor { block, pos: 0 };
        let mut list_size: usize = 0;
        let mut too_large = false;
        let mut seen_field = false;
        while let Some(&first) = block.get(src.pos) {
            let (name, value) = if first & 0x80 != 0 {
                // §6.1 indexed field.
                let index = src.integer(7)?;
                self.get(index)?
            } else if first & 0xc0 == 0x40 {
                // §6.2.1 literal with incremental indexing.
                let (name, value, indexed_name) = self.literal(&mut src, 6)?;
                self.insert(name, value, indexed_name)
            } else if first & 0xe0 == 0x20 {
                // §6.3 dynamic table size update: only before the block's first field (§4.2).
                if seen_field {
                    return Err(HpackError::LateTableSizeUpdate);
                }
                let size = src.integer(5)?;
                if size > self.limit {
                    return Err(HpackError::TableSizeTooLarge {
                        size,
                        max: self.limit,
                    });
                }
                self.max_size = size;
                self.evict(0);
                continue;
            } else {
                // §6.2.2 without indexing (0000) or §6.2.3 never indexed (0001). The
                // never-indexed mark is not passed on (`emit` has no flag for it, and h2 0.4,
                // which this replaces, drops it too), though §6.2.3 asks intermediaries to
                // keep it.
                let (name, value, _) = self.literal(&mut src, 4)?;
                (name, value)
            };
            seen_field = true;
            list_size = list_size
                .saturating_add(name.len() + value.len())
                .saturating_add(ENTRY_OVERHEAD);
            if !too_large {
                if list_size > max_list_size {
                    too_large = true;
                } else {
                    emit(name, value);
                }
            }
        }
        self.last_list_size = list_size;
        if too_large {
            return Err(HpackError::ListTooLarge);
        }
        Ok(())
    }

    /// A literal field's name (an index with `prefix` bits, or a string when 0) and value, and
    /// whether the name came from a table.
    fn literal(
        &mut self,
        src: &mut Cursor<'_>,
        prefix: u8,
    ) -> Result<(Bytes, Bytes, bool), HpackError> {
        let index = src.integer(prefix)?;
        let (name, indexed) = if index == 0 {
            (self.string(src)?, false)
        } else {
            (self.name(index)?, true)
        };
        let value = self.string(src)?;
        Ok((name, value, indexed))
    }

    /// A string literal (§5.2): a slice of the block, or its Huffman decoding in `scratch`.
    fn string(&mut self, src: &mut Cursor<'_>) -> Result<Bytes, HpackError> {
        let huffman = src.block.get(src.pos).is_some_and(|b| b & 0x80 != 0);
        let len = src.integer(7)?;
        let end = src
            .pos
            .checked_add(len)
            .filter(|&end| end <= src.block.len())
            .ok_or(HpackError::Truncated)?;
        let start = src.pos;
        src.pos = end;
        if !huffman {
            return Ok(src.block.slice(start..end));
        }
        let raw = &src.block[start..end];
        // Room for every Huffman string left in the block at once (codes are 5 bits at
        // least), so one allocation serves the whole block.
        if self.scratch.capacity() < len * 8 / 5 {
            self.scratch.reserve((src.block.len() - start) * 8 / 5);
        }
        huffman::decode(raw, &mut self.scratch)?;
        Ok(self.scratch.split().freeze())
    }

    /// The entry at HPACK `index` (1-based; the static table, then the dynamic one).
    fn get(&self, index: usize) -> Result<(Bytes, Bytes), HpackError> {
        if index == 0 {
            return Err(HpackError::ZeroIndex);
        }
        if let Some(&(name, value)) = STATIC.get(index - 1) {
            return Ok((Bytes::from_static(name), Bytes::from_static(value)));
        }
        self.table
            .get(index - STATIC.len() - 1)
            .cloned()
            .ok_or(HpackError::BadIndex(index))
    }

    /// The name of the entry at HPACK `index`, without touching its value.
    fn name(&self, index: usize) -> Result<Bytes, HpackError> {
        if index == 0 {
            return Err(HpackError::ZeroIndex);
        }
        if let Some(&(name, _)) = STATIC.get(index - 1) {
            return Ok(Bytes::from_static(name));
        }
        self.table
            .get(index - STATIC.len() - 1)
            .map(|(name, _)| name.clone())
            .ok_or(HpackError::BadIndex(index))
    }

    /// Adds a field to the dynamic table (§4.4) and returns it as the table holds it.
    /// `indexed_name`: the name came from the static or dynamic table, not the block.
    fn insert(&mut self, name: Bytes, value: Bytes, indexed_name: bool) -> (Bytes, Bytes) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max_size {
            // Larger than the whole table: it empties the table and is not added.
            self.table.clear();
            self.size = 0;
            return (name, value);
        }
        self.evict(size);
        // Copied into an allocation of the entry's own, so that the table (which lives as long
        // as the connection) does not pin whole header blocks or Huffman scratch buffers.
        // A static name stays static; a name from another entry shares that entry's copy.
        let entry = if indexed_name {
            (name, Bytes::copy_from_slice(&value))
        } else {
            let mut both = BytesMut::with_capacity(name.len() + value.len());
            both.extend_from_slice(&name);
            both.extend_from_slice(&value);
            let name = both.split_to(name.len()).freeze();
            (name, both.freeze())
        };
        self.size += size;
        self.table.push_front(entry.clone());
        entry
    }

    /// Drops the oldest entries until `room` more bytes fit under the maximum size.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            match self.table.pop_back() {
                Some((name, value)) => self.size -= name.len() + value.len() + ENTRY_OVERHEAD,
                None => break,
            }
        }
    }

    /// The dynamic table, newest first, for tests.
    #[cfg(test)]
    fn entries(&self) -> Vec<(&[u8], &[u8])> {
        self.table.iter().map(|(n, v)| (&n[..], &v[..])).collect()
    }

    /// The dynamic table's size (§4.1), for tests.
    #[cfg(test)]
    fn table_size(&self) -> usize {
        self.size
    }
}

/// A read position in a header block.
struct Cursor<'a> {
    block: &'a Bytes,
    pos: usize,
}

impl Cursor<'_> {
    /// An integer with a `prefix`-bit prefix (§5.1), starting at the current byte.
    #[inline]
    fn integer(&mut self, prefix: u8) -> Result<usize, HpackError> {
        let mask = (1u8 << prefix) - 1;
        let first = *self.block.get(self.pos).ok_or(HpackError::Truncated)?;
        self.pos += 1;
        let mut value = u64::from(first & mask);
        if value < u64::from(mask) {
            return Ok(value as usize);
        }
        // At most 5 continuation bytes (35 bits, so no overflow in u64); more is either an
        // absurd value or padding with zero continuations, and either way not a peer we serve.
        let mut shift = 0;
        loop {
            let b = *self.block.get(self.pos).ok_or(HpackError::Truncated)?;
            self.pos += 1;
            value += u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 28 {
                return Err(HpackError::IntegerOverflow);
            }
        }
        if value > MAX_INT {
            return Err(HpackError::IntegerOverflow);
        }
        Ok(value as usize)
    }
}

/// Encodes every field of `headers` ([`encode`] each).
pub fn encode_map(headers: &http::HeaderMap, dst: &mut BytesMut) {
    for (name, value) in headers {
        encode(
            name.as_str().as_bytes(),
            value.as_bytes(),
            value.is_sensitive(),
            dst,
        );
    }
}

/// Encodes one header field, statelessly (we never insert into the peer's dynamic table, so we
/// never need to send table size updates): a fully indexed static entry when (name, value) is
/// in the static table (e.g. `:method: GET`, `:scheme: http`, `:path: /`, `:status: 200`),
/// otherwise "literal without indexing" (or "never indexed" when `sensitive`) with the name as
/// a static-table index when the name is in the static table, and raw (non-Huffman) strings.
pub fn encode(name: &[u8], value: &[u8], sensitive: bool, dst: &mut BytesMut) {
    // The integers go through a stack buffer: `BufMut::put_u8` costs a bounds check and a
    // copy call per byte, and a field has two or three integers of a byte or two.
    let mut ints = Integers::default();
    let name_index = static_name_index(name);
    if let Some(first) = name_index {
        if let Some(index) = static_value_index(first, value) {
            ints.push(index, 7, 0x80);
            dst.extend_from_slice(ints.bytes());
            return;
        }
    }
    // §6.2.3 never indexed (0001) keeps intermediaries from indexing it too; §6.2.2 (0000).
    let flags = if sensitive { 0x10 } else { 0x00 };
    dst.reserve(name.len() + value.len() + 2 * MAX_INTEGER_LEN + 1);
    match name_index {
        Some(index) => ints.push(index, 4, flags),
        None => {
            ints.push(0, 4, flags);
            // A raw string literal (§5.2, H = 0).
            ints.push(name.len(), 7, 0);
            dst.extend_from_slice(ints.bytes());
            dst.extend_from_slice(name);
            ints = Integers::default();
        }
    }
    ints.push(value.len(), 7, 0);
    dst.extend_from_slice(ints.bytes());
    dst.extend_from_slice(value);
}

/// The most bytes a 64-bit integer takes (§5.1: the prefix byte, then 7 bits per byte).
const MAX_INTEGER_LEN: usize = 10;

/// Up to two encoded integers, written before the bytes that follow them.
#[derive(Default)]
struct Integers {
    buf: [u8; 2 * MAX_INTEGER_LEN],
    len: usize,
}

impl Integers {
    /// An integer with a `prefix`-bit prefix (§5.1), `flags` in the first byte's other bits.
    fn push(&mut self, mut value: usize, prefix: u8, flags: u8) {
        let mask = (1usize << prefix) - 1;
        if value < mask {
            self.put(flags | value as u8);
            return;
        }
        self.put(flags | mask as u8);
        value -= mask;
        while value >= 0x80 {
            self.put(0x80 | (value & 0x7f) as u8);
            value >>= 7;
        }
        self.put(value as u8);
    }

    fn put(&mut self, byte: u8) {
        // Never full: two integers of at most `MAX_INTEGER_LEN` bytes each.
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The static table (RFC 7541 Appendix A); HPACK index `i` is `STATIC[i - 1]`.
static STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// The first static-table index with this name (a `match`, compiled to a length switch and
/// comparisons, not a scan of the table).
fn static_name_index(name: &[u8]) -> Option<usize> {
    Some(match name {
        b":authority" => 1,
        b":method" => 2,
        b":path" => 4,
        b":scheme" => 6,
        b":status" => 8,
        b"accept-charset" => 15,
        b"accept-encoding" => 16,
        b"accept-language" => 17,
        b"accept-ranges" => 18,
        b"accept" => 19,
        b"access-control-allow-origin" => 20,
        b"age" => 21,
        b"allow" => 22,
        b"authorization" => 23,
        b"cache-control" => 24,
        b"content-disposition" => 25,
        b"content-encoding" => 26,
        b"content-language" => 27,
        b"content-length" => 28,
        b"content-location" => 29,
        b"content-range" => 30,
        b"content-type" => 31,
        b"cookie" => 32,
        b"date" => 33,
        b"etag" => 34,
        b"expect" => 35,
        b"expires" => 36,
        b"from" => 37,
        b"host" => 38,
        b"if-match" => 39,
        b"if-modified-since" => 40,
        b"if-none-match" => 41,
        b"if-range" => 42,
        b"if-unmodified-since" => 43,
        b"last-modified" => 44,
        b"link" => 45,
        b"location" => 46,
        b"max-forwards" => 47,
        b"proxy-authenticate" => 48,
        b"proxy-authorization" => 49,
        b"range" => 50,
        b"referer" => 51,
        b"refresh" => 52,
        b"retry-after" => 53,
        b"server" => 54,
        b"set-cookie" => 55,
        b"strict-transport-security" => 56,
        b"transfer-encoding" => 57,
        b"user-agent" => 58,
        b"vary" => 59,
        b"via" => 60,
        b"www-authenticate" => 61,
        _ => return None,
    })
}

/// The static-table index of (name, value), given the name's first index.
fn static_value_index(first: usize, value: &[u8]) -> Option<usize> {
    match (first, value) {
        (2, b"GET") => Some(2),
        (2, b"POST") => Some(3),
        (4, b"/") => Some(4),
        (4, b"/index.html") => Some(5),
        (6, b"http") => Some(6),
        (6, b"https") => Some(7),
        (8, b"200") => Some(8),
        (8, b"204") => Some(9),
        (8, b"206") => Some(10),
        (8, b"304") => Some(11),
        (8, b"400") => Some(12),
        (8, b"404") => Some(13),
        (8, b"500") => Some(14),
        (16, b"gzip, deflate") => Some(16),
        // Every other name's entry has an empty value.
        (2 | 4 | 6 | 8 | 16, _) => None,
        (_, b"") => Some(first),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
