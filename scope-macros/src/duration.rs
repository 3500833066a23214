//! Duration literals (`"250ms"`, `"2s"`, `"1.5s"`, `"1m"`, `"1h"`), parsed at compile time.

use proc_macro2::TokenStream;
use quote::quote_spanned;
use syn::{Expr, ExprLit, Lit, LitStr};

/// What the accepted forms are, for every error about a duration.
pub(crate) const FORMS: &str = "a duration is a string literal of a number and a unit: \
     \"250ms\", \"2s\", \"1.5s\", \"1m\", \"1h\" (units: ns, us, ms, s, m, h), \
     or any expression of type `std::time::Duration`";

/// A duration option: a literal parsed here, or an expression the compiler checks.
pub(crate) enum DurationArg {
    Nanos(u64, proc_macro2::Span),
    Expr(Box<Expr>),
}

impl DurationArg {
    /// `"2s"` becomes nanoseconds; any other expression is kept as is.
    pub(crate) fn from_expr(expr: Expr) -> syn::Result<Self> {
        match expr {
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) => Ok(DurationArg::Nanos(parse_literal(&s)?, s.span())),
            Expr::Lit(ExprLit { lit, .. }) => Err(syn::Error::new_spanned(
                lit,
                format!("expected a duration: {FORMS}"),
            )),
            other => Ok(DurationArg::Expr(Box::new(other))),
        }
    }

    /// Input: `"2s"` / `d`. Output: `<krate>::__private::Duration::from_nanos(2000000000)` / `d`.
    pub(crate) fn to_tokens(&self, private: &TokenStream) -> TokenStream {
        match self {
            DurationArg::Nanos(n, span) => {
                quote_spanned!(*span=> #private::Duration::from_nanos(#n))
            }
            DurationArg::Expr(e) => quote_spanned!(syn::spanned::Spanned::span(&**e)=> #e),
        }
    }
}

fn parse_literal(lit: &LitStr) -> syn::Result<u64> {
    parse_str(&lit.value()).map_err(|why| syn::Error::new(lit.span(), format!("{why}; {FORMS}")))
}

/// Parses `"<number><unit>"` into nanoseconds.
pub(crate) fn parse_str(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{s}` has no unit"))?;
    let (number, unit) = s.split_at(split);
    let unit = unit.trim();
    if number.is_empty() {
        return Err(format!("`{s}` has no number"));
    }
    let per_unit: u128 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(format!("`{unit}` is not a unit")),
    };
    let (int, frac) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(format!("`{number}` is not a number"));
    }
    let int: u128 = if int.is_empty() {
        0
    } else {
        int.parse()
            .map_err(|_| format!("`{number}` is too large"))?
    };
    // Fractions below a nanosecond are cut off; more than 18 digits cannot matter.
    let frac_digits = &frac[..frac.len().min(18)];
    let mut frac_nanos: u128 = 0;
    if !frac_digits.is_empty() {
        let digits: u128 = frac_digits
            .parse()
            .map_err(|_| format!("`{number}` is not a number"))?;
        frac_nanos = digits * per_unit / 10u128.pow(frac_digits.len() as u32);
    }
    let total = int
        .checked_mul(per_unit)
        .and_then(|n| n.checked_add(frac_nanos))
        .filter(|n| *n <= u64::MAX as u128)
        .ok_or_else(|| format!("`{s}` is too long (at most about 584 years)"))?;
    Ok(total as u64)
}

/// Literals the parser accepts, with their value in nanoseconds (shared with the fuzz test).
#[cfg(test)]
pub(crate) const ACCEPTED: &[(&str, u64)] = &[
    ("250ms", 250_000_000),
    ("2s", 2_000_000_000),
    ("1.5s", 1_500_000_000),
    ("1m", 60_000_000_000),
    ("1h", 3_600_000_000_000),
    ("10us", 10_000),
    ("7ns", 7),
    ("0.25ms", 250_000),
    (".5s", 500_000_000),
    ("0s", 0),
];

/// Literals the parser rejects (shared with the fuzz test).
#[cfg(test)]
pub(crate) const REJECTED: &[&str] = &[
    "",
    "s",
    "2",
    "2 sec",
    "2x",
    "-1s",
    "1.2.3s",
    "1e3ms",
    ".s",
    "99999999999h",
];

#[cfg(test)]
mod tests {
    use super::{ACCEPTED, REJECTED, parse_str};

    #[test]
    fn accepted_forms() {
        for (text, nanos) in ACCEPTED {
            assert_eq!(parse_str(text), Ok(*nanos), "{text:?}");
        }
    }

    #[test]
    fn rejected_forms() {
        for bad in REJECTED {
            assert!(parse_str(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
