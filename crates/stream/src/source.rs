//! What the runner needs of a source beyond [`Source`]: the offset of a delivery (to skip
//! redeliveries a checkpoint already counts) and acking many at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use syncbus_core::{Consumer, Payload, Settle, Source};
use syncbus_storage::{DurableConsumer, DurableDelivery};

use crate::error::BoxError;

/// A [`Source`] a topology runs over. Implemented for the durable consumer (offsets: exactly-
/// once state), the bus's pull consumer (no offsets), `Arc`s of either, and any other source
/// wrapped in [`AnySource`].
///
/// # Examples
///
/// ```
/// use syncbus_core::{Bus, ConsumerConfig};
/// use syncbus_stream::StreamSource;
/// # #[derive(Clone, Debug)] struct Tick;
/// # impl syncbus_core::Event for Tick { const TYPE: &'static str = "tick"; }
/// fn takes<S: StreamSource>(_: &S) {}
/// let bus = Bus::new();
/// takes(&bus.consumer::<Tick>("ticks", ConsumerConfig::default())?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait StreamSource: Source {
    /// The delivery's position in its log, if the source has one. A checkpoint records the
    /// offsets it counts, and the runner skips a redelivery of one of them.
    fn offset(delivery: &Self::Delivery) -> Option<u64>;

    /// Acks every delivery.
    fn ack_all(
        &self,
        deliveries: Vec<Self::Delivery>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Every offset at or below this one is acked and will not be handed out again (`None`:
    /// not known). Lets the runner forget the offsets it keeps for skipping.
    fn committed(&self) -> impl Future<Output = Result<Option<u64>, BoxError>> + Send {
        async { Ok(None) }
    }
}

async fn ack_each<D: Settle>(deliveries: Vec<D>) -> Result<(), BoxError> {
    for d in deliveries {
        d.ack().await.map_err(|e| Box::new(e) as BoxError)?;
    }
    Ok(())
}

impl StreamSource for DurableConsumer {
    fn offset(delivery: &DurableDelivery) -> Option<u64> {
        Some(delivery.offset())
    }

    async fn ack_all(&self, deliveries: Vec<DurableDelivery>) -> Result<(), BoxError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        DurableConsumer::ack_all(self, deliveries)
            .await
            .map_err(|e| Box::new(e) as BoxError)
    }

    async fn committed(&self) -> Result<Option<u64>, BoxError> {
        DurableConsumer::committed(self)
            .await
            .map_err(|e| Box::new(e) as BoxError)
    }
}

impl<P: Payload> StreamSource for Consumer<P> {
    fn offset(_: &Self::Delivery) -> Option<u64> {
        None
    }

    fn ack_all(
        &self,
        deliveries: Vec<Self::Delivery>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        ack_each(deliveries)
    }
}

impl<S: StreamSource + ?Sized> StreamSource for Arc<S> {
    fn offset(delivery: &Self::Delivery) -> Option<u64> {
        S::offset(delivery)
    }

    fn ack_all(
        &self,
        deliveries: Vec<Self::Delivery>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        (**self).ack_all(deliveries)
    }

    fn committed(&self) -> impl Future<Output = Result<Option<u64>, BoxError>> + Send {
        (**self).committed()
    }
}

/// Any [`Source`], run without offsets: each delivery is acked once the checkpoint holding
/// its effect is written, so a crash before that redelivers it and it is counted again
/// (at-least-once state). Use a source with offsets for exactly-once state.
///
/// # Examples
///
/// ```
/// use syncbus_core::{Bus, ConsumerConfig, Source};
/// use syncbus_stream::AnySource;
/// # #[derive(Clone, Debug)] struct Tick;
/// # impl syncbus_core::Event for Tick { const TYPE: &'static str = "tick"; }
/// let bus = Bus::new();
/// let any = AnySource(bus.consumer::<Tick>("ticks", ConsumerConfig::default())?);
/// assert_eq!(any.name(), any.0.name());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct AnySource<S>(pub S);

impl<S: Source> Source for AnySource<S> {
    type Payload = S::Payload;
    type Delivery = S::Delivery;
    type Error = S::Error;

    fn name(&self) -> &str {
        self.0.name()
    }

    fn fetch(
        &self,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Self::Delivery>, Self::Error>> + Send {
        self.0.fetch(max, wait)
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

impl<S: Source> StreamSource for AnySource<S> {
    fn offset(_: &Self::Delivery) -> Option<u64> {
        None
    }

    fn ack_all(
        &self,
        deliveries: Vec<Self::Delivery>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        ack_each(deliveries)
    }
}
