//! Number parsing for /proc text, without allocating.

/// A decimal number, without allocating; `None` on anything else or overflow.
pub(crate) fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// A hexadecimal number (either case), without allocating; `None` on anything else.
pub(crate) fn parse_hex_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        let v = char::from(d).to_digit(16)?;
        Some(acc << 4 | u64::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_hex_u64(b"ffffFFFFffffFFFF"), Some(u64::MAX));
        assert_eq!(parse_hex_u64(b"1ffffFFFFffffFFFF"), None);
        assert_eq!(parse_hex_u64(b""), None);
        assert_eq!(parse_hex_u64(b"0x1"), None);
    }
}
