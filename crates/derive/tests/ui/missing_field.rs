use syncbus::Event;

#[derive(Clone, Event)]
#[event(type = "shop.order.placed", entity = ordr, version = revision)]
struct OrderPlaced {
    order: u64,
    rev: u64,
}

#[derive(Clone, Event)]
#[event(type = "shop.order.counted", entity = 2)]
struct Counted(u64, u64);

#[derive(Clone, Event)]
#[event(type = "shop.order.placed", entity = 0)]
struct Named {
    order: u64,
}

fn main() {}
