use syncbus::Event;

#[derive(Clone, Event)]
#[event(type = "shop order placed", topic = "orders.placed")]
struct OrderPlaced;

fn main() {}
