//! Languages: every catalogue has exactly the English keys, texts come from
//! the catalogue in the page's language, and the language choice is a
//! cookie that only takes languages the product is ready to show.

mod common;

use common::{csrf_in, form_body, TestApp};
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
    // No catalogue in the context: each language's copy has its texts.
    let zh = templates.render("base.html", Lang::ZhCn, &ctx).unwrap();
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
        let html = templates.render(page, Lang::ZhCn, &ctx).unwrap();
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
    let en = templates.render("base.html", Lang::En, &ctx).unwrap();
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

/// The words of a page a visitor reads (text, labels, alt texts, titles,
/// placeholders), without code samples, scripts and the given names.
fn visible_words(html: &str, names: &[&str]) -> Vec<String> {
    let mut html = html.to_string();
    for tag in ["script", "style", "pre", "code", "kbd", "title"] {
        let re = regex::Regex::new(&format!(r"(?s)<{tag}\b[^>]*>.*?</{tag}>")).unwrap();
        html = re.replace_all(&html, " ").into_owned();
    }
    let attrs = regex::Regex::new(r#"(?:aria-label|title|alt|placeholder|data-confirm)="([^"]*)""#)
        .unwrap();
    let mut text: Vec<String> = attrs
        .captures_iter(&html)
        .map(|c| c[1].to_string())
        .collect();
    let tags = regex::Regex::new(r"(?s)<[^>]*>").unwrap();
    text.push(tags.replace_all(&html, " ").into_owned());
    let mut text = text.join(" ").replace("&#x2F;", "/").replace("&amp;", "&");
    for name in names {
        text = text.replace(name, " ");
    }
    let word = regex::Regex::new(r"[A-Za-z][A-Za-z'-]+").unwrap();
    const NAMES: &[&str] = &[
        "Novart",
        "Studio",
        "API",
        "OpenAI",
        "OpenAPI",
        "PNG",
        "JPEG",
        "WebP",
        "MB",
        "KB",
        "UTC",
        "ZIP",
        "CSV",
        "JSON",
        "HTTP",
        "IP",
        "URL",
        "SDK",
        "Webhook",
        "Webhooks",
        "Standard",
        "Python",
        "JavaScript",
        "Node",
        "HttpOnly",
        "Cookie",
        "Service",
        "Worker",
        "Ctrl",
        "Enter",
        "DELETE",
        "English",
        "Unix",
        "HMAC-SHA",
        "SHA-",
        "bcrypt",
        "Gone",
        "base",
        "Authorization",
        "Bearer",
        "ms",
        "ID",
        "Retry-After",
        "POST",
        "GET",
        "https",
        "http",
        "xml",
        "AI",
        "nva",
        "NVA-XXXX-XXXX-XXXX-XXXX",
        "XXXX",
        "NVA-XXXX-XXXX-XXXX-XXXX.",
        "nx",
    ];
    word.find_iter(&text)
        .map(|m| m.as_str().to_string())
        .filter(|w| !NAMES.iter().any(|n| n.eq_ignore_ascii_case(w)))
        .collect()
}

fn wait_for_task(t: &TestApp) -> String {
    for _ in 0..200 {
        let done: Option<String> = t
            .db()
            .query_row(
                "SELECT public_id FROM tasks WHERE status = 'succeeded' ORDER BY id DESC LIMIT 1",
                (),
                |r| r.get(0),
            )
            .ok();
        if let Some(id) = done {
            return id;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no task finished");
}

#[test]
fn every_page_reads_in_simplified_chinese_with_no_english_left() {
    let t = TestApp::new();
    let csrf = t.csrf("/");
    t.post_raw(
        "/lang",
        &[("csrf_token", &csrf), ("lang", "zh-CN"), ("next", "/")],
    );
    let email = t.signed_in_user("mei@example.com");
    // The account took the page's language at registration, and the
    // confirmation e-mail was written in it.
    let stored: Option<String> = t
        .db()
        .query_row(
            "SELECT language FROM users WHERE email = ?1",
            [&email],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored.as_deref(), Some("zh-CN"));
    let mail = t.mails_to(&email).remove(0);
    assert!(mail.contains("确认你的 Novart Studio 电子邮箱"), "{mail}");
    assert!(
        mail.contains("请确认你的电子邮箱") && !mail.contains("Confirm your e-mail address to"),
        "{mail}"
    );

    // Something on every page: a finished task, a shared and published
    // image, a key (which writes a security message), a privacy request.
    let prompt = "lighthouse";
    let r = t.submit(
        "/studio",
        "/studio",
        &[
            ("prompt", prompt),
            ("model", "novart-builtin"),
            ("aspect_ratio", "1:1"),
            ("resolution", "1024"),
            ("n", "1"),
        ],
    );
    assert_eq!(r.status(), Status::SeeOther);
    let task = wait_for_task(&t);
    let asset: String = t
        .db()
        .query_row(
            "SELECT public_id FROM assets WHERE kind = 'result' LIMIT 1",
            (),
            |r| r.get(0),
        )
        .unwrap();
    for action in ["publish", "share"] {
        let r = t.submit("/library", &format!("/library/{asset}/{action}"), &[]);
        assert_eq!(r.status(), Status::SeeOther);
    }
    let share: String = t
        .db()
        .query_row(
            "SELECT share_id FROM assets WHERE public_id = ?1",
            [&asset],
            |r| r.get(0),
        )
        .unwrap();
    let r = t.submit(
        "/developer",
        "/developer/keys",
        &[("name", "shop"), ("permissions", "generate")],
    );
    assert_eq!(r.status(), Status::Created);
    let r = t.submit(
        "/settings",
        "/settings/privacy-request",
        &[("kind", "access"), ("details", "请把数据发给我")],
    );
    assert_eq!(r.status(), Status::SeeOther);
    // Two restrictions (banner, settings history, inbox), one appealed.
    {
        let app = t.client.rocket().state::<novart::App>().unwrap();
        let mut conn = app.db.get().unwrap();
        let user: i64 = t
            .db()
            .query_row("SELECT id FROM users WHERE email = ?1", [&email], |r| {
                r.get(0)
            })
            .unwrap();
        let admin = novart::domain::bans::Actor {
            name: "admin:test",
            ip: None,
        };
        for (scope, reason) in [("upload", "上传了他人的证件"), ("api", "密钥外泄")] {
            novart::domain::bans::ban(
                &mut conn,
                novart::model::UserId(user),
                scope,
                Some(86_400),
                reason,
                &admin,
            )
            .unwrap();
        }
    }
    let restriction: i64 = t
        .db()
        .query_row("SELECT max(id) FROM bans", (), |r| r.get(0))
        .unwrap();
    let r = t.submit(
        "/settings",
        "/settings/appeals",
        &[
            ("restriction", &restriction.to_string()),
            ("body", "密钥已经更换，请解除限制。"),
        ],
    );
    assert_eq!(r.status(), Status::SeeOther);
    let settings = t.page("/settings");
    assert!(settings.contains("申诉处理中") && settings.contains("之前，你不能上传参考图"));

    let prefix: String = t
        .db()
        .query_row("SELECT prefix FROM api_keys LIMIT 1", (), |r| r.get(0))
        .unwrap();
    let names = [
        prefix.as_str(),
        email.as_str(),
        "Test User",
        prompt,
        "shop",
        "Novart Sketch",
        task.as_str(),
        asset.as_str(),
    ];
    let pages = [
        "/",
        "/studio",
        "/library",
        "/wallet",
        "/developer",
        "/messages",
        "/settings",
        "/gallery",
        "/privacy",
        "/terms",
        "/docs/api",
        "/no-such-page",
        "/settings/email/confirm?token=nothing",
    ];
    let share_page = format!("/s/{share}");
    for path in pages.iter().copied().chain([share_page.as_str()]) {
        let html = t
            .client
            .get(path.to_string())
            .dispatch()
            .into_string()
            .unwrap();
        assert!(html.contains("<html lang=\"zh-CN\">"), "{path}");
        let english = visible_words(&html, &names);
        assert!(english.is_empty(), "{path} still has English: {english:?}");
    }
    // The live texts of the scripts come from the same catalogue.
    let studio = t.page("/studio");
    assert!(
        studio.contains("\"images_ready\":\"你的图片已生成。\""),
        "script texts"
    );

    // Signed out, with the cookie only.
    let other = t.other_browser();
    let csrf = csrf_in(&other.get("/").dispatch().into_string().unwrap());
    other
        .post("/lang")
        .header(rocket::http::ContentType::Form)
        .body(form_body(&[
            ("csrf_token", &csrf),
            ("lang", "zh-CN"),
            ("next", "/"),
        ]))
        .dispatch();
    for path in [
        "/",
        "/login",
        "/register",
        "/forgot",
        "/gallery",
        "/privacy",
    ] {
        let html = other.get(path).dispatch().into_string().unwrap();
        let english = visible_words(&html, &names);
        assert!(
            english.is_empty(),
            "{path} (signed out) still has English: {english:?}"
        );
    }
}

/// Every English text the server writes for people (form errors, notices,
/// inbox messages, e-mail subjects) has a Simplified Chinese translation.
/// The texts are found in the source the way gettext's xgettext finds them:
/// the literals given to the error and notice constructors.
#[test]
fn every_server_message_has_a_translation() {
    let catalogs = novart::templates::load_catalogs().unwrap();
    let zh = catalogs
        .messages(Lang::ZhCn)
        .expect("zh-CN message catalogue");
    let placeholder = regex::Regex::new(r"\{[^{}]*\}").unwrap();
    let norm = |s: &str| placeholder.replace_all(s, "{}").into_owned();
    let known: std::collections::HashSet<String> = zh.ids().iter().map(|i| norm(i)).collect();
    let call = regex::Regex::new(
        r#"(?s)(?:AppError::(?:invalid\([^,()]+,|Conflict\(|Forbidden\(|InsufficientBalance\(|TooLarge\(|Banned\(|ContentBlocked\(|Unavailable\()|Flash::(?:success|error)\([^,]+,|messages::(?:add|alert)\([^"]*?|subject:|message:)\s*(?:&?format!\(\s*)?"((?:[^"\\]|\\.)*)""#,
    )
    .unwrap();
    let continuation = regex::Regex::new(r"\\\n\s*").unwrap();
    let mut missing = Vec::new();
    let mut found = 0;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.to_string_lossy().replace('\\', "/");
            if path.is_dir() {
                // Admin-only texts (CLI, config errors) stay English.
                if !rel.ends_with("/cli") && !rel.ends_with("/config") {
                    stack.push(path);
                }
                continue;
            }
            // The API speaks English to API keys (see docs); the studio's own
            // calls go through the same domain texts checked here.
            if ["/web/api.rs", "/web/openai.rs", "/web/docs.rs"]
                .iter()
                .any(|f| rel.ends_with(f))
            {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            for c in call.captures_iter(&source) {
                let text = continuation
                    .replace_all(&c[1], "")
                    .replace("\\\"", "\"")
                    .replace("\\n", "\n")
                    .replace("\\u{201c}", "\u{201c}")
                    .replace("\\u{201d}", "\u{201d}");
                if !text
                    .chars()
                    .next()
                    .is_some_and(|ch| ch.is_ascii_uppercase() || ch == '{')
                {
                    continue; // internal detail, not a sentence for people
                }
                found += 1;
                let n = norm(&text);
                // Texts with an optional tail ("…{}") are listed with and
                // without it.
                let trimmed = n.trim_end_matches("{}").to_string();
                if !known.contains(&n) && !known.iter().any(|k| k.starts_with(&trimmed)) {
                    missing.push(format!("{}: {text}", rel.rsplit("/src/").next().unwrap()));
                }
            }
        }
    }
    assert!(found > 120, "the scan found only {found} texts");
    assert!(
        missing.is_empty(),
        "no zh-CN translation for:\n{}",
        missing.join("\n")
    );
    // And the translations are used: a message written in English reads in
    // Chinese with its values in place.
    assert_eq!(
        catalogs.message(Lang::ZhCn, "Use at least 8 characters for your password."),
        "密码至少需要 8 个字符。"
    );
}

/// The account's language wins over the cookie and the browser, is set from
/// Settings or the footer, and "automatic" follows the browser again. The
/// studio's own API calls get errors in it; API keys always get English.
#[test]
fn the_account_language_follows_the_creator_everywhere() {
    let t = TestApp::new();
    let email = t.signed_in_user("lin@example.com");
    let zh_browser = |path: &str| {
        t.client
            .get(path.to_string())
            .header(Header::new("Accept-Language", "zh-CN"))
            .dispatch()
            .into_string()
            .unwrap()
    };
    // Registered in English: the account says English, even to a Chinese browser.
    assert!(zh_browser("/settings").contains("<html lang=\"en\">"));
    let r = t.submit("/settings", "/settings/language", &[("language", "zh-CN")]);
    assert_eq!(r.status(), Status::SeeOther);
    let html = t.page("/settings");
    assert!(
        html.contains("<html lang=\"zh-CN\">") && html.contains("语言设置已保存。"),
        "flash in the new language"
    );
    // Another device of the same account reads Chinese too, with no cookie.
    let phone = t.sign_in_elsewhere(&email, common::PASSWORD, "Phone");
    let html = phone.get("/wallet").dispatch().into_string().unwrap();
    assert!(html.contains("<html lang=\"zh-CN\">") && html.contains("兑换积分码"));
    // The studio's JSON calls read errors in Chinese; an API key gets English.
    let csrf = t.csrf("/studio");
    let r = t
        .client
        .post("/api/v1/tasks")
        .header(rocket::http::ContentType::JSON)
        .header(Header::new("x-csrf-token", csrf))
        .body(r#"{"prompt": ""}"#)
        .dispatch();
    assert_eq!(r.status(), Status::BadRequest);
    let body = r.into_string().unwrap();
    assert!(body.contains("请在提示词中描述你想要的图片。"), "{body}");
    let app = t.client.rocket().state::<novart::App>().unwrap();
    let mut conn = app.db.get().unwrap();
    let user = novart::domain::accounts::find(&conn, &email).unwrap();
    let (_, key) = novart::domain::apikeys::create(
        &mut conn,
        &app.config,
        &app.engine.catalog,
        user.id,
        novart::domain::apikeys::KeySpec::defaults(&app.config, "bot"),
        novart::domain::apikeys::Authority::Admin,
    )
    .unwrap();
    let r = t
        .client
        .post("/api/v1/tasks")
        .header(rocket::http::ContentType::JSON)
        .header(Header::new("Authorization", format!("Bearer {key}")))
        .body(r#"{"prompt": ""}"#)
        .dispatch();
    assert!(r
        .into_string()
        .unwrap()
        .contains("Describe the image you want in the prompt."));
    // The footer switch, signed in, changes the account; "automatic" then
    // follows the browser again.
    let csrf = t.csrf("/");
    t.post_raw(
        "/lang",
        &[("csrf_token", &csrf), ("lang", "en"), ("next", "/")],
    );
    let stored = novart::domain::accounts::find(&conn, &email)
        .unwrap()
        .language;
    assert_eq!(stored.as_deref(), Some("en"));
    let r = t.submit("/settings", "/settings/language", &[("language", "")]);
    assert_eq!(r.status(), Status::SeeOther);
    assert!(zh_browser("/settings").contains("<html lang=\"zh-CN\">"));
    let r = t.submit("/settings", "/settings/language", &[("language", "fr")]);
    assert_eq!(r.status(), Status::BadRequest);
}
