//! Orders per minute per region, by event time, with late data.
//!
//! Orders arrive out of order. The watermark trails the latest order by 5 s (the
//! out-of-orderness bound); each one-minute window takes late orders for 10 s more (grace),
//! then closes and prints its counts. Orders later than that are set aside (the side
//! output), counted and printed, never silently dropped.
//!
//! ```sh
//! cargo run --example stream_metrics --features stream
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use syncbus::prelude::*;
use syncbus::stream::{RunConfig, Stream, Topology, WatermarkConfig, Window, Windows};
use syncbus::Timestamp;

#[derive(Clone, Debug, Serialize, Deserialize, Event)]
#[event(type = "shop.order.placed", topic = "orders.placed")]
struct OrderPlaced {
    id: u32,
    region: String,
}

/// `m:ss` of event time (the demo's day starts at the epoch).
fn clock(ms: i64) -> String {
    format!("{}:{:02}", ms / 60_000, (ms / 1_000) % 60)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bus = Bus::new();
    let orders = bus.consumer::<OrderPlaced>("orders.placed", ConsumerConfig::default())?;

    let set_aside = Arc::new(Mutex::new(Vec::new()));
    let side = set_aside.clone();
    let per_minute = Stream::<Envelope<OrderPlaced>>::new()
        .key_by(|env| env.payload().region.clone())
        .map(|(region, env)| (region, env.payload().id))
        .window(Windows::tumbling(Duration::from_secs(60))?.grace(Duration::from_secs(10)))
        .on_late(move |late| {
            let at = late.time.unwrap_or_default();
            let missed = Window::new(
                at.div_euclid(60_000) * 60_000,
                at.div_euclid(60_000) * 60_000 + 60_000,
            );
            println!(
                "  set aside: order #{} ({}) at {}: its window {}-{} closed (watermark {})",
                late.value,
                late.key,
                clock(at),
                clock(missed.start),
                clock(missed.end),
                clock(late.watermark)
            );
            side.lock().unwrap().push((missed, late.key, late.value));
        })
        .count()
        .for_each(|closed| {
            println!(
                "window {}-{}  {:<3} {} orders",
                clock(closed.window.start),
                clock(closed.window.end),
                closed.key,
                closed.value
            );
        });

    // (id, region, event time m:ss) in arrival order: some out of order within the bound,
    // some late within grace, some too late.
    let arrivals = [
        (1, "eu", "0:05"),
        (2, "us", "0:20"),
        (3, "eu", "0:40"),
        (4, "eu", "0:59"),
        (5, "us", "1:03"),
        (6, "eu", "0:58"), // 5 s behind: within the bound, not even late
        (7, "eu", "1:30"),
        (8, "us", "1:15"),
        (9, "eu", "2:05"), // the watermark passes 2:00: [1:00, 2:00) waits 10 s more
        (10, "us", "1:50"), // late, within grace: still counted in [1:00, 2:00)
        (11, "eu", "2:20"), // the watermark reaches 2:15: [1:00, 2:00) closes
        (12, "eu", "1:55"), // too late: set aside
        (13, "us", "3:01"),
        (14, "eu", "0:30"), // far too late: set aside
        (15, "us", "3:40"),
    ];
    for (id, region, at) in arrivals {
        let (m, s) = at.split_once(':').ok_or("bad time")?;
        let ms = (m.parse::<u64>()? * 60 + s.parse::<u64>()?) * 1_000;
        let mut env = Envelope::from_event(OrderPlaced {
            id,
            region: region.into(),
        });
        let meta = env
            .meta()
            .clone()
            .with_time(Timestamp::from_unix_millis(ms));
        *env.meta_mut() = meta;
        bus.publish_envelope(env).await?;
    }

    // One order per batch, so the watermark moves with each arrival as it would live.
    let config = RunConfig::new("orders-per-minute")
        .batch(1)?
        .watermarks(WatermarkConfig::new().out_of_orderness(Duration::from_secs(5))?);
    let running = Topology::new(per_minute).spawn(orders, config);
    running.caught_up().await;
    let mut topology = running.stop().await?;
    println!("end of input: closing the open windows");
    topology.advance(i64::MAX / 4);

    let metrics = topology.metrics();
    println!(
        "{} orders, {} set aside as too late: {:?}",
        metrics.processed,
        metrics.late,
        set_aside
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, id)| *id)
            .collect::<Vec<_>>()
    );
    assert_eq!(metrics.late, 2);
    bus.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
