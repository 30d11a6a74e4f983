//! Go's `time.ParseDuration`, which Knative uses for every duration key and annotation.
//!
//! Accepted: an optional sign, then one or more `<decimal><unit>` parts (`1h30m`, `1.5s`, `.5m`,
//! `250ms`), units `ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`; the bare string `0`. The result
//! is signed nanoseconds, so negative values reach validation and are reported as out of range
//! rather than as malformed, as Knative does.

/// 2^63: the magnitude limit of Go's `time.Duration` (int64 nanoseconds).
const LIMIT: u128 = 1 << 63;

/// Parses `s` as Go does; `None` when Go would return an error.
pub(crate) fn parse(s: &str) -> Option<i128> {
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let first = rest.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return None;
        }
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part: u128 = if int_len == 0 {
            0
        } else {
            let digits = &rest[..int_len];
            // Go reports an overflow for a leading integer beyond 2^63.
            let v: u128 = digits.parse().ok()?;
            if v > LIMIT {
                return None;
            }
            v
        };
        rest = &rest[int_len..];
        let mut fraction: u128 = 0;
        let mut scale: f64 = 1.0;
        let mut frac_len = 0;
        if let Some(after_dot) = rest.strip_prefix('.') {
            rest = after_dot;
            let mut overflow = false;
            for b in rest.bytes().take_while(u8::is_ascii_digit) {
                frac_len += 1;
                if overflow {
                    continue;
                }
                let next = fraction * 10 + u128::from(b - b'0');
                // Go keeps digits while the fraction stays within 2^63. `>=` here is an
                // equivalent mutant (excluded in .cargo/mutants.toml): it differs only when the
                // digits so far are exactly 2^63, and dropping that digit with its power of ten
                // gives the same f64 product (checked: every unit, 0 to 59 leading zeros).
                if next > LIMIT {
                    overflow = true;
                    continue;
                }
                fraction = next;
                scale *= 10.0;
            }
            rest = &rest[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return None;
        }
        let unit_len = rest
            .char_indices()
            .find(|&(_, c)| c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let unit: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        // Go adds the fraction in floating point, truncating (nothing without one). No bound
        // check is needed between the two: the sum only grows.
        let value = int_part.checked_mul(unit)? + (fraction as f64 * (unit as f64 / scale)) as u128;
        if value > LIMIT {
            return None;
        }
        total += value;
        if total > LIMIT {
            return None;
        }
    }
    if negative {
        Some(-(total as i128))
    } else if total > LIMIT - 1 {
        None
    } else {
        Some(total as i128)
    }
}

/// Nanoseconds per second.
pub(crate) const NANOS_PER_SEC: i128 = 1_000_000_000;

/// Go's `Duration.Round(time.Second)` for non-negative durations: halves round up.
pub(crate) fn round_to_second(nanos: i128) -> i128 {
    let r = nanos.rem_euclid(NANOS_PER_SEC);
    if r * 2 < NANOS_PER_SEC {
        nanos - r
    } else {
        nanos - r + NANOS_PER_SEC
    }
}

/// A non-negative nanosecond count as a `Duration` (negative values become zero).
pub(crate) fn to_duration(nanos: i128) -> std::time::Duration {
    let n = u64::try_from(nanos.max(0)).unwrap_or(u64::MAX);
    std::time::Duration::from_nanos(n)
}

#[cfg(test)]
mod tests;
