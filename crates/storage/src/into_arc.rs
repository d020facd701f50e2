//! Handing a store to syncbus without wrapping it first: the store itself, or an `Arc` of it
//! that the application keeps a handle on.

use std::sync::Arc;

use crate::{Checkpoints, DeadLetterStore, DedupStore, EventLog, Outbox, SagaStore};

/// A value syncbus can share as an `Arc<T>`: a store (`store.dedup()`), an `Arc` of one, or
/// an `Arc<dyn Trait>` already shared. Every API taking a store takes `impl IntoArc<dyn
/// Trait>`, so none needs `Arc::new` at the call site, and one made elsewhere is not wrapped
/// twice.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use syncbus_storage::{DedupStore, IntoArc, MemoryDedupStore};
///
/// fn takes(store: impl IntoArc<dyn DedupStore>) -> Arc<dyn DedupStore> {
///     store.into_arc()
/// }
/// let a = takes(MemoryDedupStore::new(10)); // the store itself
/// let kept = Arc::new(MemoryDedupStore::new(10));
/// let b = takes(kept.clone()); // an Arc of it, still yours
/// let c = takes(a.clone()); // already shared: the same Arc, not wrapped again
/// assert!(Arc::ptr_eq(&a, &c));
/// # let _ = b;
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as an `Arc<{T}>` store",
    label = "expected a store implementing the trait, an `Arc` of one, or an `Arc<{T}>`"
)]
pub trait IntoArc<T: ?Sized> {
    /// This value as a shared `Arc<T>`.
    fn into_arc(self) -> Arc<T>;
}

macro_rules! into_arc {
    ($($tr:ident),*) => {$(
        impl<S: $tr + 'static> IntoArc<dyn $tr> for S {
            fn into_arc(self) -> Arc<dyn $tr> {
                Arc::new(self)
            }
        }

        impl<S: $tr + 'static> IntoArc<dyn $tr> for Arc<S> {
            fn into_arc(self) -> Arc<dyn $tr> {
                self
            }
        }

        impl IntoArc<dyn $tr> for Arc<dyn $tr> {
            fn into_arc(self) -> Arc<dyn $tr> {
                self
            }
        }
    )*};
}

into_arc!(
    EventLog,
    Checkpoints,
    Outbox,
    DedupStore,
    DeadLetterStore,
    SagaStore
);
