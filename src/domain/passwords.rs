//! Password rules and hashing.
//!
//! bcrypt only reads the first 72 bytes of its input, so a long passphrase
//! would be silently truncated. We never let that happen: the password is
//! first digested with SHA-256 and the base64 of that digest (44 bytes, no NUL)
//! is what bcrypt hashes. Every byte of a password up to `MAX_BYTES` counts.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::error::{AppError, AppResult};

pub const MIN_CHARS: usize = 8;
pub const MAX_BYTES: usize = 1024;

/// A few of the most common passwords that pass the length rule.
const COMMON: &[&str] = &[
    "password",
    "password1",
    "password123",
    "12345678",
    "123456789",
    "1234567890",
    "qwertyui",
    "qwerty123",
    "qwertyuiop",
    "11111111",
    "iloveyou",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "welcome1",
    "admin123",
    "abc12345",
    "88888888",
    "00000000",
    "letmein1",
    "trustno1",
    "passw0rd",
    "1q2w3e4r",
    "zaq12wsx",
    "1qaz2wsx",
    "asdfghjk",
    "superman",
    "starwars",
    "whatever",
];

/// Checks a new password; the error names the `password` field.
pub fn check_new(password: &str, email: &str) -> AppResult<()> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(AppError::invalid(
            "password",
            format!("Use at least {MIN_CHARS} characters for your password."),
        ));
    }
    if password.len() > MAX_BYTES {
        return Err(AppError::invalid(
            "password",
            format!("Passwords can be at most {MAX_BYTES} bytes long."),
        ));
    }
    if password.trim().is_empty() {
        return Err(AppError::invalid(
            "password",
            "A password cannot be only spaces.",
        ));
    }
    let lower = password.to_lowercase();
    if COMMON.contains(&lower.as_str()) || lower == email.trim().to_lowercase() {
        return Err(AppError::invalid(
            "password",
            "This password is too easy to guess. Choose a longer or less common one.",
        ));
    }
    Ok(())
}

fn prehash(password: &str) -> String {
    STANDARD.encode(Sha256::digest(password.as_bytes()))
}

pub fn hash(password: &str, cost: u32) -> AppResult<String> {
    bcrypt::hash(prehash(password), cost).map_err(AppError::internal)
}

pub fn verify(password: &str, hash: &str) -> bool {
    if password.len() > MAX_BYTES {
        return false;
    }
    bcrypt::verify(prehash(password), hash).unwrap_or(false)
}

/// The cost a stored hash was made with (`$2b$12$...` → 12).
pub fn cost_of(hash: &str) -> Option<u32> {
    hash.split('$').nth(2)?.parse().ok()
}

/// Spends the same time as `verify` against a real hash, for unknown
/// accounts, so response times do not tell which e-mails are registered.
pub fn dummy_verify(password: &str, cost: u32) {
    static DUMMY: OnceLock<(u32, String)> = OnceLock::new();
    let (c, h) = DUMMY.get_or_init(|| {
        (
            cost,
            hash("novart-dummy-password", cost).unwrap_or_default(),
        )
    });
    if *c == cost {
        let _ = verify(password, h);
    } else {
        let _ = hash(password, cost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_passwords_are_not_truncated() {
        // Two 100-byte passwords that share their first 72 bytes.
        let base = "é".repeat(36); // 72 bytes
        let a = format!("{base}{}", "a".repeat(28));
        let b = format!("{base}{}", "b".repeat(28));
        let h = hash(&a, 4).unwrap();
        assert!(verify(&a, &h));
        assert!(!verify(&b, &h));
    }

    #[test]
    fn rules() {
        assert!(check_new("short", "a@b.c").is_err());
        assert!(check_new("password123", "a@b.c").is_err());
        assert!(check_new("alice@example.com", "Alice@example.com").is_err());
        assert!(check_new(&"x".repeat(MAX_BYTES + 1), "a@b.c").is_err());
        assert!(check_new("        ", "a@b.c").is_err());
        assert!(check_new("correct horse battery", "a@b.c").is_ok());
        assert!(check_new("密码密码密码密码", "a@b.c").is_ok());
        assert_eq!(cost_of("$2b$12$abcdefghijklmnopqrstuv"), Some(12));
    }
}
