//! Reading one character out of a `&str` in a `const fn`, where `chars()` is not available.

/// The character that starts at byte `i` of `s`. `i` must be a char boundary.
pub(crate) const fn char_at(s: &str, i: usize) -> char {
    let b = s.as_bytes();
    let lead = b[i] as u32;
    let code = if lead < 0x80 {
        lead
    } else if lead < 0xE0 {
        (lead & 0x1F) << 6 | cont(b, i + 1)
    } else if lead < 0xF0 {
        (lead & 0x0F) << 12 | cont(b, i + 1) << 6 | cont(b, i + 2)
    } else {
        (lead & 0x07) << 18 | cont(b, i + 1) << 12 | cont(b, i + 2) << 6 | cont(b, i + 3)
    };
    // `s` is valid UTF-8, so `code` is a scalar value.
    match char::from_u32(code) {
        Some(ch) => ch,
        None => char::REPLACEMENT_CHARACTER,
    }
}

/// The six payload bits of the continuation byte at `i`.
const fn cont(b: &[u8], i: usize) -> u32 {
    (b[i] as u32) & 0x3F
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_char_after_an_ascii_prefix() {
        let mut s = String::new();
        for ch in (0..=0x10FFFF).filter_map(char::from_u32) {
            s.clear();
            s.push_str("ab");
            s.push(ch);
            s.push('z');
            assert_eq!(char_at(&s, 2), ch, "{ch:?}");
        }
    }
}
