//! Error modes: [`FailFast`] and [`CollectErrors`], and what the scope future needs to
//! know about the error type.

use crate::error::{Cancelled, Errors};
use crate::outcome::Payload;

/// Fail fast (the default): the scope returns its first error.
#[derive(Debug, Clone, Copy, Default)]
pub struct FailFast;

/// Collecting mode: the scope returns every error, in order, as [`Errors`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CollectErrors;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::FailFast {}
    impl Sealed for super::CollectErrors {}
    impl<T, E> Sealed for Result<T, E> {}
}

/// The body's output: a `Result`. Lets the scope future name `T` and `E` as projections of
/// the body future's output instead of as type parameters of its own.
pub trait BodyResult: sealed::Sealed {
    /// The value of a successful body.
    type Ok;
    /// The scope's error type.
    type Err;
    #[doc(hidden)]
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
}

impl<T, E> BodyResult for Result<T, E> {
    type Ok = T;
    type Err = E;
    fn into_result(self) -> Self {
        self
    }
}

/// How a scope reports errors: [`FailFast`] or [`CollectErrors`].
///
/// Its impls have no bounds on `T` and `E`, and the scope future's `Future` impl names
/// them only as projections of the body's output: proving that a scope future is a `Future`
/// (and `Send`) never equates two independently erased lifetimes inside `E` (a
/// `Box<dyn Error + Send + Sync>`), so rustc's higher-ranked inference cannot fail on it when
/// the scope is passed through generic `async fn`s inside spawned tasks.
pub trait Mode<R: BodyResult>: sealed::Sealed {
    /// What the scope's future resolves to.
    type Output;
    #[doc(hidden)]
    const COLLECT: bool;
    /// `Err` holds the first error and the others, in order.
    #[doc(hidden)]
    fn output(r: Outcome<R::Ok, R::Err>) -> Self::Output;
}

/// A scope's result before its error mode shapes it: the value, or the first error and the
/// others in order.
#[doc(hidden)]
pub type Outcome<T, E> = Result<T, (E, Vec<E>)>;

impl<T, E> Mode<Result<T, E>> for FailFast {
    type Output = Result<T, E>;
    const COLLECT: bool = false;
    fn output(r: Outcome<T, E>) -> Result<T, E> {
        r.map_err(|(first, _)| first)
    }
}

impl<T, E> Mode<Result<T, E>> for CollectErrors {
    type Output = Result<T, Errors<E>>;
    const COLLECT: bool = true;
    fn output(r: Outcome<T, E>) -> Result<T, Errors<E>> {
        r.map_err(|(first, rest)| {
            let mut all = Vec::with_capacity(1 + rest.len());
            all.push(first);
            all.extend(rest);
            Errors::new(all)
        })
    }
}

/// What the scope future needs to know about `E`, captured where `E`'s bounds are proven
/// (at construction), so that its `Future` impl needs none.
pub(super) struct ErrorOps<E> {
    pub(super) from_cancelled: fn(Cancelled) -> E,
    pub(super) downcast: fn(Payload) -> Option<E>,
}

impl<E> Clone for ErrorOps<E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for ErrorOps<E> {}

impl<E: 'static> ErrorOps<E> {
    pub(super) fn new(from_cancelled: fn(Cancelled) -> E) -> Self {
        ErrorOps {
            from_cancelled,
            downcast: |p| p.downcast::<E>().ok().map(|e| *e),
        }
    }
}
