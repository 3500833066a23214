//! A tiny slab of wakers: O(1) insert and remove by key, and a drain that empties it.

use std::task::Waker;

/// Wakers registered with a node, addressed by the key `insert` returned.
///
/// Keys stay valid until `remove` or `drain`. A registrant learns that its key was drained
/// from the node's state bit that the drain goes with (invariant #4 of the tree), never from
/// the slab itself, so a drained key is never removed twice.
#[derive(Default)]
pub(crate) struct WakerSlab {
    slots: Vec<Option<Waker>>,
    free: Vec<u32>,
}

impl WakerSlab {
    pub(crate) fn insert(&mut self, waker: Waker) -> u32 {
        match self.free.pop() {
            Some(key) => {
                self.slots[key as usize] = Some(waker);
                key
            }
            None => {
                self.slots.push(Some(waker));
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// Replaces the waker under `key` unless it would wake the same task.
    pub(crate) fn update(&mut self, key: u32, waker: &Waker) {
        if let Some(slot) = self.slots.get_mut(key as usize) {
            match slot {
                Some(w) if w.will_wake(waker) => {}
                _ => *slot = Some(waker.clone()),
            }
        }
    }

    /// Removes the waker under `key`; returns it so the caller drops it outside the lock.
    pub(crate) fn remove(&mut self, key: u32) -> Option<Waker> {
        let w = self.slots.get_mut(key as usize)?.take();
        if w.is_some() {
            self.free.push(key);
        }
        w
    }

    /// Moves every waker into `out` and forgets all keys.
    pub(crate) fn drain_into(&mut self, out: &mut Vec<Waker>) {
        out.extend(self.slots.drain(..).flatten());
        self.free.clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    impl Count {
        fn get(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn insert_remove_reuses_keys_and_drain_empties() {
        let w = Waker::from(Arc::new(Noop));
        let mut s = WakerSlab::default();
        let a = s.insert(w.clone());
        let b = s.insert(w.clone());
        assert_ne!(a, b);
        assert!(s.remove(a).is_some());
        assert!(s.remove(a).is_none(), "a removed key is gone");
        let c = s.insert(w.clone());
        assert_eq!(c, a, "freed keys are reused");
        assert_eq!(s.len(), 2);
        let mut out = Vec::new();
        s.drain_into(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn each_key_addresses_the_waker_inserted_under_it() {
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
        let mut s = WakerSlab::default();
        let ka = s.insert(wa.clone());
        let kb = s.insert(wb.clone());
        assert!(s.remove(kb).expect("b's key holds a waker").will_wake(&wb));
        assert!(s.remove(ka).expect("a's key holds a waker").will_wake(&wa));
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn update_replaces_a_waker_of_another_task() {
        let (old, new) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let mut s = WakerSlab::default();
        let key = s.insert(Waker::from(old.clone()));
        s.update(key, &Waker::from(new.clone()));
        let mut out = Vec::new();
        s.drain_into(&mut out);
        assert_eq!(out.len(), 1);
        out.into_iter().for_each(Waker::wake);
        assert_eq!(
            (old.get(), new.get()),
            (0, 1),
            "the new task is woken, not the old"
        );
    }
}
