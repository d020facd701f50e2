use syncbus::Event;

#[derive(Clone, Event)]
#[event(type = "shop.order")]
enum OrderEvent {
    Placed { order: u64 },
    Shipped { order: u64 },
}

#[derive(Event)]
#[event(type = "shop.raw")]
union Raw {
    a: u32,
    b: f32,
}

impl Clone for Raw {
    fn clone(&self) -> Self {
        *self
    }
}

impl Copy for Raw {}

fn main() {}
