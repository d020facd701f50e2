use syncbus::Event;

#[derive(Clone, Event)]
#[event(topic = "orders.placed")]
struct OrderPlaced;

#[derive(Clone, Event)]
struct NoAttribute;

fn main() {}
