//! Standard base64 with padding (RFC 4648, section 4) for CloudEvents `data_base64`.
//!
//! Hand-written to keep the dependency tree small; tested against the RFC vectors and by a
//! round-trip property test.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Appends the base64 form of `input` to `out`.
pub(crate) fn encode_into(input: &[u8], out: &mut Vec<u8>) {
    out.reserve(encoded_len(input.len()));
    let mut chunks = input.chunks_exact(3);
    for c in &mut chunks {
        let n = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        out.extend_from_slice(&[
            ALPHABET[(n >> 18) as usize & 63],
            ALPHABET[(n >> 12) as usize & 63],
            ALPHABET[(n >> 6) as usize & 63],
            ALPHABET[n as usize & 63],
        ]);
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend_from_slice(&[
                ALPHABET[(n >> 18) as usize & 63],
                ALPHABET[(n >> 12) as usize & 63],
                b'=',
                b'=',
            ]);
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            out.extend_from_slice(&[
                ALPHABET[(n >> 18) as usize & 63],
                ALPHABET[(n >> 12) as usize & 63],
                ALPHABET[(n >> 6) as usize & 63],
                b'=',
            ]);
        }
        _ => {}
    }
}

fn encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Upper bound on the decoded size of `len` base64 characters.
pub(crate) fn decoded_len_max(len: usize) -> usize {
    len / 4 * 3 + (len % 4) * 3 / 4
}

fn value(c: u8) -> Option<u32> {
    Some(u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    }))
}

/// Decodes base64, with or without padding. Returns a static reason on bad input.
pub(crate) fn decode(input: &[u8]) -> Result<Vec<u8>, &'static str> {
    let body = match input {
        [rest @ .., b'=', b'='] => rest,
        [rest @ .., b'='] => rest,
        _ => input,
    };
    if input.len() != body.len() && !input.len().is_multiple_of(4) {
        return Err("padding in the wrong place");
    }
    if body.len() % 4 == 1 {
        return Err("length is not valid for base64");
    }
    let mut out = Vec::with_capacity(decoded_len_max(body.len()));
    let mut chunks = body.chunks_exact(4);
    for c in &mut chunks {
        let mut n = 0u32;
        for &b in c {
            n = n << 6 | value(b).ok_or("invalid base64 character")?;
        }
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut n = 0u32;
        for &b in rest {
            n = n << 6 | value(b).ok_or("invalid base64 character")?;
        }
        n <<= 6 * (4 - rest.len() as u32);
        out.push((n >> 16) as u8);
        if rest.len() == 3 {
            out.push((n >> 8) as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &[(&str, &str)] = &[
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];

    #[test]
    fn rfc4648_vectors() {
        for (plain, encoded) in VECTORS {
            let mut out = Vec::new();
            encode_into(plain.as_bytes(), &mut out);
            assert_eq!(out, encoded.as_bytes());
            assert_eq!(decode(encoded.as_bytes()).unwrap(), plain.as_bytes());
            assert_eq!(
                decode(encoded.trim_end_matches('=').as_bytes()).unwrap(),
                plain.as_bytes()
            );
        }
    }

    #[test]
    fn rejects_bad_input() {
        for bad in ["Zg=", "Z", "Zm9v!", "Zg==Zg==", "=Zg=", "Zm 9v", "Zm9v===="] {
            assert!(decode(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn round_trip(data: Vec<u8>) {
            let mut out = Vec::new();
            encode_into(&data, &mut out);
            proptest::prop_assert_eq!(out.len(), encoded_len(data.len()));
            proptest::prop_assert!(decoded_len_max(out.len()) >= data.len());
            proptest::prop_assert_eq!(decode(&out).unwrap(), data);
        }
    }
}
