//! Structured concurrency for tokio.
#![forbid(unsafe_code)]

pub use taskscope_core::*;
