//! The host normaliser: borrowed and owned forms agree, normalising is idempotent, the result
//! has no port, trailing dot or upper case left to strip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_xds::host::{normalize, normalized, MAX_HOST};

fuzz_target!(|data: &[u8]| {
    let Ok(host) = std::str::from_utf8(data) else {
        return;
    };
    let owned = normalized(host);
    let mut buf = [0u8; MAX_HOST];
    match normalize(host, &mut buf) {
        Some(borrowed) => assert_eq!(borrowed, owned, "borrowed vs owned for {host:?}"),
        // Only a name that needs a copy and does not fit the buffer is refused.
        None => assert!(owned.len() > MAX_HOST, "refused {host:?}"),
    }
    assert_eq!(normalized(&owned), owned, "not idempotent for {host:?}");
    assert!(!owned.bytes().any(|b| b.is_ascii_uppercase()), "{host:?}");
    assert!(!owned.ends_with('.'), "trailing dot left in {owned:?}");
    let ascii_space = |c: char| c.is_ascii_whitespace();
    assert_eq!(
        owned.trim_matches(ascii_space),
        owned,
        "whitespace left in {owned:?}"
    );
});
