//! CSRF tokens: an HMAC of what the form is bound to (the session, or a
//! random pre-session cookie for sign-in and registration) under the
//! instance secret. Nothing is stored; a token is checked by recomputing it.

use super::secrets::{constant_time_eq, hmac_hex};

/// What a token is bound to.
pub enum Binding<'a> {
    /// A signed-in session, by its token digest.
    Session(&'a str),
    /// An anonymous visitor, by the random value of their pre-session cookie.
    Visitor(&'a str),
}

fn message(binding: &Binding<'_>) -> String {
    match binding {
        Binding::Session(h) => format!("csrf:session:{h}"),
        Binding::Visitor(v) => format!("csrf:visitor:{v}"),
    }
}

pub fn token(secret: &[u8], binding: &Binding<'_>) -> String {
    hmac_hex(secret, &message(binding))
}

pub fn check(secret: &[u8], binding: &Binding<'_>, presented: &str) -> bool {
    constant_time_eq(&token(secret, binding), presented)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_bound_to_its_session() {
        let s = b"secret-secret-secret-secret-1234";
        let t = token(s, &Binding::Session("abc"));
        assert!(check(s, &Binding::Session("abc"), &t));
        assert!(!check(s, &Binding::Session("abd"), &t));
        assert!(!check(s, &Binding::Visitor("abc"), &t));
        assert!(!check(
            b"another-secret-another-secret-12",
            &Binding::Session("abc"),
            &t
        ));
        assert!(!check(s, &Binding::Session("abc"), ""));
    }
}
