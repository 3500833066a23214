//! A scope's concurrency limit: at most `max` children run at once; the others wait, in the
//! order they were spawned, before their first poll.
//!
//! Admission is decided by tickets handed out at spawn time (not at first poll, which
//! happens in any order on a multi-threaded runtime): a child (or a reservation) is admitted
//! at once if a slot is free and nobody waits, and otherwise queued. Slots are given to the
//! queue strictly front first, so "ticket below the watermark" means admitted.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use crate::sync::{Mutex, lock};

pub(crate) struct Limiter {
    max: usize,
    state: Mutex<State>,
}

struct State {
    running: usize,
    next_ticket: u64,
    /// Every ticket below this was admitted.
    watermark: u64,
    /// Queued tickets, ascending.
    queue: VecDeque<Waiter>,
}

struct Waiter {
    ticket: u64,
    waker: Option<Waker>,
}

/// Where a new child stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Ticket {
    /// It holds a slot.
    Admitted,
    /// It waits for a slot.
    Queued(u64),
}

impl Limiter {
    pub(crate) fn new(max: usize) -> Self {
        Limiter {
            max,
            state: Mutex::new(State {
                running: 0,
                next_ticket: 0,
                watermark: 0,
                queue: VecDeque::new(),
            }),
        }
    }

    /// Takes a slot if one is free and nobody waits; otherwise queues.
    pub(crate) fn enter(&self) -> Ticket {
        let mut st = lock(&self.state);
        if st.running < self.max && st.queue.is_empty() {
            st.running += 1;
            return Ticket::Admitted;
        }
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push_back(Waiter {
            ticket,
            waker: None,
        });
        Ticket::Queued(ticket)
    }

    /// How many children (and reservations) wait for a slot.
    pub(crate) fn waiting(&self) -> usize {
        lock(&self.state).queue.len()
    }

    /// Takes a slot only if that needs no waiting.
    pub(crate) fn try_enter(&self) -> bool {
        let mut st = lock(&self.state);
        if st.running < self.max && st.queue.is_empty() {
            st.running += 1;
            true
        } else {
            false
        }
    }

    /// Ready once `ticket` was admitted; registers the waker otherwise.
    pub(crate) fn poll_admitted(&self, ticket: u64, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = lock(&self.state);
        if ticket < st.watermark {
            return Poll::Ready(());
        }
        let old = match st.queue.binary_search_by_key(&ticket, |w| w.ticket) {
            Ok(i) => st.queue[i].waker.replace(cx.waker().clone()),
            Err(_) => None,
        };
        drop(st);
        drop(old);
        Poll::Pending
    }

    /// A running child finished (or a reserved slot was given back): the next in line gets
    /// the slot.
    pub(crate) fn leave(&self) {
        let mut st = lock(&self.state);
        st.running -= 1;
        let next = Self::admit_next(&mut st, self.max);
        drop(st);
        if let Some(w) = next {
            w.wake();
        }
    }

    /// A queued ticket gives up (its child was dropped). If it had been admitted meanwhile
    /// without starting, its slot goes to the next in line.
    pub(crate) fn withdraw(&self, ticket: u64) {
        let mut st = lock(&self.state);
        if ticket < st.watermark {
            drop(st);
            self.leave();
            return;
        }
        let removed = match st.queue.binary_search_by_key(&ticket, |w| w.ticket) {
            Ok(i) => st.queue.remove(i),
            Err(_) => None,
        };
        drop(st);
        drop(removed);
    }

    fn admit_next(st: &mut State, max: usize) -> Option<Waker> {
        if st.running >= max {
            return None;
        }
        let w = st.queue.pop_front()?;
        st.watermark = w.ticket + 1;
        st.running += 1;
        w.waker
    }
}
