//! Random tokens, digests and constant-time comparison.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

/// `bytes` random bytes from the OS CSPRNG, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    OsRng.fill_bytes(&mut buf);
    buf
}

/// Letters and digits that cannot be mistaken for each other (no 0/O, 1/I/L).
pub const READABLE: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// A code of `len` characters from `READABLE`, for people to type.
pub fn readable_code(len: usize) -> String {
    (0..len)
        .map(|_| READABLE[OsRng.gen_range(0..READABLE.len())] as char)
        .collect()
}

pub fn sha256_hex(data: &str) -> String {
    hex::encode(Sha256::digest(data.as_bytes()))
}

pub fn hmac_hex(key: &[u8], message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Compares two strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The instance's CSRF signing key: generated on first start and kept in the
/// database, so every node and every restart signs alike.
pub fn instance_secret(conn: &crate::domain::Connection) -> crate::AppResult<Vec<u8>> {
    let hexed = crate::domain::db::meta::get_or_insert(
        conn,
        "csrf_secret",
        &hex::encode(random_bytes::<32>()),
    )?;
    hex::decode(hexed).map_err(crate::AppError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = random_token(32);
        let b = random_token(32);
        assert_eq!(a.len(), 43); // 256 bits
        assert_ne!(a, b);
    }

    #[test]
    fn readable_codes_avoid_ambiguous_characters() {
        for _ in 0..200 {
            let c = readable_code(10);
            assert!(!c.contains(['0', 'O', '1', 'I', 'L']), "{c}");
        }
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}
