//! A list whose first element is stored inline.
//!
//! Most nodes have at most one child node, most scopes of a short-lived request spawn one
//! or two children, and a busy count passing through zero wakes one owner: a `Vec` would
//! allocate (and later free) for that first element every time. Measured with callgrind on
//! a chain of scopes each spawning one child (`benches/nested.rs`), the three `Vec`s this
//! replaces cost about 450 instructions of about 8,600 per level.

/// The capacity of the first allocation of `rest` (a `Vec`'s own first capacity for
/// elements of pointer size).
const MIN_REST: usize = 4;

/// A `Vec<T>` that keeps its first element inline. Indices are stable as in a `Vec`:
/// element 0 is `first`, element `i > 0` is `rest[i - 1]`.
pub(crate) struct List<T> {
    first: Option<T>,
    rest: Vec<T>,
}

impl<T> Default for List<T> {
    fn default() -> Self {
        List {
            first: None,
            rest: Vec::new(),
        }
    }
}

impl<T> List<T> {
    pub(crate) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub(crate) fn push(&mut self, value: T) {
        if self.first.is_none() {
            self.first = Some(value);
        } else {
            if self.rest.len() == self.rest.capacity() {
                self.grow();
            }
            self.rest.push(value);
        }
    }

    /// Doubles the capacity of `rest` by a fresh allocation and a move of its elements, not
    /// by `Vec`'s own growth: that calls `realloc`, which glibc serves past its per-thread
    /// cache. Measured with callgrind on a scope of 100 children (`scope_fan` in
    /// `benches/instructions.rs`), whose registry grows five times: about 2,400
    /// instructions a `realloc`, 120 a child; a fresh allocation of these sizes comes from
    /// the cache and the move is one `memcpy`.
    #[cold]
    fn grow(&mut self) {
        let mut grown = Vec::with_capacity((self.rest.capacity() * 2).max(MIN_REST));
        grown.append(&mut self.rest);
        self.rest = grown;
    }

    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        match i {
            0 => self.first.as_ref(),
            _ => self.rest.get(i - 1),
        }
    }

    /// Removes element `i` and puts the last element in its place, like
    /// `Vec::swap_remove`. `None` if `i` is out of bounds.
    pub(crate) fn swap_remove(&mut self, i: usize) -> Option<T> {
        let len = self.len();
        if i >= len {
            return None;
        }
        let last = match self.rest.pop() {
            Some(v) => v,
            None => self.first.take()?,
        };
        if i == len - 1 {
            return Some(last);
        }
        let slot = if i == 0 {
            self.first.as_mut()?
        } else {
            &mut self.rest[i - 1]
        };
        Some(std::mem::replace(slot, last))
    }

    /// Keeps the elements for which `keep` is `true`, in order.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.rest.retain(&mut keep);
        if self.first.as_ref().is_some_and(|v| !keep(v)) {
            self.first = None;
        }
        if self.first.is_none() && !self.rest.is_empty() {
            self.first = Some(self.rest.remove(0));
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.first.iter().chain(self.rest.iter())
    }
}

impl<T: Clone> List<T> {
    pub(crate) fn to_vec(&self) -> Vec<T> {
        self.iter().cloned().collect()
    }
}

impl<T> IntoIterator for List<T> {
    type Item = T;
    type IntoIter = std::iter::Chain<std::option::IntoIter<T>, std::vec::IntoIter<T>>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

#[cfg(test)]
mod tests {
    use super::List;

    fn items(l: &List<u32>) -> Vec<u32> {
        l.iter().copied().collect()
    }

    #[test]
    fn behaves_like_a_vec() {
        let mut l = List::default();
        let mut v = Vec::new();
        assert!(l.is_empty());
        for x in 0..6 {
            l.push(x);
            v.push(x);
            assert_eq!(items(&l), v);
            assert_eq!(l.len(), v.len());
        }
        for i in [0, 3, 1, 2] {
            assert_eq!(l.swap_remove(i), Some(v.swap_remove(i)));
            assert_eq!(items(&l), v);
            assert_eq!(l.get(0), v.first());
            assert_eq!(l.get(1), v.get(1));
        }
        assert_eq!(l.swap_remove(9), None);
        assert_eq!(l.swap_remove(1), Some(v.swap_remove(1)));
        assert_eq!(l.swap_remove(0), Some(v.swap_remove(0)));
        assert!(l.is_empty() && v.is_empty());
        assert_eq!(l.swap_remove(0), None);
    }

    #[test]
    fn grows_by_doubling_and_keeps_order() {
        let mut l = List::default();
        for x in 0..300u32 {
            l.push(x);
            let rest = l.len() - 1;
            let doubled = rest.next_power_of_two().max(super::MIN_REST);
            assert_eq!(l.rest.capacity(), if rest == 0 { 0 } else { doubled });
        }
        assert_eq!(items(&l), (0..300).collect::<Vec<_>>());
        l.retain(|x| x % 100 == 0);
        assert_eq!(items(&l), [0, 100, 200]);
        l.push(300);
        assert_eq!(items(&l), [0, 100, 200, 300]);
    }

    #[test]
    fn retain_keeps_order_and_refills_the_inline_slot() {
        let mut l = List::default();
        for x in 0..5 {
            l.push(x);
        }
        l.retain(|x| x % 2 == 1);
        assert_eq!(items(&l), [1, 3]);
        assert_eq!(l.get(0), Some(&1));
        l.retain(|_| false);
        assert!(l.is_empty());
        l.push(7);
        assert_eq!(l.to_vec(), [7]);
        l.push(8);
        assert_eq!(l.into_iter().collect::<Vec<_>>(), [7, 8]);
    }
}
