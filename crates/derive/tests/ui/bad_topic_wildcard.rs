use syncbus::Event;

#[derive(Clone, Event)]
#[event(type = "shop.order.placed", topic = "orders.*")]
struct OrderPlaced;

fn main() {}
