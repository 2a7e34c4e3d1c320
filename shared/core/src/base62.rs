//! Base62 with the alphabet `0-9A-Za-z`, in that order.

pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

pub fn is_base62(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
}

/// `value` as base62, most significant digit first, left-padded with `0` to `width`.
pub fn encode_padded(mut value: u64, width: usize) -> String {
    let mut digits = vec![b'0'; width];
    let mut i = width;
    while value > 0 && i > 0 {
        i -= 1;
        digits[i] = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    digits.into_iter().map(char::from).collect()
}

/// `len` characters drawn uniformly from the alphabet with the OS CSPRNG.
pub fn random(len: usize) -> String {
    random_from(&mut rand::rngs::OsRng, len)
}

/// `len` characters drawn uniformly from the alphabet with `rng`.
pub fn random_from(rng: &mut (impl rand::Rng + ?Sized), len: usize) -> String {
    (0..len)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_most_significant_digit_first_with_padding() {
        assert_eq!(encode_padded(0, 6), "000000");
        assert_eq!(encode_padded(61, 6), "00000z");
        assert_eq!(encode_padded(62, 6), "000010");
        assert_eq!(encode_padded(u32::MAX as u64, 6), "4gfFC3");
    }

    #[test]
    fn random_strings_use_only_the_alphabet() {
        let s = random(1000);
        assert_eq!(s.len(), 1000);
        assert!(s.bytes().all(is_base62));
    }
}
