//! Topic → subject: `<root>.<topic>` and, when asked, `.<entity>` as the last token.
//!
//! Topics already follow NATS's token rules (dot-separated, no spaces, `*` and `>` only in
//! patterns), so they map one to one. An entity id may hold any character, so it is
//! escaped into one token: bytes outside `[A-Za-z0-9_-]` become `%XX`.

use std::fmt::Write as _;

use syncbus_envelope::{Bytes, Envelope};

/// The subject `env` is published on, or why it has none.
pub(crate) fn subject_for(
    root: &str,
    env: &Envelope<Bytes>,
    entity_in_subject: bool,
) -> Result<String, String> {
    let meta = env.meta();
    let topic = meta
        .topic()
        .ok_or_else(|| format!("event {} has no topic to map to a subject", meta.id()))?;
    let mut subject = String::with_capacity(root.len() + topic.as_str().len() + 24);
    subject.push_str(root);
    subject.push('.');
    subject.push_str(topic.as_str());
    if entity_in_subject {
        if let Some(entity) = meta.entity_id() {
            subject.push('.');
            escape_token(entity.as_str(), &mut subject);
        }
    }
    Ok(subject)
}

fn escape_token(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncbus_envelope::{EntityId, EventType, Metadata, Topic};

    fn env(entity: Option<&str>) -> Envelope<Bytes> {
        let mut meta = Metadata::new(EventType::new("order.placed").unwrap())
            .with_topic(Topic::from_static("orders.placed"));
        if let Some(e) = entity {
            meta = meta.with_entity_id(Some(EntityId::new(e).unwrap()));
        }
        Envelope::new(meta, Bytes::new())
    }

    #[test]
    fn topic_and_entity_map_to_tokens() {
        assert_eq!(
            subject_for("ORD", &env(None), true).unwrap(),
            "ORD.orders.placed"
        );
        assert_eq!(
            subject_for("ORD", &env(Some("A-7")), true).unwrap(),
            "ORD.orders.placed.A-7"
        );
        assert_eq!(
            subject_for("ORD", &env(Some("a.b *>")), true).unwrap(),
            "ORD.orders.placed.a%2Eb%20%2A%3E"
        );
        assert_eq!(
            subject_for("ORD", &env(Some("A-7")), false).unwrap(),
            "ORD.orders.placed"
        );
    }

    #[test]
    fn no_topic_is_an_error() {
        let e = Envelope::new(Metadata::new(EventType::new("x").unwrap()), Bytes::new());
        assert!(subject_for("R", &e, true).unwrap_err().contains("no topic"));
    }
}
