use syncbus::Event;

// A valid event type, but not a valid topic, and no `topic` to use instead.
#[derive(Clone, Event)]
#[event(type = "shop.order.>")]
struct OrderEvent;

fn main() {}
