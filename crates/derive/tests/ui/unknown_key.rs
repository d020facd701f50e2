use syncbus::Event;

#[derive(Clone, Event)]
#[event(type = "shop.order.placed", name = "orders")]
struct OrderPlaced;

#[derive(Clone, Event)]
#[event(type = "shop.order.placed", type = "shop.order.created")]
struct Twice;

#[derive(Clone, Event)]
#[event(type = "shop.order.placed", entity = "order")]
struct Quoted {
    order: u64,
}

fn main() {}
