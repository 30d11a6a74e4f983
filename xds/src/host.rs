//! The one host normaliser, shared by translation (config hosts), the request path (`Host`,
//! `:authority`) and TLS (SNI), so the three always agree on what a name is.
//!
//! A name is normalised by trimming surrounding whitespace, dropping a `:port` suffix (digits
//! only; an IPv6 literal keeps its brackets, `[::1]:8080` → `[::1]`), dropping one trailing dot
//! (`example.com.` is the same name), and lower-casing ASCII.

/// Longest name [`normalize`] handles in its stack buffer (DNS names are at most 253 bytes).
pub const MAX_HOST: usize = 256;

/// The name without whitespace, port and trailing dot; not yet lower-cased.
fn strip(host: &str) -> &str {
    let host = host.trim_matches(|c: char| c.is_ascii_whitespace());
    let without_port = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.split_once(':') {
            // One colon followed by digits only: a port. (Anything else is left alone and
            // simply matches no configured name.)
            Some((name, port))
                if !port.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                name
            }
            _ => host,
        }
    };
    without_port.strip_suffix('.').unwrap_or(without_port)
}

/// Normalises `host` for a lookup, copying into `buf` only when it must be lower-cased.
/// `None` for names longer than [`MAX_HOST`] that need a copy.
pub fn normalize<'a>(host: &'a str, buf: &'a mut [u8; MAX_HOST]) -> Option<&'a str> {
    let name = strip(host);
    if !name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some(name);
    }
    let out = buf.get_mut(..name.len())?;
    out.copy_from_slice(name.as_bytes());
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
}

/// Normalises a configured name (an owned copy).
pub fn normalized(host: &str) -> String {
    strip(host).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_the_same_way_borrowed_and_owned() {
        let cases = [
            ("example.com", "example.com"),
            ("Example.COM", "example.com"),
            ("example.com:8080", "example.com"),
            ("example.com.", "example.com"),
            ("Example.com.:80", "example.com"),
            (" example.com ", "example.com"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
            ("example.com:http", "example.com:http"),
            ("*.Example.com", "*.example.com"),
            ("", ""),
            ("*", "*"),
        ];
        for (input, want) in cases {
            let mut buf = [0u8; MAX_HOST];
            assert_eq!(normalize(input, &mut buf), Some(want), "{input:?}");
            assert_eq!(normalized(input), want, "{input:?}");
        }
    }

    #[test]
    fn overlong_names_needing_a_copy_are_refused() {
        let long = "A".repeat(MAX_HOST + 1);
        let mut buf = [0u8; MAX_HOST];
        assert_eq!(normalize(&long, &mut buf), None);
        let lower = "a".repeat(MAX_HOST + 1);
        assert_eq!(normalize(&lower, &mut buf), Some(lower.as_str()));
    }
}
