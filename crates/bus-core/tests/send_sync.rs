//! The public handles are `Send + Sync` (or `Send` where documented), checked at compile time.

use syncbus_core::*;

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}

#[derive(Clone, Debug)]
struct Ev;
impl Event for Ev {
    const TYPE: &'static str = "ev";
}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<Bus>();
    send_sync::<Publisher<Ev>>();
    send_sync::<Subscription>();
    send_sync::<Consumer<Ev>>();
    send_sync::<Delivery<Ev>>();
    send_sync::<ConsumerConfig<Ev>>();
    send_sync::<DeadLetter<Ev>>();
    send_sync::<Topic>();
    send_sync::<Pattern>();
    send_sync::<NameError>();
    send_sync::<NameKind>();
    send_sync::<NameReason>();
    send_sync::<PublishError<Ev>>();
    send_sync::<SubscribeError>();
    send_sync::<ShutdownReport>();
    send_sync::<BusMetrics>();
    send_sync::<Envelope<Ev>>();
    send_sync::<Tapped>();
    send_sync::<TapPayload>();
    send_sync::<Encoded>();
    send::<SubscribeBuilder<Ev>>();
    send::<TapBuilder>();
}

#[test]
fn shutdown_future_is_send() {
    fn is_send<T: Send>(_: &T) {}
    let bus = Bus::new();
    let fut = bus.shutdown(std::time::Duration::from_millis(1));
    is_send(&fut);
    let c = bus.consumer::<Ev>("ev", ConsumerConfig::default()).unwrap();
    let f = c.fetch(1, std::time::Duration::from_millis(1));
    is_send(&f);
}
