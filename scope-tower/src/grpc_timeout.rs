//! The `grpc-timeout` header: a caller's remaining time, as gRPC writes it on the wire.
//!
//! The value is at most eight ASCII digits followed by one unit: `H` hours, `M` minutes,
//! `S` seconds, `m` milliseconds, `u` microseconds, `n` nanoseconds (gRPC over HTTP/2,
//! "Requests"). [`encode`] picks the finest unit whose value fits in eight digits and rounds
//! down, so the header never promises more time than is left; [`decode`] accepts exactly the
//! grammar and nothing else.

use std::time::Duration;

use http::HeaderValue;

/// The header's name.
pub const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// The largest value the grammar allows: eight digits.
const MAX_VALUE: u64 = 99_999_999;

/// The units, finest first, with their length in nanoseconds.
const UNITS: [(u8, u128); 6] = [
    (b'n', 1),
    (b'u', 1_000),
    (b'm', 1_000_000),
    (b'S', 1_000_000_000),
    (b'M', 60 * 1_000_000_000),
    (b'H', 3_600 * 1_000_000_000),
];

/// Encodes `d` as a `grpc-timeout` value: the finest unit whose count fits in eight digits,
/// rounded down (never more than `d`). A duration beyond `99999999H` (about 11,400 years)
/// is written as `99999999H`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use taskscope_tower::grpc_timeout;
///
/// assert_eq!(grpc_timeout::encode(Duration::from_millis(150)), "150000u");
/// assert_eq!(grpc_timeout::encode(Duration::from_secs(30)), "30000000u");
/// assert_eq!(grpc_timeout::encode(Duration::from_secs(3600)), "3600000m");
/// assert_eq!(grpc_timeout::encode(Duration::ZERO), "0n");
/// ```
pub fn encode(d: Duration) -> HeaderValue {
    let nanos = d.as_nanos();
    // The finest unit whose count fits: a comparison each, then one division.
    let (unit, count) = UNITS
        .iter()
        .find(|&&(_, len)| nanos < (u128::from(MAX_VALUE) + 1) * len)
        .map_or((b'H', MAX_VALUE), |&(unit, len)| {
            // Fits: below 10^8.
            (unit, (nanos / len) as u64)
        });
    // At most eight digits and the unit, written from the end.
    let mut buf = [0u8; 9];
    buf[8] = unit;
    let mut at = 8;
    let mut n = count;
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    HeaderValue::from_bytes(&buf[at..]).expect("digits and a unit letter are a valid header value")
}

/// Decodes a `grpc-timeout` value; `None` if it does not follow the grammar (no digits,
/// more than eight, a sign, spaces, an unknown unit, anything after the unit).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use http::HeaderValue;
/// use taskscope_tower::grpc_timeout;
///
/// let v = HeaderValue::from_static("250m");
/// assert_eq!(grpc_timeout::decode(&v), Some(Duration::from_millis(250)));
/// assert_eq!(grpc_timeout::decode(&HeaderValue::from_static("-1S")), None);
/// assert_eq!(grpc_timeout::decode(&HeaderValue::from_static("123456789n")), None);
/// ```
pub fn decode(value: &HeaderValue) -> Option<Duration> {
    let bytes = value.as_bytes();
    let (&unit, digits) = bytes.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let count = digits
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    let len = UNITS.iter().find(|&&(u, _)| u == unit)?.1;
    let nanos = u128::from(count) * len;
    // At most 99999999H, about 3.6e20 ns: fits a Duration (u64 seconds).
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Option<Duration> {
        decode(&HeaderValue::from_str(s).unwrap())
    }

    #[test]
    fn encode_picks_the_finest_unit_that_fits_eight_digits() {
        assert_eq!(encode(Duration::from_nanos(99_999_999)), "99999999n");
        assert_eq!(encode(Duration::from_nanos(100_000_000)), "100000u");
        assert_eq!(encode(Duration::from_nanos(100_000_999)), "100000u");
        assert_eq!(encode(Duration::from_secs(99_999)), "99999000m");
        assert_eq!(encode(Duration::from_secs(100_000)), "100000S");
        assert_eq!(encode(Duration::from_secs(100_000_000)), "1666666M");
        assert_eq!(encode(Duration::from_secs(6_000_000_000)), "1666666H");
        assert_eq!(encode(Duration::MAX), "99999999H");
    }

    #[test]
    fn decode_reads_every_unit() {
        assert_eq!(dec("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(dec("2M"), Some(Duration::from_secs(120)));
        assert_eq!(dec("3S"), Some(Duration::from_secs(3)));
        assert_eq!(dec("4m"), Some(Duration::from_millis(4)));
        assert_eq!(dec("5u"), Some(Duration::from_micros(5)));
        assert_eq!(dec("6n"), Some(Duration::from_nanos(6)));
        assert_eq!(dec("0n"), Some(Duration::ZERO));
        assert_eq!(dec("00000010S"), Some(Duration::from_secs(10)));
        assert_eq!(
            dec("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
    }

    #[test]
    fn decode_refuses_what_the_grammar_does_not_allow() {
        for bad in [
            "",
            "S",
            "1",
            "10",
            "1s",
            "1h",
            "1x",
            "-1S",
            "+1S",
            " 1S",
            "1S ",
            "1 S",
            "1.5S",
            "123456789n",
            "1SS",
            "S1",
            "0x10S",
            "١S",
        ] {
            let Ok(v) = HeaderValue::from_str(bad) else {
                continue; // not even a header value
            };
            assert_eq!(decode(&v), None, "{bad:?}");
        }
        assert_eq!(decode(&HeaderValue::from_bytes(b"1\xffS").unwrap()), None);
    }

    /// A small deterministic generator (xorshift), so the property runs the same every time.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn round_trip_never_exceeds_the_true_remaining_time_and_loses_little() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for i in 0..200_000u32 {
            // Spread over every magnitude from nanoseconds to centuries.
            let bits = rng.next() % 64;
            let nanos = u128::from(rng.next() >> (63 - bits.min(63)));
            let nanos = if i % 7 == 0 { nanos * 1_000_000 } else { nanos };
            let d = Duration::new(
                (nanos / 1_000_000_000).min(u128::from(u64::MAX)) as u64,
                (nanos % 1_000_000_000) as u32,
            );
            let v = encode(d);
            let digits = v.len() - 1;
            assert!(digits <= 8, "{d:?} -> {v:?}");
            let back = decode(&v).expect("what encode writes, decode reads");
            assert!(back <= d, "{d:?} -> {v:?} -> {back:?}");
            // Rounding down to the chosen unit loses less than one part in 10^7 (the
            // unit is the finest whose count fits; the next finer one did not, so the
            // count is at least 10^8 / 1000 = 10^5 ... except where the unit is `n`).
            let lost = d - back;
            let capped = v == "99999999H";
            assert!(
                capped || lost.as_nanos() * 100_000 <= d.as_nanos() || lost.as_nanos() == 0,
                "{d:?} -> {v:?} lost {lost:?}"
            );
            // Encoding what was decoded is stable.
            assert_eq!(encode(back), v);
        }
    }
}
