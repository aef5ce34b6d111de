//! Input that ends up in a redirect or a header (a `next` path, a language,
//! a query value) answers with a safe redirect or a 400, never a 500, and
//! leaves nothing half-done behind.

mod common;

use common::{TestApp, PASSWORD};
use rocket::http::Status;

/// Awkward values for a `next` path: spaces, quotes, non-ASCII text, stray
/// percent signs, a fragment, angle brackets, an encoded newline, and the
/// open-redirect forms.
const NEXTS: &[&str] = &[
    "/studio with space",
    "/studio\"quote",
    "/studio'single",
    "/工作室",
    "/studio?q=月光 下",
    "/studio%",
    "/studio%zz",
    "/studio#frag ment",
    "/<script>alert(1)</script>",
    "/studio%0d%0aSet-Cookie:x=1",
    "/a`b{c}|d^e",
    "//evil.example.com",
    "https://evil.example.com/",
    "/\\evil.example.com",
    "",
];

fn location_is_safe(location: &str, next: &str) {
    assert!(location.starts_with('/'), "{next:?} -> {location:?}");
    assert!(!location.starts_with("//"), "{next:?} -> {location:?}");
    assert!(
        location.bytes().all(|b| b.is_ascii_graphic()),
        "{next:?} -> {location:?}"
    );
}

#[test]
fn sign_in_with_an_awkward_next_redirects_safely() {
    let t = TestApp::new();
    t.signed_in_user("next@example.com");
    for next in NEXTS {
        t.submit("/", "/logout", &[]);
        let r = t.submit(
            "/login",
            "/login",
            &[
                ("email", "next@example.com"),
                ("password", PASSWORD),
                ("next", next),
            ],
        );
        assert_eq!(r.status(), Status::SeeOther, "{next:?}");
        let location = r.headers().get_one("Location").unwrap().to_string();
        location_is_safe(&location, next);
        // Signed in, and the page it leads to answers (404 at worst).
        assert_eq!(t.get("/settings").status(), Status::Ok, "{next:?}");
        let s = t.get(&location).status();
        assert!(s.code < 500, "{next:?} -> {location}: {s}");
    }
    // The path survives the trip, encoded.
    t.submit("/", "/logout", &[]);
    let r = t.submit(
        "/login",
        "/login",
        &[
            ("email", "next@example.com"),
            ("password", PASSWORD),
            ("next", "/gallery?q=a b"),
        ],
    );
    assert_eq!(r.headers().get_one("Location"), Some("/gallery?q=a%20b"));
}

#[test]
fn the_login_page_with_an_awkward_next_answers() {
    let t = TestApp::new();
    for next in NEXTS {
        let q = novart::templates::urlencode(next);
        let s = t.get(&format!("/login?next={q}")).status();
        assert_eq!(s, Status::Ok, "{next:?}");
    }
    // Signed in, /login redirects to next: safely.
    t.signed_in_user("already@example.com");
    for next in NEXTS {
        let q = novart::templates::urlencode(next);
        let r = t.get(&format!("/login?next={q}"));
        assert_eq!(r.status(), Status::SeeOther, "{next:?}");
        location_is_safe(r.headers().get_one("Location").unwrap(), next);
    }
}

#[test]
fn choosing_a_language_with_an_awkward_next_redirects_safely() {
    let t = TestApp::new();
    for next in NEXTS {
        let r = t.submit("/", "/lang", &[("lang", "zh-CN"), ("next", next)]);
        assert_eq!(r.status(), Status::SeeOther, "{next:?}");
        location_is_safe(r.headers().get_one("Location").unwrap(), next);
    }
    for lang in ["xx", "zh-CN\"", "中文", "en\r\nX: y", ""] {
        let r = t.submit("/", "/lang", &[("lang", lang), ("next", "/")]);
        assert_eq!(r.status(), Status::BadRequest, "{lang:?}");
    }
    // Signed in too (the preference is stored, then the redirect).
    t.signed_in_user("lang@example.com");
    for next in NEXTS {
        let r = t.submit("/", "/lang", &[("lang", "en"), ("next", next)]);
        assert_eq!(r.status(), Status::SeeOther, "{next:?}");
        location_is_safe(r.headers().get_one("Location").unwrap(), next);
    }
}

#[test]
fn pages_behind_sign_in_with_awkward_paths_send_to_login() {
    let t = TestApp::new();
    for path in [
        "/studio?x=%22%27%3C",
        "/library?q=%E6%9C%88",
        "/settings?a=b%20c",
    ] {
        let r = t.get(path);
        assert_eq!(r.status(), Status::SeeOther, "{path}");
        let location = r.headers().get_one("Location").unwrap().to_string();
        location_is_safe(&location, path);
        assert_eq!(t.get(&location).status(), Status::Ok, "{location}");
    }
}
