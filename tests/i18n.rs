//! Languages: every catalogue has exactly the English keys, texts come from
//! the catalogue in the page's language, and the language choice is a
//! cookie that only takes languages the product is ready to show.

mod common;

use common::TestApp;
use novart::i18n::{Lang, READY};
use rocket::http::{Header, Status};

#[test]
fn every_catalogue_has_exactly_the_english_keys() {
    let catalogs = novart::templates::load_catalogs().unwrap();
    for lang in novart::i18n::ALL {
        let (missing, extra) = catalogs.differences(lang);
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{}: missing {missing:?}, not in English {extra:?}",
            lang.code()
        );
    }
}

#[test]
fn the_layout_reads_its_texts_from_the_catalogue() {
    let templates = novart::templates::Templates::load().unwrap();
    let mut ctx = tera::Context::new();
    for (k, v) in [
        ("csrf_token", "x"),
        ("path", "/"),
        ("version", "1.0"),
        ("operator_name", "Harbour"),
    ] {
        ctx.insert(k, v);
    }
    ctx.insert("registration_open", &true);
    ctx.insert("languages", &Vec::<String>::new());
    ctx.insert("lang", "zh-CN");
    let zh = templates.render("base.html", &ctx).unwrap();
    assert!(zh.contains("<html lang=\"zh-CN\">"));
    for text in ["跳到正文", "画廊", "登录", "注册账号", "由 Harbour 运营"] {
        assert!(zh.contains(text), "{text} missing in zh-CN");
    }
    // Pages already moved to the catalogue: nothing English left but names.
    ctx.insert("form", &serde_json::json!({}));
    ctx.insert("mode", "resend");
    ctx.insert("email", "ada@example.com");
    ctx.insert("purpose", "verify");
    ctx.insert("token", "t0ken");
    ctx.insert("minutes", &30);
    for page in [
        "login.html",
        "register.html",
        "forgot.html",
        "check_email.html",
        "reset.html",
        "verify.html",
    ] {
        let html = templates.render(page, &ctx).unwrap();
        let main = &html[html.find("<main").unwrap()..html.find("</main>").unwrap()];
        let text = main
            .split('<')
            .filter_map(|part| part.split_once('>').map(|(_, t)| t.trim()))
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" | ");
        let english: Vec<&str> = text
            .split(" | ")
            .filter(|t| {
                t.chars().any(|c| c.is_ascii_alphabetic()) && !t.contains("ada@example.com")
            })
            .collect();
        assert!(english.is_empty(), "{page} still has English: {english:?}");
    }
    ctx.insert("lang", "en");
    let en = templates.render("base.html", &ctx).unwrap();
    assert!(en.contains("Skip to content") && en.contains("run by Harbour"));
    assert!(!en.contains("画廊"));
}

#[test]
fn the_language_cookie_and_accept_language_pick_only_ready_languages() {
    let t = TestApp::new();
    let page = |accept: &str| {
        t.client
            .get("/")
            .header(Header::new("Accept-Language", accept.to_string()))
            .dispatch()
            .into_string()
            .unwrap()
    };
    let html = page("fr, en;q=0.5");
    assert!(html.contains("<html lang=\"en\">"));
    let zh_ready = READY.contains(&Lang::ZhCn);
    assert_eq!(page("zh-CN").contains("<html lang=\"zh-CN\">"), zh_ready);
    // The switch refuses what is not offered and never redirects off-site.
    let csrf = t.csrf("/");
    let r = t.post_raw(
        "/lang",
        &[("csrf_token", &csrf), ("lang", "xx"), ("next", "/")],
    );
    assert_eq!(r.status(), Status::BadRequest);
    let r = t.post_raw(
        "/lang",
        &[
            ("csrf_token", &csrf),
            ("lang", "en"),
            ("next", "//evil.example/"),
        ],
    );
    assert_eq!(r.status(), Status::SeeOther);
    assert_eq!(r.headers().get_one("Location"), Some("/"));
    let cookie = r
        .headers()
        .get("Set-Cookie")
        .find(|c| c.starts_with("lang="))
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"),
        "{cookie}"
    );
}
