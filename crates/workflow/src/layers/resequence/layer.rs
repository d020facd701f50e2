//! The resequencer's layer.

use std::sync::Arc;

use super::config::Ordering;
use super::state::State;
use super::Ordered;
use crate::layer::Layer;

/// Makes [`Ordered`] handlers.
#[derive(Debug, Clone)]
pub struct OrderingLayer {
    pub(super) cfg: Ordering,
}

impl<H> Layer<H> for OrderingLayer {
    type Handler = Ordered<H>;
    fn layer(&self, inner: H) -> Ordered<H> {
        Ordered {
            inner: Arc::new(inner),
            state: Arc::new(State::new(self.cfg.clone())),
        }
    }
}
