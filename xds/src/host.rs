//! The one host normaliser, shared by translation (config hosts), the request path (`Host`,
//! `:authority`) and TLS (SNI), so the three always agree on what a name is.
//!
//! A name is normalised by trimming surrounding whitespace, dropping a `:port` suffix (digits
//! only; an IPv6 literal keeps its brackets, `[::1]:8080` → `[::1]`), dropping trailing dots
//! (`example.com.` is the same name), and lower-casing ASCII. Normalising is idempotent.

/// Longest name [`normalize`] handles in its stack buffer (DNS names are at most 253 bytes).
pub const MAX_HOST: usize = 256;

/// The name without whitespace, port and trailing dots; not yet lower-cased.
///
/// Idempotent (`strip(strip(h)) == strip(h)`), so a normalised name normalises to itself: a
/// config host and the same host sent back by a client always meet. Trailing dots and
/// whitespace go together and all at once (`"a. "`, `"a.."`), and once more after a port
/// (`"a.:80"`, `"a:1."`): the non-bracketed port rule needs exactly one colon, so it applies at
/// most once and the work stays linear in the length of the name.
fn strip(host: &str) -> &str {
    let trailing = |c: char| c == '.' || c.is_ascii_whitespace();
    let host = host.trim_matches(|c: char| c.is_ascii_whitespace());
    if host.starts_with('[') {
        // An IPv6 literal ends at its bracket; whatever follows (a port or junk) goes.
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host.trim_end_matches(trailing),
        };
    }
    let host = host.trim_end_matches(trailing);
    // One colon followed by digits only: a port. (Anything else is left alone and simply
    // matches no configured name.) Read from the end, so a name without a port (most end in a
    // letter) costs no search: `split_once(':')` cost about 250 instructions per request.
    let bytes = host.as_bytes();
    let port_len = bytes
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    match (bytes.len() - port_len).checked_sub(1) {
        Some(colon) if bytes[colon] == b':' && !bytes[..colon].contains(&b':') => {
            host[..colon].trim_end_matches(trailing)
        }
        _ => host,
    }
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
            ("a:b:80", "a:b:80"),
            ("example.com:", "example.com"),
            ("127.0.0.1:80", "127.0.0.1"),
            ("8080", "8080"),
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

    /// The port rule, read from the end, against its plain statement (split at the first colon;
    /// a port is all digits) on every short name over a small alphabet.
    #[test]
    fn the_port_rule_matches_its_statement() {
        fn by_statement(host: &str) -> &str {
            let trailing = |c: char| c == '.' || c.is_ascii_whitespace();
            let host = host
                .trim_matches(|c: char| c.is_ascii_whitespace())
                .trim_end_matches(trailing);
            match host.split_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
                    name.trim_end_matches(trailing)
                }
                _ => host,
            }
        }
        let alphabet = ['a', '1', ':', '.', ' '];
        let mut names = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> = names
                .iter()
                .flat_map(|n| alphabet.iter().map(move |c| format!("{n}{c}")))
                .collect();
            for name in &longer {
                assert_eq!(strip(name), by_statement(name), "{name:?}");
            }
            names = longer;
        }
    }

    /// Found by fuzzing (`fuzz/fuzz_targets/host.rs`): one trailing dot at a time, and a port
    /// exposed only once the dot went, left names that normalised again to something else, so
    /// a normalised config host could differ from the same name normalised on a request.
    #[test]
    fn normalising_is_idempotent() {
        let cases = [
            ("a..", "a"),
            ("a:1.", "a"),
            ("a.:80.", "a"),
            ("a. :80", "a"),
            (" a :80", "a"),
            ("A. ", "a"),
            ("[::1", "[::1"),
            ("[::1.", "[::1"),
            ("[::1]..", "[::1]"),
            (".", ""),
            (":80", ""),
            ("a:1:2.", "a:1:2"),
        ];
        for (input, want) in cases {
            let once = normalized(input);
            assert_eq!(once, want, "{input:?}");
            assert_eq!(normalized(&once), once, "{input:?}");
            let mut buf = [0u8; MAX_HOST];
            assert_eq!(normalize(input, &mut buf), Some(want), "{input:?}");
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
