#![deny(missing_docs)]
//! Outer attributes and doc comments survive `#[scoped]`.

use taskscope::{Cancelled, scoped};

/// Documented, and `unused` is allowed by the kept attribute.
#[allow(unused_variables)]
#[scoped]
pub async fn documented(unused: u32) -> Result<(), Cancelled> {
    Ok(())
}

/// The attribute order does not matter.
#[scoped(timeout = "1s")]
#[must_use]
#[inline]
pub async fn inner() -> Option<u32> {
    Some(1)
}

#[allow(dead_code)]
#[scoped]
async fn never_called() {}

fn main() {
    let _ = documented(1);
    let _ = inner();
}
