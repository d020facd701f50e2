use syncbus::Event;

#[derive(Clone, Event)]
#[event(type = "shop.order.placed", topic = "orders..placed")]
struct OrderPlaced;

#[derive(Clone, Event)]
#[event(type = "shop.order.shipped", topic = "")]
struct OrderShipped;

fn main() {}
