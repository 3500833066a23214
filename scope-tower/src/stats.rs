//! Counters of what became of the requests a [`ServerLayer`](crate::ServerLayer) served.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What became of the requests of one [`ServerLayer`](crate::ServerLayer) (and its clones),
/// or of one [`serve`](crate::serve) call: a cheap clone, read at any time.
///
/// A client that went away gets no answer (nobody is left to read it), so it shows up only
/// here and in a `tracing` event.
#[derive(Clone, Default)]
pub struct Stats(Arc<Counters>);

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) expired_on_arrival: AtomicU64,
    pub(crate) deadline_exceeded: AtomicU64,
    pub(crate) unavailable: AtomicU64,
    pub(crate) disconnected: AtomicU64,
    pub(crate) malformed_headers: AtomicU64,
    pub(crate) connections: AtomicU64,
}

impl Stats {
    pub(crate) fn add(&self, counter: impl Fn(&Counters) -> &AtomicU64) {
        counter(&self.0).fetch_add(1, Relaxed);
    }

    /// Requests that reached the layer.
    pub fn requests(&self) -> u64 {
        self.0.requests.load(Relaxed)
    }

    /// Requests whose budget was already spent on arrival: answered 504 (gRPC
    /// `DEADLINE_EXCEEDED`) without calling the handler.
    pub fn expired_on_arrival(&self) -> u64 {
        self.0.expired_on_arrival.load(Relaxed)
    }

    /// Requests whose deadline passed while the handler ran: answered 504 (gRPC
    /// `DEADLINE_EXCEEDED`).
    pub fn deadline_exceeded(&self) -> u64 {
        self.0.deadline_exceeded.load(Relaxed)
    }

    /// Requests refused or ended by the server's shutdown: answered 503 (gRPC
    /// `UNAVAILABLE`).
    pub fn unavailable(&self) -> u64 {
        self.0.unavailable.load(Relaxed)
    }

    /// Requests whose client went away before the response was ready.
    pub fn disconnected(&self) -> u64 {
        self.0.disconnected.load(Relaxed)
    }

    /// Deadline headers that were malformed (negative, overlong, not a number, sent twice)
    /// and so treated as absent.
    pub fn malformed_headers(&self) -> u64 {
        self.0.malformed_headers.load(Relaxed)
    }

    /// Connections accepted ([`serve`](crate::serve) only).
    pub fn connections(&self) -> u64 {
        self.0.connections.load(Relaxed)
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stats")
            .field("requests", &self.requests())
            .field("expired_on_arrival", &self.expired_on_arrival())
            .field("deadline_exceeded", &self.deadline_exceeded())
            .field("unavailable", &self.unavailable())
            .field("disconnected", &self.disconnected())
            .field("malformed_headers", &self.malformed_headers())
            .field("connections", &self.connections())
            .finish()
    }
}
