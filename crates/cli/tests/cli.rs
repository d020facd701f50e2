//! The `syncbus` binary, run as a user would.

use std::io::Write;
use std::process::{Command, Stdio};

fn syncbus(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_syncbus"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn match_reports_each_topic() {
    let (code, out, _) = syncbus(&["match", "orders.*", "orders.eu", "orders.eu.x"], b"");
    assert_eq!(code, 1, "one topic did not match");
    assert_eq!(out, "match\torders.eu\nno match\torders.eu.x\n");
    let (code, _, _) = syncbus(&["match", "orders.>", "orders.eu.x"], b"");
    assert_eq!(code, 0);
}

#[test]
fn match_rejects_bad_names() {
    let (code, _, err) = syncbus(&["match", "orders.>.x", "a"], b"");
    assert_eq!(code, 2);
    assert!(err.contains("invalid pattern"), "{err}");
    let (code, _, err) = syncbus(&["match", ">", "a..b"], b"");
    assert_eq!(code, 2);
    assert!(err.contains("invalid topic"), "{err}");
}

#[test]
fn decode_validates_and_normalises_cloudevents() {
    let input = br#"{"specversion":"1.0","id":"evt-1","source":"/shop","type":"shop.order.placed",
        "topic":"orders.placed","entityid":"42","entityversion":3,"data":{"total":10}}"#;
    let (code, out, err) = syncbus(&["decode"], input);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["id"], "evt-1");
    assert_eq!(v["entityid"], "42");
    assert_eq!(v["entityversion"], 3);
    assert_eq!(v["data"]["total"], 10);

    let (code, _, err) = syncbus(
        &["decode"],
        br#"{"specversion":"1.0","source":"/x","type":"t"}"#,
    );
    assert_eq!(code, 2);
    assert!(err.contains("invalid envelope"), "{err}");
    let (code, _, err) = syncbus(&["decode", "--binary"], b"\x01garbage");
    assert_eq!(code, 2);
    assert!(err.contains("invalid envelope"), "{err}");
}

#[test]
fn unknown_command_prints_usage() {
    let (code, _, err) = syncbus(&["frobnicate"], b"");
    assert_eq!(code, 2);
    assert!(err.contains("usage:"), "{err}");
    let (code, out, _) = syncbus(&["--version"], b"");
    assert_eq!(code, 0);
    assert!(out.starts_with("syncbus "));
}

/// A store file with one dead letter in it; returns the record's id.
fn store_with_a_dead_letter(path: &std::path::Path) -> String {
    use syncbus::store::SqliteStore;
    use syncbus::store::{DeadLetterRecord, DeadLetterStore};
    use syncbus::{Bytes, Envelope, ErrorKind, EventType, Metadata, Timestamp};
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(path).await.unwrap();
        let meta = Metadata::new(EventType::new("shop.payment.requested").unwrap())
            .with_topic(syncbus::Topic::from_static("payments.requested"));
        let id = syncbus::store::DeadLetterId::new();
        store
            .dead_letters()
            .put(DeadLetterRecord {
                id: id.clone(),
                envelope: Envelope::new(meta, Bytes::from_static(b"{\"cents\":0}")),
                subscription: "charge-card".into(),
                handler: "charge-card".into(),
                error_kind: ErrorKind::Permanent,
                error_chain: vec!["nothing to charge".into()],
                attempts: 1,
                first_failure: Timestamp::now(),
                last_failure: Timestamp::now(),
            })
            .await
            .unwrap();
        id.to_string()
    })
}

#[test]
fn dead_letters_can_be_listed_shown_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let id = store_with_a_dead_letter(&db);
    let db = db.to_str().unwrap();

    let (code, out, err) = syncbus(&["dead-letters", "list", db], b"");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&id) && out.contains("charge-card") && out.contains("nothing to charge"),
        "{out}"
    );
    assert!(err.contains("1 dead letters"));
    let (_, out, _) = syncbus(&["dead-letters", "list", db, "--topic", "orders.>"], b"");
    assert!(out.is_empty(), "{out}");
    let (_, out, _) = syncbus(
        &[
            "dead-letters",
            "list",
            db,
            "--error",
            "charge",
            "--limit",
            "5",
        ],
        b"",
    );
    assert!(out.contains(&id));

    let (code, out, _) = syncbus(&["dead-letters", "show", db, &id], b"");
    assert_eq!(code, 0);
    assert!(out.contains("\"type\":\"shop.payment.requested\""), "{out}");
    assert!(out.contains("error:        nothing to charge"), "{out}");

    let (code, out, _) = syncbus(&["dead-letters", "delete", db, &id], b"");
    assert_eq!((code, out.trim()), (0, format!("deleted {id}").as_str()));
    let (code, _, err) = syncbus(&["dead-letters", "delete", db, &id], b"");
    assert_eq!(code, 2);
    assert!(err.contains("no dead letter"), "{err}");
}

#[test]
fn dead_letter_commands_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.db");
    let (code, _, err) = syncbus(&["dead-letters", "list", missing.to_str().unwrap()], b"");
    assert_eq!(code, 2);
    assert!(err.contains("no such store file"), "{err}");
    assert!(!missing.exists(), "an inspection must not create a store");

    let garbage = dir.path().join("garbage.db");
    std::fs::write(
        &garbage,
        b"this is not a database, just some bytes of text..........",
    )
    .unwrap();
    let (code, _, err) = syncbus(&["dead-letters", "list", garbage.to_str().unwrap()], b"");
    assert_eq!(code, 2);
    assert!(err.contains("is not an SQLite database"), "{err}");
    assert_eq!(
        err.matches("garbage.db").count(),
        1,
        "the file named once: {err}"
    );

    let db = dir.path().join("app.db");
    store_with_a_dead_letter(&db);
    let db = db.to_str().unwrap();
    for args in [
        vec!["dead-letters", "list", db, "--limit", "many"],
        vec!["dead-letters", "list", db, "--topic", "a..b"],
        vec!["dead-letters", "list", db, "--colour", "red"],
        vec!["dead-letters", "show", db, "has spaces"],
        vec!["dead-letters", "explode", db],
    ] {
        let (code, _, err) = syncbus(&args, b"");
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(!err.is_empty());
    }
}
