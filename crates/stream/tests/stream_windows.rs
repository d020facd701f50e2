//! Windows, watermarks and joins on deterministic inputs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use syncbus_stream::{
    Emit, LateReason, Stream, Table, Topology, WatermarkConfig, Watermarks, Window, Windowed,
    Windows,
};
use tokio::time::Instant;

type Results = Vec<(char, Window, u64)>;

fn collect(out: &mut Results) -> impl FnMut(Windowed<char, u64>, &mut syncbus_stream::Cx) + '_ {
    move |r, _| out.push((r.key, r.window, r.value))
}

#[test]
fn tumbling_windows_put_an_event_on_a_boundary_in_the_window_starting_there() {
    let s = Stream::<char>::new()
        .key_by(|k| *k)
        .window(Windows::tumbling(Duration::from_millis(10)).unwrap())
        .count();
    let mut t = Topology::new(s);
    for (k, at) in [
        ('a', 0),
        ('a', 9),
        ('a', 10),
        ('b', 10),
        ('a', 19),
        ('a', 20),
    ] {
        t.process(k, Some(at));
    }
    let mut out = Vec::new();
    t.advance_with(19, &mut collect(&mut out));
    assert_eq!(
        out,
        [('a', Window::new(0, 10), 2)],
        "only [0, 10) is complete at 19"
    );
    out.clear();
    t.advance_with(20, &mut collect(&mut out));
    assert_eq!(
        out,
        [('a', Window::new(10, 20), 2), ('b', Window::new(10, 20), 1)],
        "[10, 20) closes exactly at 20; the event at 20 is in [20, 30)"
    );
    out.clear();
    t.advance_with(i64::MAX / 8, &mut collect(&mut out));
    assert_eq!(out, [('a', Window::new(20, 30), 1)]);
}

#[test]
fn hopping_windows_count_an_event_in_every_window_covering_it() {
    let s = Stream::<u8>::new()
        .key_by(|_| 'k')
        .window(Windows::hopping(Duration::from_millis(10), Duration::from_millis(5)).unwrap())
        .count();
    let mut t = Topology::new(s);
    for at in [0, 4, 5, 9, 10] {
        t.process(0, Some(at));
    }
    let mut out = Vec::new();
    t.advance_with(i64::MAX / 8, &mut collect(&mut out));
    assert_eq!(
        out,
        [
            ('k', Window::new(-5, 5), 2),
            ('k', Window::new(0, 10), 4),
            ('k', Window::new(5, 15), 3),
            ('k', Window::new(10, 20), 1),
        ]
    );
}

#[test]
fn a_late_event_within_grace_updates_its_window_and_one_past_grace_goes_to_the_side_output() {
    let late = Arc::new(Mutex::new(Vec::new()));
    let side = late.clone();
    let s = Stream::<u32>::new()
        .key_by(|_| 'k')
        .window(
            Windows::tumbling(Duration::from_millis(10))
                .unwrap()
                .grace(Duration::from_millis(5))
                .emit(Emit::Updates),
        )
        .on_late(move |l| {
            side.lock()
                .unwrap()
                .push((l.value, l.time, l.watermark, l.reason))
        })
        .count();
    let mut t = Topology::new(s);
    let mut out = Vec::new();
    t.process_with(1, Some(1), &mut collect(&mut out));
    t.process_with(2, Some(2), &mut collect(&mut out));
    t.advance_with(12, &mut collect(&mut out)); // past the end, within grace
    t.process_with(3, Some(5), &mut collect(&mut out)); // late, within grace: counted
    assert_eq!(
        out,
        [
            ('k', Window::new(0, 10), 1),
            ('k', Window::new(0, 10), 2),
            ('k', Window::new(0, 10), 3)
        ],
        "running updates, the late one included"
    );
    t.advance_with(15, &mut collect(&mut out)); // end + grace: closed
    t.process_with(4, Some(9), &mut collect(&mut out)); // too late
    t.process_with(5, None, &mut collect(&mut out)); // no event time
    assert_eq!(out.len(), 3, "nothing more emitted");
    assert_eq!(
        *late.lock().unwrap(),
        [
            (4, Some(9), 15, LateReason::TooLate),
            (5, None, 15, LateReason::NoEventTime)
        ]
    );
    assert_eq!((t.metrics().late, t.metrics().untimed), (1, 1));
}

#[test]
fn on_close_emits_one_final_result_including_events_within_grace() {
    let s = Stream::<u32>::new()
        .key_by(|_| 'k')
        .window(
            Windows::tumbling(Duration::from_millis(10))
                .unwrap()
                .grace(Duration::from_millis(5)),
        )
        .count();
    let mut t = Topology::new(s);
    let mut out = Vec::new();
    t.process_with(1, Some(1), &mut collect(&mut out));
    t.advance_with(14, &mut collect(&mut out));
    t.process_with(2, Some(9), &mut collect(&mut out));
    assert!(out.is_empty(), "nothing before close");
    t.advance_with(15, &mut collect(&mut out));
    assert_eq!(out, [('k', Window::new(0, 10), 2)]);
}

#[test]
fn a_bridging_event_merges_two_sessions() {
    let s = Stream::<char>::new()
        .key_by(|k| *k)
        .window(Windows::session(Duration::from_millis(10)).unwrap())
        .count();
    let mut t = Topology::new(s);
    let mut out = Vec::new();
    t.process('a', Some(0)); // [0, 10)
    t.process('a', Some(15)); // [15, 25): 15 ms after the last, more than the gap
    t.process('b', Some(3)); // another key: never merged with a's
    t.process('a', Some(7)); // [7, 17) overlaps both: one session [0, 25)
    t.advance_with(i64::MAX / 8, &mut collect(&mut out));
    assert_eq!(
        out,
        [('b', Window::new(3, 13), 1), ('a', Window::new(0, 25), 3)]
    );
}

#[test]
fn sessions_apart_by_the_gap_stay_apart_and_a_too_late_one_is_set_aside() {
    let s = Stream::<char>::new()
        .key_by(|k| *k)
        .window(Windows::session(Duration::from_millis(10)).unwrap())
        .count();
    let mut t = Topology::new(s);
    let mut out = Vec::new();
    t.process('a', Some(0));
    t.process('a', Some(10)); // exactly the gap after: [0, 10) and [10, 20) do not overlap
    t.advance_with(10, &mut collect(&mut out));
    assert_eq!(out, [('a', Window::new(0, 10), 1)]);
    t.process('a', Some(-5)); // [-5, 5) closed at 10, touching no open session
    assert_eq!(t.metrics().late, 1);
    t.process('a', Some(12)); // joins [10, 20) -> [10, 22)
    out.clear();
    t.advance_with(22, &mut collect(&mut out));
    assert_eq!(out, [('a', Window::new(10, 22), 2)]);
}

#[tokio::test(start_paused = true)]
async fn an_idle_partition_stops_holding_the_watermark_back() {
    let config = WatermarkConfig::new()
        .out_of_orderness(Duration::from_millis(100))
        .unwrap()
        .idle_timeout(Duration::from_secs(1));
    let mut wm = Watermarks::new(config);
    wm.observe("eu", 10_000, Instant::now());
    wm.observe("us", 2_000, Instant::now());
    assert_eq!(
        wm.current(Instant::now()),
        1_900,
        "the minimum over partitions"
    );
    for step in 1..=9u64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        wm.observe("eu", 10_000 + step as i64 * 1_000, Instant::now());
        assert_eq!(
            wm.current(Instant::now()),
            1_900,
            "us not idle yet at {step}00 ms"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await; // us quiet for exactly 1 s
    wm.observe("eu", 20_000, Instant::now());
    assert_eq!(wm.current(Instant::now()), 19_900, "us idle: eu alone");
    wm.observe("us", 3_000, Instant::now()); // back, but the watermark never goes back
    assert_eq!(wm.current(Instant::now()), 19_900);
    wm.observe("us", 25_000, Instant::now());
    wm.observe("eu", 30_000, Instant::now());
    assert_eq!(wm.current(Instant::now()), 24_900, "us counts again");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(wm.current(Instant::now()), 29_900, "all idle: the largest");
}

#[test]
fn a_join_sees_the_table_as_it_is_when_each_event_comes() {
    let regions: Table<u32, String> = Table::new();
    // The table is built from a changelog (as CDC events would give), in its own topology.
    let mut changelog = Topology::new(
        Stream::<(u32, Option<&'static str>)>::new()
            .map(|(customer, region)| (customer, region.map(str::to_owned)))
            .to_table_changelog(&regions),
    );
    let s = Stream::<(u32, u64)>::new()
        .key_by(|(customer, _)| *customer)
        .left_join(&regions, |_, (customer, cents), region| {
            (customer, cents, region.cloned())
        });
    let mut orders = Topology::new(s);
    let mut out = Vec::new();
    let mut order =
        |t: &mut Topology<_, _>, o: (u32, u64)| t.process_with(o, None, &mut |x, _| out.push(x));
    order(&mut orders, (1, 100)); // no row yet
    changelog.process((1, Some("eu")), None);
    order(&mut orders, (1, 200));
    changelog.process((1, Some("us")), None);
    changelog.process((2, Some("ap")), None);
    order(&mut orders, (1, 300));
    order(&mut orders, (2, 400));
    changelog.process((1, None), None); // deleted
    order(&mut orders, (1, 500));
    assert_eq!(
        out,
        [
            (1, 100, None),
            (1, 200, Some("eu".to_string())),
            (1, 300, Some("us".to_string())),
            (2, 400, Some("ap".to_string())),
            (1, 500, None),
        ]
    );

    // The inner join drops what has no row.
    let inner = Stream::<(u32, u64)>::new()
        .key_by(|(c, _)| *c)
        .join(&regions, |_, (_, cents), region| {
            format!("{region}:{cents}")
        });
    let mut t = Topology::new(inner);
    let mut got = Vec::new();
    for o in [(1, 1), (2, 2)] {
        t.process_with(o, None, &mut |x, _| got.push(x));
    }
    assert_eq!(got, ["ap:2"]);
}

#[test]
fn a_restored_window_state_gives_the_uninterrupted_result() {
    let build = || {
        Stream::<(u8, i64)>::new()
            .key_by(|(k, _)| *k)
            .map(|(k, (_, v))| (k, v))
            .window(
                Windows::tumbling(Duration::from_millis(100))
                    .unwrap()
                    .grace(Duration::from_millis(50)),
            )
            .sum()
    };
    let events: Vec<((u8, i64), i64)> = (0..500)
        .map(|i| (((i % 7) as u8, i), (i * 37) % 1_000))
        .collect();
    let run = |split: Option<usize>| {
        let mut t = Topology::new(build());
        let mut out = Vec::new();
        let mut late = 0;
        for (i, (e, at)) in events.iter().enumerate() {
            if Some(i) == split {
                let saved = t.snapshot().unwrap();
                late += t.metrics().late; // counters are per process, not state
                t = Topology::new(build());
                t.restore(&saved).unwrap();
            }
            t.process(*e, Some(*at));
            if i % 50 == 49 {
                t.advance_with(*at - 200, &mut |r, _| out.push(r));
            }
        }
        t.advance_with(i64::MAX / 8, &mut |r, _| out.push(r));
        (out, late + t.metrics().late)
    };
    let whole = run(None);
    assert!(
        !whole.0.is_empty() && whole.1 > 0,
        "some windows and some late events"
    );
    for split in [1, 120, 333, 499] {
        assert_eq!(run(Some(split)), whole, "split at {split}");
    }
}

#[test]
fn branches_and_flat_maps_route_each_item_once() {
    let big = Arc::new(Mutex::new(Vec::new()));
    let sink = big.clone();
    let s = Stream::<Vec<u32>>::new()
        .flat_map(|v| v)
        .branch(
            |x| *x >= 10,
            move |b| b.for_each(move |x| sink.lock().unwrap().push(x)),
        )
        .filter(|x| x % 2 == 1);
    let mut t = Topology::new(s);
    let mut odd = Vec::new();
    t.process_with(vec![1, 2, 30, 5, 11], None, &mut |x, _| odd.push(x));
    assert_eq!(odd, [1, 5]);
    assert_eq!(*big.lock().unwrap(), [30, 11]);
}
