//! Syntax checks for the CloudEvents `URI` and `URI-reference` types (RFC 3986).
//!
//! Only validation: the text is kept as it came. A `URI` is an absolute URI (a scheme, then
//! the rest); a fragment is accepted, as the CloudEvents SDKs accept it in `dataschema`. A
//! `URI-reference` is a URI or a relative reference (`/shop/orders`, `../x?y#z`).

use crate::name_error::{NameError, NameKind, NameReason};

/// Checks that `s` is an absolute URI.
pub(crate) fn check_uri(s: &str) -> Result<(), NameError> {
    check(s, NameKind::Uri, true)
}

/// Checks that `s` is a URI-reference: a URI or a relative reference. An empty string is a
/// valid relative reference in RFC 3986 but not a valid CloudEvents `source`; callers that
/// need it non-empty check that themselves.
pub(crate) fn check_uri_reference(s: &str) -> Result<(), NameError> {
    check(s, NameKind::UriReference, false)
}

fn check(s: &str, kind: NameKind, absolute: bool) -> Result<(), NameError> {
    let b = s.as_bytes();
    let bad = |byte: usize, rule: &'static str| {
        let ch = s[byte..].chars().next().unwrap_or('\0');
        NameError::new(kind, NameReason::InvalidChar { ch, byte, rule }, s)
    };
    if b.is_empty() {
        return if absolute {
            Err(NameError::new(kind, NameReason::Empty, s))
        } else {
            Ok(())
        };
    }
    // Every character must be one a URI may hold at all; which one goes where comes next.
    if let Some(i) = b.iter().position(|&c| !is_uri_char(c)) {
        return Err(bad(i, "not a character a uri may contain (rfc 3986)"));
    }
    let end_of_main = b
        .iter()
        .position(|&c| c == b'?' || c == b'#')
        .unwrap_or(b.len());
    // Query and fragment: pchar / "/" / "?"; the fragment starts at the first '#'.
    if let Some(hash) = b.iter().position(|&c| c == b'#') {
        if let Some(i) = b[hash + 1..].iter().position(|&c| c == b'#') {
            return Err(bad(hash + 1 + i, "only one '#' may appear in a uri"));
        }
    }
    for (i, &c) in b.iter().enumerate().skip(end_of_main) {
        if matches!(c, b'[' | b']') {
            return Err(bad(i, "'[' and ']' may only enclose an ip literal host"));
        }
    }
    check_percent(b, 0, b.len()).map_err(|i| bad(i, "'%' must be followed by two hex digits"))?;

    let main = &b[..end_of_main];
    let first_delim = main.iter().position(|&c| c == b'/' || c == b':');
    let rest_at = match first_delim {
        Some(colon) if main[colon] == b':' => {
            if !is_scheme(&main[..colon]) {
                return Err(bad(
                    0,
                    "a scheme starts with a letter and holds only letters, digits, '+', '-' and '.'",
                ));
            }
            colon + 1
        }
        _ if absolute => {
            return Err(bad(
                0,
                "an absolute uri starts with a scheme such as 'https:'",
            ));
        }
        _ => 0,
    };
    let rest = &main[rest_at..];
    let path_at = if rest.starts_with(b"//") {
        let auth_start = rest_at + 2;
        let auth_end = main[auth_start..]
            .iter()
            .position(|&c| c == b'/')
            .map_or(main.len(), |i| auth_start + i);
        check_authority(&main[auth_start..auth_end], auth_start).map_err(|(i, r)| bad(i, r))?;
        auth_end
    } else {
        rest_at
    };
    if let Some(i) = main[path_at..]
        .iter()
        .position(|&c| matches!(c, b'[' | b']'))
    {
        return Err(bad(
            path_at + i,
            "'[' and ']' may only enclose an ip literal host",
        ));
    }
    Ok(())
}

/// Checks an authority (`userinfo@host:port`) whose first byte is at `at` in the whole text.
fn check_authority(a: &[u8], at: usize) -> Result<(), (usize, &'static str)> {
    let host_start = a.iter().rposition(|&c| c == b'@').map_or(0, |i| i + 1);
    if let Some(i) = a[..host_start.saturating_sub(1)]
        .iter()
        .position(|&c| matches!(c, b'[' | b']' | b'@'))
    {
        return Err((at + i, "not allowed in the user information of a uri"));
    }
    let host = &a[host_start..];
    let port_at = if host.first() == Some(&b'[') {
        let close = host
            .iter()
            .position(|&c| c == b']')
            .ok_or((at + host_start, "an ip literal host needs its closing ']'"))?;
        if let Some(i) = host[1..close]
            .iter()
            .position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b':' | b'.')))
        {
            return Err((at + host_start + 1 + i, "not allowed in an ip literal host"));
        }
        close + 1
    } else {
        if let Some(i) = host.iter().position(|&c| matches!(c, b'[' | b']')) {
            return Err((
                at + host_start + i,
                "'[' and ']' may only enclose an ip literal host",
            ));
        }
        host.iter().position(|&c| c == b':').unwrap_or(host.len())
    };
    match host.get(port_at) {
        None => Ok(()),
        Some(b':') => match host[port_at + 1..].iter().position(|c| !c.is_ascii_digit()) {
            None => Ok(()),
            Some(i) => Err((
                at + host_start + port_at + 1 + i,
                "a port holds only digits",
            )),
        },
        Some(_) => Err((
            at + host_start + port_at,
            "expected ':' and a port after the host",
        )),
    }
}

/// The index of the first '%' in `b[from..to]` not followed by two hex digits.
fn check_percent(b: &[u8], from: usize, to: usize) -> Result<(), usize> {
    let mut i = from;
    while i < to {
        if b[i] == b'%' {
            let ok = b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return Err(i);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

fn is_scheme(s: &[u8]) -> bool {
    s.first().is_some_and(u8::is_ascii_alphabetic)
        && s.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// Unreserved, reserved (gen-delims and sub-delims) and '%'.
fn is_uri_char(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b':'
                | b'/'
                | b'?'
                | b'#'
                | b'['
                | b']'
                | b'@'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b'%'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        for ok in [
            "https://example.com/schema.json",
            "https://user:pw@example.com:8443/a/b?c=d&e#f/g?h",
            "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
            "mailto:cncf-wg-serverless@lists.cncf.io",
            "http://[::1]:8080/",
            "http://127.0.0.1",
            "file:///tmp/x%20y",
            "a:",
        ] {
            assert_eq!(check_uri(ok), Ok(()), "{ok}");
            assert_eq!(check_uri_reference(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/relative/path",
            "example.com/x",
            "1http://x",
            "http://exa mple.com",
            "http://example.com/é",
            "http://example.com/%zz",
            "http://example.com/a#b#c",
            "http://[::1/x",
            "http://host:80a/",
            "http://ho[st/",
            "https://example.com/a[1]",
        ] {
            assert!(check_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uri_references() {
        for ok in [
            "/sensors/tn-1234567/alerts",
            "../up?q#f",
            "//example.com/x",
            "x",
            "./a:b",
            "?only-query",
            "#only-fragment",
            "",
        ] {
            assert_eq!(check_uri_reference(ok), Ok(()), "{ok}");
        }
        for bad in [
            "a b",
            "1a:b",
            "/café",
            "50%",
            "\\windows\\path",
            "a|b",
            "<x>",
        ] {
            assert!(check_uri_reference(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn checks_never_panic(s in "\\PC{0,24}|[a-z:/?#\\[\\]@%0-9.]{0,24}") {
            let _ = check_uri(&s);
            let _ = check_uri_reference(&s);
            // Whatever a URI is, it is also a URI-reference.
            if check_uri(&s).is_ok() {
                proptest::prop_assert!(check_uri_reference(&s).is_ok());
            }
        }
    }

    #[test]
    fn errors_point_at_the_character() {
        let err = check_uri_reference("/a b").unwrap_err();
        assert_eq!(err.position(), Some(2));
        assert_eq!(err.kind(), NameKind::UriReference);
        let err = check_uri("/a").unwrap_err();
        assert_eq!((err.kind(), err.position()), (NameKind::Uri, Some(0)));
    }
}
