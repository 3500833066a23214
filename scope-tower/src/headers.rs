//! Reading a caller's budget from a request's headers, and the names of the headers this
//! crate reads and writes.

use std::time::Duration;

use http::{HeaderMap, HeaderName};

use crate::grpc_timeout::{self, GRPC_TIMEOUT};

/// The default millisecond header: the caller's remaining time in whole milliseconds, for
/// callers that do not speak gRPC. Set another name with
/// [`ServerLayer::timeout_header`](crate::ServerLayer::timeout_header) and
/// [`ClientLayer::timeout_header`](crate::ClientLayer::timeout_header).
pub const TIMEOUT_MS: HeaderName = HeaderName::from_static("x-timeout-ms");

/// Set (to `1`) on a response that failed because the caller's own budget ran out: a retry
/// with the same budget would fail the same way.
pub const DEADLINE_EXHAUSTED: HeaderName = HeaderName::from_static("x-deadline-exhausted");

/// The longest millisecond value accepted: twenty digits overflow `u64`.
const MAX_MS_DIGITS: usize = 19;

/// What a request's headers say about its caller's budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Incoming {
    /// The smallest budget the caller sent, if any.
    pub(crate) budget: Option<Duration>,
    /// A deadline header was present but malformed (treated as absent).
    pub(crate) malformed: bool,
}

impl Incoming {
    /// Reads `grpc-timeout` and the millisecond header `ms`. A header that is malformed,
    /// negative, overlong, or sent more than once is treated as absent and reported.
    pub(crate) fn read(headers: &HeaderMap, ms: &HeaderName) -> Incoming {
        let mut out = Incoming::default();
        let mut take = |d: Option<Duration>| match d {
            Some(d) => out.budget = Some(out.budget.map_or(d, |b| b.min(d))),
            None => out.malformed = true,
        };
        if let Some(v) = single(headers, &GRPC_TIMEOUT) {
            take(v.and_then(grpc_timeout::decode));
        }
        if let Some(v) = single(headers, ms) {
            take(v.and_then(decode_ms));
        }
        out
    }
}

/// The header's only value: `None` if absent, `Some(None)` if sent more than once.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<Option<&'a http::HeaderValue>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    Some(if values.next().is_some() {
        None
    } else {
        Some(first)
    })
}

/// Whole milliseconds, ASCII digits only.
pub(crate) fn decode_ms(v: &http::HeaderValue) -> Option<Duration> {
    let b = v.as_bytes();
    if b.is_empty() || b.len() > MAX_MS_DIGITS || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let ms = b.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    Some(Duration::from_millis(ms))
}

/// Whole milliseconds, rounded down.
pub(crate) fn encode_ms(d: Duration) -> http::HeaderValue {
    // At most the 19 digits `decode_ms` reads back (about 317 million years).
    const MAX: u64 = 9_999_999_999_999_999_999;
    let ms = u64::try_from(d.as_millis()).unwrap_or(MAX).min(MAX);
    http::HeaderValue::from(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append((*k).clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn smallest_of_the_two_headers_wins() {
        let h = headers(&[(&GRPC_TIMEOUT, "2S"), (&TIMEOUT_MS, "1500")]);
        let i = Incoming::read(&h, &TIMEOUT_MS);
        assert_eq!(i.budget, Some(Duration::from_millis(1500)));
        assert!(!i.malformed);
        let h = headers(&[(&GRPC_TIMEOUT, "1S"), (&TIMEOUT_MS, "1500")]);
        assert_eq!(
            Incoming::read(&h, &TIMEOUT_MS).budget,
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn no_header_no_budget() {
        assert_eq!(
            Incoming::read(&HeaderMap::new(), &TIMEOUT_MS),
            Incoming::default()
        );
    }

    #[test]
    fn malformed_values_are_absent_and_reported() {
        for (name, bad) in [
            (&GRPC_TIMEOUT, "soon"),
            (&GRPC_TIMEOUT, "-5S"),
            (&GRPC_TIMEOUT, "123456789m"),
            (&TIMEOUT_MS, "-1"),
            (&TIMEOUT_MS, "1.5"),
            (&TIMEOUT_MS, "12345678901234567890"),
            (&TIMEOUT_MS, ""),
            (&TIMEOUT_MS, "1e3"),
        ] {
            let i = Incoming::read(&headers(&[(name, bad)]), &TIMEOUT_MS);
            assert_eq!(i.budget, None, "{name}: {bad:?}");
            assert!(i.malformed, "{name}: {bad:?}");
        }
        // A malformed one does not hide a good one.
        let h = headers(&[(&GRPC_TIMEOUT, "x"), (&TIMEOUT_MS, "300")]);
        let i = Incoming::read(&h, &TIMEOUT_MS);
        assert_eq!(i.budget, Some(Duration::from_millis(300)));
        assert!(i.malformed);
    }

    #[test]
    fn a_header_sent_twice_is_malformed() {
        let h = headers(&[(&TIMEOUT_MS, "100"), (&TIMEOUT_MS, "50000")]);
        let i = Incoming::read(&h, &TIMEOUT_MS);
        assert_eq!(i.budget, None);
        assert!(i.malformed);
    }

    #[test]
    fn milliseconds_round_down() {
        assert_eq!(encode_ms(Duration::from_micros(1999)), "1");
        assert_eq!(encode_ms(Duration::from_micros(999)), "0");
        assert_eq!(
            decode_ms(&encode_ms(Duration::MAX)),
            Some(Duration::from_millis(9_999_999_999_999_999_999))
        );
        assert_eq!(
            decode_ms(&HeaderValue::from_static("18446744073709551")),
            Some(Duration::from_millis(18_446_744_073_709_551))
        );
    }
}
