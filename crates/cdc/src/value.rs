//! PostgreSQL values (text form) as JSON, by type oid.
//!
//! | type | JSON |
//! | --- | --- |
//! | `int2`, `int4`, `int8`, `oid` | number |
//! | `float4`, `float8` | number (`NaN`, `Infinity` as strings) |
//! | `numeric` | string (exact; JSON numbers are doubles to most readers) |
//! | `bool` | `true` / `false` |
//! | `json`, `jsonb` | the JSON value itself |
//! | `text`, `varchar`, `uuid`, `date`, `timestamp`, `timestamptz`, ... | string as PostgreSQL prints it |
//! | one-dimensional or nested arrays of the above | array |
//! | SQL null | `null` |
//! | anything else | string (its text form): never an error |

use serde_json::Value;

const BOOL: u32 = 16;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const OID: u32 = 26;
const JSON: u32 = 114;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const JSONB: u32 = 3802;

/// The element type of an array type, or `None` for a scalar.
fn element_of(oid: u32) -> Option<u32> {
    Some(match oid {
        1000 => BOOL,
        1005 => INT2,
        1007 => INT4,
        1016 => INT8,
        1028 => OID,
        1021 => FLOAT4,
        1022 => FLOAT8,
        199 => JSON,
        3807 => JSONB,
        // text, varchar, bpchar, name, numeric, uuid, date, time, timestamp(tz), interval, bytea
        1009 | 1015 | 1014 | 1003 | 1231 | 2951 | 1182 | 1183 | 1115 | 1185 | 1187 | 1001 => 25,
        _ => return None,
    })
}

/// `text` (the value PostgreSQL printed) as JSON for a column of type `oid`.
pub(crate) fn to_json(oid: u32, text: &str) -> Value {
    if let Some(elem) = element_of(oid) {
        return match parse_array(text, elem) {
            Some(v) => v,
            None => Value::String(text.to_owned()),
        };
    }
    scalar(oid, text)
}

fn scalar(oid: u32, text: &str) -> Value {
    match oid {
        INT2 | INT4 | INT8 | OID => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(text.to_owned())),
        FLOAT4 | FLOAT8 => match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Value::from(f),
            _ => Value::String(text.to_owned()),
        },
        BOOL => match text {
            "t" | "true" => Value::Bool(true),
            "f" | "false" => Value::Bool(false),
            other => Value::String(other.to_owned()),
        },
        JSON | JSONB => {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
        }
        _ => Value::String(text.to_owned()),
    }
}

/// A PostgreSQL array literal (`{1,2,NULL}`, `{"a b",c}`, `{{1,2},{3,4}}`), or `None` if it
/// is not one (the caller keeps the text).
fn parse_array(text: &str, elem: u32) -> Option<Value> {
    // Arrays with explicit bounds print as `[0:1]={..}`.
    let body = match text.find('=') {
        Some(i) if text.starts_with('[') => &text[i + 1..],
        _ => text,
    };
    let mut chars = body.char_indices().peekable();
    let v = array_at(body, &mut chars, elem)?;
    chars.next().is_none().then_some(v)
}

fn array_at(
    s: &str,
    it: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    elem: u32,
) -> Option<Value> {
    if it.next()?.1 != '{' {
        return None;
    }
    let mut out = Vec::new();
    if it.peek()?.1 == '}' {
        it.next();
        return Some(Value::Array(out));
    }
    loop {
        match it.peek()?.1 {
            '{' => out.push(array_at(s, it, elem)?),
            '"' => {
                it.next();
                let mut v = String::new();
                loop {
                    let (_, c) = it.next()?;
                    match c {
                        '\\' => v.push(it.next()?.1),
                        '"' => break,
                        c => v.push(c),
                    }
                }
                out.push(scalar(elem, &v));
            }
            _ => {
                let (start, _) = *it.peek()?;
                let mut end = start;
                while let Some(&(i, c)) = it.peek() {
                    if c == ',' || c == '}' {
                        break;
                    }
                    end = i + c.len_utf8();
                    it.next();
                }
                let raw = s[start..end].trim();
                out.push(if raw.eq_ignore_ascii_case("NULL") {
                    Value::Null
                } else {
                    scalar(elem, raw)
                });
            }
        }
        match it.next()?.1 {
            ',' => continue,
            '}' => return Some(Value::Array(out)),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars() {
        assert_eq!(to_json(INT4, "42"), json!(42));
        assert_eq!(to_json(INT8, "-9000000000"), json!(-9000000000i64));
        assert_eq!(to_json(1700, "12.3400"), json!("12.3400"));
        assert_eq!(to_json(BOOL, "t"), json!(true));
        assert_eq!(to_json(FLOAT8, "NaN"), json!("NaN"));
        assert_eq!(to_json(FLOAT8, "1.5"), json!(1.5));
        assert_eq!(to_json(JSONB, r#"{"a": [1]}"#), json!({"a": [1]}));
        assert_eq!(to_json(JSON, "not json"), json!("not json"));
        // an unknown type (a PostGIS geometry, an enum): its text
        assert_eq!(to_json(987654, "POINT(1 2)"), json!("POINT(1 2)"));
    }

    #[test]
    fn arrays() {
        assert_eq!(to_json(1007, "{1,2,NULL}"), json!([1, 2, null]));
        assert_eq!(
            to_json(1009, r#"{"a b",c,"q\"x","NULL"}"#),
            json!(["a b", "c", "q\"x", "NULL"])
        );
        assert_eq!(to_json(1007, "{{1,2},{3,4}}"), json!([[1, 2], [3, 4]]));
        assert_eq!(to_json(1000, "{t,f}"), json!([true, false]));
        assert_eq!(to_json(1007, "{}"), json!([]));
        assert_eq!(to_json(1007, "[0:1]={5,6}"), json!([5, 6]));
        // malformed: kept as text, never a panic
        assert_eq!(to_json(1007, "{1,2"), json!("{1,2"));
        assert_eq!(to_json(1007, "{\"x"), json!("{\"x"));
    }
}

/// Writes `text` as JSON for a column of type `oid` straight into `out`: the same mapping as
/// [`to_json`], without building a `Value` for the common scalar types (the hot path).
pub(crate) fn write_json(out: &mut Vec<u8>, oid: u32, text: &str) {
    match oid {
        INT2 | INT4 | INT8 | OID if is_int(text) && text.len() < 19 => {
            out.extend_from_slice(text.as_bytes())
        }
        INT2 | INT4 | INT8 | OID => match text.parse::<i64>() {
            Ok(v) => {
                let _ = serde_json::to_writer(&mut *out, &v);
            }
            Err(_) => write_str(out, text),
        },
        FLOAT4 | FLOAT8 => match text.parse::<f64>() {
            Ok(f) if f.is_finite() => {
                let _ = serde_json::to_writer(&mut *out, &f);
            }
            _ => write_str(out, text),
        },
        BOOL if text == "t" => out.extend_from_slice(b"true"),
        BOOL if text == "f" => out.extend_from_slice(b"false"),
        // The server's text form of json and jsonb is JSON (checked when it was stored).
        JSON | JSONB if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => {
            out.extend_from_slice(text.as_bytes())
        }
        _ if element_of(oid).is_some() || matches!(oid, JSON | JSONB) => {
            let _ = serde_json::to_writer(&mut *out, &to_json(oid, text));
        }
        _ => write_str(out, text),
    }
}

/// A JSON string.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

fn is_int(s: &str) -> bool {
    is_int_bytes(s.as_bytes())
}

/// Digits JSON reads back as the same integer: no leading zero, no `-0`.
fn is_int_bytes(s: &[u8]) -> bool {
    let (neg, d) = match s.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, s),
    };
    !d.is_empty() && d.iter().all(u8::is_ascii_digit) && (d[0] != b'0' || (d == b"0" && !neg))
}

/// [`write_json`] of a value's bytes as the server sent them: an integer's digits are copied
/// as they are; anything else is checked as UTF-8 first (replaced where it is not).
pub(crate) fn write_json_bytes(out: &mut Vec<u8>, oid: u32, text: &[u8]) {
    match oid {
        INT2 | INT4 | INT8 | OID if is_int_bytes(text) && text.len() < 19 => {
            out.extend_from_slice(text)
        }
        _ => match std::str::from_utf8(text) {
            Ok(s) => write_json(out, oid, s),
            Err(_) => write_json(out, oid, &String::from_utf8_lossy(text)),
        },
    }
}

#[cfg(test)]
mod write_tests {
    use super::*;

    #[test]
    fn written_as_to_json_maps() {
        for (oid, text) in [
            (INT4, "42"),
            (INT8, "-7"),
            (INT4, "007"),
            (1700, "12.50"),
            (BOOL, "t"),
            (BOOL, "f"),
            (FLOAT8, "1.5"),
            (FLOAT8, "NaN"),
            (FLOAT8, "1e+20"),
            (JSONB, r#"{"a": [1]}"#),
            (JSON, "not json"),
            (1007, "{1,NULL}"),
            (1009, r#"{"a b",c}"#),
            (25, "q\"x\n"),
            (987654, "POINT(1 2)"),
            (INT4, "-0"),
            (INT8, "12345678901234567890"),
        ] {
            let mut out = Vec::new();
            write_json(&mut out, oid, text);
            let back: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, to_json(oid, text), "{oid} {text:?}");
            let mut raw = Vec::new();
            write_json_bytes(&mut raw, oid, text.as_bytes());
            assert_eq!(raw, out, "{oid} {text:?} from bytes");
        }
        // not UTF-8: replaced, still a JSON string
        let mut raw = Vec::new();
        write_json_bytes(&mut raw, 25, b"a\xffb");
        assert_eq!(serde_json::from_slice::<Value>(&raw).unwrap(), "a\u{fffd}b");
    }
}
