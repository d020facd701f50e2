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
