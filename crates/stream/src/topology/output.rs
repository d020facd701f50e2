//! `to(topic)`: outputs published to the bus after each batch, awaiting room (backpressure).

use syncbus_core::{Bus, Envelope, Event, Timestamp, Topic};

use crate::error::{BoxError, StreamError};
use crate::topology::operator::{Cx, Operator};
use crate::topology::outgoing::{Outgoing, PublishFuture};
use crate::topology::stream::Stream;

struct Typed<T: Event> {
    bus: Bus,
    envelope: Envelope<T>,
}

impl<T: Event> Outgoing for Typed<T> {
    fn publish(self: Box<Self>) -> PublishFuture<'static> {
        Box::pin(async move {
            self.bus
                .publish_envelope(self.envelope)
                .await
                .map(drop)
                .map_err(|e| BoxError::from(e.to_string()))
        })
    }
}

impl<In, Op> Stream<In, Op>
where
    Op: Operator<In>,
    Op::Out: Event,
{
    /// Ends the stream in the bus: each item is published on `topic`, with the event time of
    /// the input it came from. Outputs are published after each batch, before the batch is
    /// acked, awaiting room in full `Block` subscriptions (a slow reader slows the topology).
    /// After a crash, outputs since the last checkpoint are published again: outputs are
    /// at-least-once (their ids are fresh; dedup downstream on a key of the payload).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_core::{Bus, ConsumerConfig, Event, Source, Topic};
    /// use syncbus_stream::{Stream, Topology};
    /// # #[derive(Clone, Debug)] struct Big(u32);
    /// # impl Event for Big { const TYPE: &'static str = "demo.big"; }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::new();
    /// let big = bus.consumer::<Big>("numbers.big", ConsumerConfig::default())?;
    /// let s = Stream::<u32>::new().filter(|x| *x > 10).map(Big).to(&bus, Topic::from_static("numbers.big"));
    /// let mut t = Topology::new(s);
    /// t.process(5, None);
    /// t.process(50, Some(1_000));
    /// t.publish().await?;
    /// let got = Source::fetch(&big, 10, std::time::Duration::ZERO).await?;
    /// assert_eq!(got.len(), 1);
    /// assert_eq!(got[0].envelope().payload().0, 50);
    /// # Ok(()) }
    /// ```
    pub fn to(self, bus: &Bus, topic: Topic) -> Stream<In, To<Op>> {
        Stream::from_op(To {
            prev: self.into_op(),
            bus: bus.clone(),
            topic,
        })
    }
}

/// The sink of [`Stream::to`].
pub struct To<P> {
    prev: P,
    bus: Bus,
    topic: Topic,
}

impl<P> std::fmt::Debug for To<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("To").field("topic", &self.topic).finish()
    }
}

impl<P> To<P> {
    fn apply<T: Event>(bus: &Bus, topic: &Topic, item: T, cx: &mut Cx) {
        let mut envelope = Envelope::from_event(item);
        let mut meta = envelope.meta().clone().with_topic(topic.clone());
        if let Some(ms) = cx.time {
            meta = meta.with_time(Timestamp::from_unix_nanos(ms.saturating_mul(1_000_000)));
        }
        *envelope.meta_mut() = meta;
        cx.outgoing.push(Box::new(Typed {
            bus: bus.clone(),
            envelope,
        }));
    }
}

impl<In, P> Operator<In> for To<P>
where
    P: Operator<In>,
    P::Out: Event,
{
    type Out = ();

    fn push<E: FnMut((), &mut Cx)>(&mut self, item: In, cx: &mut Cx, _out: &mut E) {
        let (bus, topic) = (&self.bus, &self.topic);
        self.prev
            .push(item, cx, &mut |x, cx| Self::apply(bus, topic, x, cx));
    }

    fn advance<E: FnMut((), &mut Cx)>(&mut self, cx: &mut Cx, _out: &mut E) {
        let (bus, topic) = (&self.bus, &self.topic);
        self.prev
            .advance(cx, &mut |x, cx| Self::apply(bus, topic, x, cx));
    }

    fn shape(&self, shape: &mut Vec<&'static str>) {
        self.prev.shape(shape);
    }

    fn save(&self, parts: &mut Vec<Vec<u8>>) -> Result<(), StreamError> {
        self.prev.save(parts)
    }

    fn load(&mut self, parts: &mut std::vec::IntoIter<Vec<u8>>) -> Result<(), StreamError> {
        self.prev.load(parts)
    }
}
