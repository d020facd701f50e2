//! `#[derive(Event)]` gives what the hand-written impl gives: the same `TYPE`, `TOPIC`,
//! entity id and version, and the same metadata on an envelope published on a bus.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use syncbus::{Bus, EntityId, Envelope, Event, ToEntityId};

/// What a subscription saw of one event's metadata.
#[derive(Debug, PartialEq)]
struct Seen {
    event_type: String,
    topic: Option<String>,
    entity_id: Option<String>,
    version: Option<u64>,
}

impl Seen {
    fn of<E: Event>(env: &Envelope<E>) -> Seen {
        let meta = env.meta();
        Seen {
            event_type: meta.event_type().to_string(),
            topic: meta.topic().map(|t| t.to_string()),
            entity_id: meta.entity_id().map(|id| id.to_string()),
            version: meta.version(),
        }
    }
}

/// Publishes `event` on a fresh bus and returns the metadata its subscription saw.
fn published<E: Event>(event: E) -> Seen {
    let bus = Bus::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let _sub = bus
        .subscribe::<E>(">")
        .unwrap()
        .inline(move |env| log.lock().unwrap().push(Seen::of(env)))
        .unwrap();
    assert_eq!(bus.blocking_publish(event).unwrap(), 1);
    let mut seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    seen.pop().unwrap()
}

fn assert_same<D: Event, M: Event>(derived: D, manual: M) {
    assert_eq!(D::TYPE, M::TYPE);
    assert_eq!(D::TOPIC, M::TOPIC);
    assert_eq!(derived.entity_id(), manual.entity_id());
    assert_eq!(derived.version(), manual.version());
    assert_eq!(published(derived), published(manual));
}

#[derive(Clone, Debug, Event)]
#[event(type = "shop.order.status", topic = "orders.status", entity = order, version = step)]
struct Derived {
    order: u64,
    step: u64,
    #[allow(dead_code)]
    status: &'static str,
}

#[derive(Clone, Debug)]
struct Manual {
    order: u64,
    step: u64,
}

impl Event for Manual {
    const TYPE: &'static str = "shop.order.status";
    const TOPIC: &'static str = "orders.status";
    fn entity_id(&self) -> Option<EntityId> {
        Some(self.order.into())
    }
    fn version(&self) -> Option<u64> {
        Some(self.step)
    }
}

#[test]
fn every_key_gives_what_the_manual_impl_gives() {
    let derived = Derived {
        order: 42,
        step: 3,
        status: "paid",
    };
    assert_same(derived.clone(), Manual { order: 42, step: 3 });
    assert_eq!(
        published(derived),
        Seen {
            event_type: "shop.order.status".into(),
            topic: Some("orders.status".into()),
            entity_id: Some("42".into()),
            version: Some(3),
        }
    );
}

#[derive(Clone, Debug, Event)]
#[event(type = "demo.ping")]
struct DerivedPing;

#[derive(Clone, Debug)]
struct ManualPing;

impl Event for ManualPing {
    const TYPE: &'static str = "demo.ping";
}

#[test]
fn without_topic_entity_or_version_the_trait_defaults_hold() {
    assert_eq!(DerivedPing::TOPIC, "demo.ping");
    assert_same(DerivedPing, ManualPing);
    assert_eq!(
        published(DerivedPing),
        Seen {
            event_type: "demo.ping".into(),
            topic: Some("demo.ping".into()),
            entity_id: None,
            version: None,
        }
    );
}

#[derive(Clone, Debug, Event)]
#[event(type = "inventory.stock.counted", entity = 0, version = 2)]
struct Counted(String, u32, u32);

#[derive(Clone, Debug)]
struct ManualCounted(String, u32, u32);

impl Event for ManualCounted {
    const TYPE: &'static str = "inventory.stock.counted";
    fn entity_id(&self) -> Option<EntityId> {
        EntityId::new(&self.0).ok()
    }
    fn version(&self) -> Option<u64> {
        Some(self.2.into())
    }
}

#[test]
fn a_tuple_struct_names_fields_by_index() {
    assert_same(
        Counted("sku-7".into(), 12, 5),
        ManualCounted("sku-7".into(), 12, 5),
    );
    let counted = Counted("sku-7".into(), 12, 5);
    assert_eq!(counted.1, 12);
    assert_eq!(published(counted).version, Some(5));
    assert_eq!(ManualCounted("sku-7".into(), 12, 5).1, 12);
}

#[test]
fn a_string_that_is_no_entity_id_gives_none_as_the_manual_impl_does() {
    assert_same(
        Counted("a\nb".into(), 0, 1),
        ManualCounted("a\nb".into(), 0, 1),
    );
    assert_eq!(Counted(String::new(), 0, 1).entity_id(), None);
}

/// An id type of the application's own, and a version newtype.
#[derive(Clone, Debug)]
struct OrderId(u32);

impl ToEntityId for OrderId {
    fn to_entity_id(&self) -> Option<EntityId> {
        EntityId::new(format!("order-{}", self.0)).ok()
    }
}

#[derive(Clone, Debug)]
struct Revision(u16);

impl From<Revision> for u64 {
    fn from(r: Revision) -> u64 {
        r.0.into()
    }
}

#[derive(Clone, Debug, Event)]
#[event(type = "shop.order.moved", entity = id, version = rev)]
struct Moved {
    id: OrderId,
    rev: Revision,
}

#[derive(Clone, Debug, Event)]
#[event(type = "shop.order.noted", entity = order)]
struct Noted {
    order: Option<Cow<'static, str>>,
}

#[test]
fn own_id_and_version_types_and_options_work() {
    let moved = Moved {
        id: OrderId(9),
        rev: Revision(4),
    };
    assert_eq!(moved.entity_id().unwrap().as_str(), "order-9");
    assert_eq!(published(moved).version, Some(4));

    let noted = Noted {
        order: Some(Cow::Borrowed("order-1")),
    };
    assert_eq!(published(noted).entity_id.as_deref(), Some("order-1"));
    assert_eq!(Noted { order: None }.entity_id(), None);
}

#[derive(Clone, Debug, Event)]
#[event(type = "sync.row.changed", topic = "sync.rows", entity = key, version = version)]
struct RowChanged<K, const N: usize>
where
    K: ToEntityId,
{
    key: K,
    version: u64,
    columns: [u8; N],
}

#[derive(Clone, Debug, Event)]
#[event(type = "sync.key.changed", entity = 0, version = 1)]
struct KeyChanged<K, V>(K, V);

#[derive(Clone, Debug, Event)]
#[event(type = "sync.name.changed", entity = name)]
struct NameChanged<'a> {
    name: &'a str,
}

#[test]
fn generic_events_get_an_impl_for_every_instance_the_trait_allows() {
    let row = RowChanged {
        key: 5u64,
        version: 2,
        columns: [1, 2],
    };
    assert_eq!(row.columns.len(), 2);
    assert_eq!(RowChanged::<String, 0>::TYPE, RowChanged::<u64, 2>::TYPE);
    assert_eq!(
        published(row),
        Seen {
            event_type: "sync.row.changed".into(),
            topic: Some("sync.rows".into()),
            entity_id: Some("5".into()),
            version: Some(2),
        }
    );
    let by_name = RowChanged {
        key: "row-a".to_string(),
        version: 1,
        columns: [],
    };
    assert_eq!(published(by_name).entity_id.as_deref(), Some("row-a"));
    // The fields read need no bound in the source: the derive asks for what it reads.
    assert_eq!(
        published(KeyChanged("k-1", 7u32)),
        Seen {
            event_type: "sync.key.changed".into(),
            topic: Some("sync.key.changed".into()),
            entity_id: Some("k-1".into()),
            version: Some(7),
        }
    );
    assert_eq!(
        KeyChanged(Some(3u8), 1u8).entity_id().unwrap().as_str(),
        "3"
    );
    // A borrowing event is an event for `'static` borrows.
    assert_eq!(
        published(NameChanged { name: "ada" }).entity_id.as_deref(),
        Some("ada")
    );
}

/// The facade under another name, as `syncbus = { package = .. }` or a re-export gives it.
mod reexported {
    pub(crate) use syncbus as bus;
}

#[derive(Clone, Debug, Event)]
#[event(crate = crate::reexported::bus, type = "demo.renamed", entity = 0)]
#[event(topic = "demo.renamed.here")]
struct Renamed(i64);

#[derive(Clone, Debug, Event)]
#[event(type = "demo.renamed", crate = "::syncbus")]
struct RenamedByString;

/// For a crate that depends on `syncbus-envelope` alone.
#[derive(Clone, Debug, Event)]
#[event(crate = ::syncbus_envelope, type = "demo.envelope.only", entity = id, version = v)]
struct EnvelopeOnly {
    id: u32,
    v: u8,
}

#[test]
fn crate_names_where_the_items_are_and_keys_may_span_attributes() {
    let env = syncbus_envelope::Envelope::from_event(EnvelopeOnly { id: 3, v: 1 });
    assert_eq!(
        Seen::of(&env),
        Seen {
            event_type: "demo.envelope.only".into(),
            topic: Some("demo.envelope.only".into()),
            entity_id: Some("3".into()),
            version: Some(1),
        }
    );
    assert_eq!(
        published(Renamed(-3)),
        Seen {
            event_type: "demo.renamed".into(),
            topic: Some("demo.renamed.here".into()),
            entity_id: Some("-3".into()),
            version: None,
        }
    );
    assert_eq!(RenamedByString::TOPIC, "demo.renamed");
}

/// A derived event encodes as JSON when it is `Serialize` (so a tap sees its payload), and
/// is not encodable otherwise (a tap sees its metadata alone).
#[test]
fn a_serializable_derived_event_encodes_as_json_and_another_does_not() {
    #[derive(Clone, Debug, serde::Serialize, Event)]
    #[event(type = "demo.paid")]
    struct Paid {
        cents: u64,
    }
    #[derive(Clone, Debug, Event)]
    #[event(type = "demo.opaque")]
    struct Opaque;

    let encoded = Paid { cents: 5 }
        .encode()
        .expect("Serialize: encodable")
        .unwrap();
    assert_eq!(encoded.bytes().as_ref(), br#"{"cents":5}"#);
    assert_eq!(encoded.content_type(), Some("application/json"));
    assert!(Opaque.encode().is_none());

    let bus = Bus::new();
    let seen: Arc<Mutex<Vec<Option<Vec<u8>>>>> = Arc::default();
    let s = seen.clone();
    let _tap = bus
        .tap(">")
        .unwrap()
        .inline(move |t| {
            s.lock()
                .unwrap()
                .push(t.payload().bytes().map(|b| b.to_vec()));
        })
        .unwrap();
    bus.blocking_publish(Paid { cents: 7 }).unwrap();
    bus.blocking_publish(Opaque).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Some(br#"{"cents":7}"#.to_vec()), None]
    );
}
