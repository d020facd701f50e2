//! What an operator leaves for the runner to publish after its batch: the seam between the
//! operators, which queue outputs, and `to(topic)`, which makes them.

use std::future::Future;
use std::pin::Pin;

use crate::error::BoxError;

pub(crate) type PublishFuture<'a> = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'a>>;

/// An output waiting to be published.
pub(crate) trait Outgoing: Send {
    fn publish(self: Box<Self>) -> PublishFuture<'static>;
}
