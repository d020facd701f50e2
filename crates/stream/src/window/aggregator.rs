//! What a window computes per key: an accumulator, how a value is added, how two merge
//! (session windows merge when an event bridges them).

use std::ops::AddAssign;

use crate::topology::keyed::StateValue;

/// Folds values into an accumulator per key and window.
///
/// # Examples
///
/// ```
/// use syncbus_stream::{Aggregator, Count, Sum};
/// let mut n = Aggregator::<&str>::init(&Count);
/// Aggregator::<&str>::add(&Count, &mut n, "x");
/// assert_eq!(n, 1);
/// let mut s = Sum.init();
/// Sum.add(&mut s, 5i64);
/// Sum.merge(&mut s, 7);
/// assert_eq!(s, 12);
/// ```
pub trait Aggregator<V>: Send + 'static {
    /// The accumulator.
    type Acc: StateValue;
    /// A fresh accumulator.
    fn init(&self) -> Self::Acc;
    /// Adds one value.
    fn add(&self, acc: &mut Self::Acc, value: V);
    /// Merges `other` into `acc` (two sessions joined by a bridging event).
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
}

/// Counts values.
///
/// # Examples
///
/// ```
/// use syncbus_stream::{Aggregator, Count};
/// let mut n = Aggregator::<u8>::init(&Count);
/// Aggregator::<u8>::add(&Count, &mut n, 1);
/// Aggregator::<u8>::merge(&Count, &mut n, 4);
/// assert_eq!(n, 5);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Count;

impl<V> Aggregator<V> for Count {
    type Acc = u64;
    #[inline]
    fn init(&self) -> u64 {
        0
    }
    #[inline]
    fn add(&self, acc: &mut u64, _value: V) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
}

/// Sums values.
///
/// # Examples
///
/// ```
/// use syncbus_stream::{Aggregator, Sum};
/// let mut s = Sum.init();
/// Sum.add(&mut s, 2.5f64);
/// assert_eq!(s, 2.5);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Sum;

impl<V: StateValue + Default + AddAssign> Aggregator<V> for Sum {
    type Acc = V;
    #[inline]
    fn init(&self) -> V {
        V::default()
    }
    #[inline]
    fn add(&self, acc: &mut V, value: V) {
        *acc += value;
    }
    fn merge(&self, acc: &mut V, other: V) {
        *acc += other;
    }
}

/// An aggregator from three functions: `init`, `add`, `merge`.
///
/// # Examples
///
/// ```
/// use syncbus_stream::{Aggregator, Fold};
/// let max = Fold::new(|| 0u32, |m: &mut u32, v: u32| *m = (*m).max(v), |m: &mut u32, o: u32| *m = (*m).max(o));
/// let mut m = max.init();
/// max.add(&mut m, 7);
/// max.add(&mut m, 3);
/// assert_eq!(m, 7);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Fold<I, F, M> {
    init: I,
    add: F,
    merge: M,
}

impl<I, F, M> Fold<I, F, M> {
    /// The aggregator of `init`, `add` and `merge`.
    ///
    /// # Examples
    ///
    /// See [`Fold`].
    pub fn new(init: I, add: F, merge: M) -> Self {
        Fold { init, add, merge }
    }
}

impl<V, A, I, F, M> Aggregator<V> for Fold<I, F, M>
where
    A: StateValue,
    I: Fn() -> A + Send + 'static,
    F: Fn(&mut A, V) + Send + 'static,
    M: Fn(&mut A, A) + Send + 'static,
{
    type Acc = A;
    fn init(&self) -> A {
        (self.init)()
    }
    fn add(&self, acc: &mut A, value: V) {
        (self.add)(acc, value)
    }
    fn merge(&self, acc: &mut A, other: A) {
        (self.merge)(acc, other)
    }
}
