//! Journeys in a real browser (headless Chromium through chromedriver,
//! against the built `novart` binary; see `common::browser`): accounts, the
//! developer center, the studio, toasts.

mod common;

use common::browser::*;
use serde_json::{json, Value};
use std::time::Duration;

#[test]
fn account_journey_in_chromium() {
    let Some(s) = start("account_journey_in_chromium") else {
        return;
    };
    let (b, app_url, dir) = (&s.b, &s.app_url, &s.dir);

    // Landing page.
    b.goto(&format!("{app_url}/"));
    b.wait_text("Turn words into images");
    b.screenshot("01-landing");

    // Register through the labelled form.
    b.goto(&format!("{app_url}/register"));
    b.fill("E-mail address", "browser@example.com");
    b.fill("Display name", "Brow <b>Ser</b>");
    b.fill("Password", "short");
    b.click_button("Create account");
    // The browser's own minlength check or our message stops it; either way no account.
    std::thread::sleep(Duration::from_millis(300));
    assert!(b.url().ends_with("/register"));
    b.fill("Password", "a long browser passphrase");
    b.click_button("Create account");
    b.wait_text("Check your e-mail");
    b.screenshot("02-check-email");

    // Sign-in is refused before confirming.
    b.goto(&format!("{app_url}/login"));
    b.fill("E-mail address", "browser@example.com");
    b.fill("Password", "a long browser passphrase");
    b.click_button("Sign in");
    b.wait_text("Please confirm your e-mail address first");

    // Open the link from the outbox and confirm.
    let link = {
        let mails = common::mails_to(&dir.path().join("data/outbox"), "browser@example.com");
        mails
            .iter()
            .rev()
            .find_map(|m| common::find_link(m, "/verify?token="))
            .expect("verification mail")
    };
    let link = link.replace("http://127.0.0.1:8000", app_url);
    b.goto(&link);
    b.wait_text("Confirm your e-mail address");
    b.screenshot("03-confirm");
    b.click_button("Confirm my e-mail address");
    b.wait_text("Your e-mail address is confirmed");

    // Sign in: the e-mail is pre-filled from the redirect.
    b.fill("Password", "a long browser passphrase");
    b.click_button("Sign in");
    b.wait_text("Hello, Brow &lt;b&gt;Ser&lt;/b&gt;.");
    b.wait_text("You are signed in.");
    b.screenshot("04-signed-in");

    // Settings: rename, see the toast and the session list.
    b.goto(&format!("{app_url}/settings"));
    b.wait_text("Signed-in devices");
    b.fill("Display name", "Browser Artist");
    b.click_button("Save name");
    b.wait_text("Your display name is saved.");
    b.screenshot("05-settings");
    assert!(
        b.no_horizontal_scroll(),
        "settings scrolls sideways at 1280px"
    );

    // Phone width: nothing scrolls sideways.
    b.resize(360, 780);
    for path in ["/settings", "/", "/privacy"] {
        b.goto(&format!("{app_url}{path}"));
        assert!(b.no_horizontal_scroll(), "{path} scrolls sideways at 360px");
    }
    b.goto(&format!("{app_url}/settings"));
    b.screenshot("06-settings-phone");
    b.resize(1280, 900);

    // Data rights on the settings page, and the privacy notice.
    b.goto(&format!("{app_url}/settings#data-h"));
    b.wait_text("Download my data");
    b.script("document.getElementById('data-h').scrollIntoView(); return 1;");
    b.screenshot("07-settings-data");
    b.goto(&format!("{app_url}/privacy"));
    b.wait_text("Who else receives your data");
    b.screenshot("08-privacy");

    // Sign out from the header button.
    b.click_button("Sign out");
    b.wait_text("You are signed out.");
    b.goto(&format!("{app_url}/settings"));
    wait_for("redirect to sign-in", || b.url().contains("/login?next="));

    // Forgotten password, all the way to signing in with the new one.
    b.goto(&format!("{app_url}/forgot"));
    b.fill("E-mail address", "browser@example.com");
    b.click_button("Send reset link");
    b.wait_text("If an account exists for");
    let link = {
        let mails = common::mails_to(&dir.path().join("data/outbox"), "browser@example.com");
        mails
            .iter()
            .rev()
            .find_map(|m| common::find_link(m, "/reset?token="))
            .expect("reset mail")
    };
    b.goto(&link.replace("http://127.0.0.1:8000", app_url));
    b.fill("New password", "the newest passphrase");
    b.click_button("Save new password");
    b.wait_text("Your password has been changed");
    b.fill("Password", "the newest passphrase");
    b.click_button("Sign in");
    b.wait_text("Hello, Browser Artist.");
}

#[test]
fn developer_center_in_chromium() {
    let Some(s) = start("developer_center_in_chromium") else {
        return;
    };
    let (b, app_url) = (&s.b, &s.app_url);
    sign_in_new_user(&s, "dev@example.com", "Dev", "/developer");
    b.wait_text("No keys yet");
    b.screenshot("20-developer-empty");
    b.fill("Name", "shop backend");
    b.click_button("Create key");
    b.wait_text("shown only this once");
    let secret = b.script("return document.getElementById('new-key-secret').textContent");
    let secret = secret.as_str().unwrap().to_string();
    assert!(secret.starts_with("nva_"), "{secret}");
    assert!(b.no_horizontal_scroll());
    b.screenshot("21-developer-new-key");
    // The key works from outside the browser.
    let mut r = ureq::get(&format!("{app_url}/api/v1/account"))
        .header("Authorization", &format!("Bearer {secret}"))
        .call()
        .unwrap();
    let v: Value = r.body_mut().read_json().unwrap();
    assert_eq!(v["email"], "dev@example.com");
    b.resize(390, 844);
    b.goto(&format!("{app_url}/developer"));
    assert!(!b.source().contains(&secret), "shown once");
    let wide = b.script("return Array.from(document.querySelectorAll('body *')).filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && e.children.length < 50).map(e => e.tagName + '.' + e.className + ':' + Math.round(e.getBoundingClientRect().right)).slice(0, 8).join(' ');");
    assert!(b.no_horizontal_scroll(), "too wide: {wide}");
    b.screenshot("22-developer-phone");
    b.resize(1280, 900);
    b.goto(&format!("{app_url}/docs/api"));
    b.wait_text("Standard Webhooks");
    b.screenshot("23-docs-api");

    // An announcement shows in the inbox with the unread badge.
    cli(
        &s,
        &[
            "announce",
            "--title",
            "Maintenance tonight",
            "--body",
            "The studio pauses at 02:00 UTC for ten minutes.",
        ],
    );
    b.goto(&format!("{app_url}/messages"));
    b.wait_text("Maintenance tonight");
    assert!(
        b.source().contains("2 unread"),
        "the announcement and the new-key alert"
    );
    b.screenshot("24-messages");
    assert_eq!(
        b.script("return document.getElementById('notify-toggle').hidden;"),
        json!(false),
        "the notification switch is offered"
    );
    // The service worker that shows notifications is registered for the site.
    let scope = b.call("POST", "/execute/async", Some(json!({ "script":
        "const done = arguments[0]; navigator.serviceWorker.ready.then(r => done(r.scope)).catch(e => done('error: ' + e));",
        "args": [] })));
    assert_eq!(scope, json!(format!("{app_url}/")), "service worker scope");

    // A new message arrives live on another page: a toast and a new count.
    b.goto(&format!("{app_url}/library"));
    b.wait_text("Library");
    cli(
        &s,
        &[
            "announce",
            "--title",
            "New models this week",
            "--body",
            "Two new styles are in the studio.",
            "--to",
            "dev@example.com",
        ],
    );
    wait_for("the live toast", || {
        b.script("return Array.from(document.querySelectorAll('.toast-message:not([hidden])')).map(t => t.textContent).join(' | ');")
            .as_str()
            .is_some_and(|t| t.contains("New models this week"))
    });
    assert!(b.source().contains("3 unread"), "the badge follows");
    b.screenshot("25-live-toast");
    // Shown once, it does not come back on the next page (localStorage).
    b.script("Array.from(document.querySelectorAll('.toast-message')).filter(t => t.textContent.includes('New models')).forEach(t => t.querySelector('.toast-close').click()); return 1;");
    b.goto(&format!("{app_url}/wallet"));
    b.wait_text("Wallet");
    assert_eq!(
        b.script("return Array.from(document.querySelectorAll('.toast-message:not([hidden])')).filter(t => t.textContent.includes('New models')).length;"),
        json!(0)
    );
    assert_eq!(
        b.script("return localStorage.getItem('novart.toasts.seen') !== null;"),
        json!(true)
    );

    // Suspended: signed out at once; signing in again shows why and until when.
    cli(
        &s,
        &[
            "ban",
            "dev@example.com",
            "--for",
            "7d",
            "--reason",
            "Automated requests for forged documents",
        ],
    );
    b.goto(&format!("{app_url}/login?next=%2Fstudio"));
    b.fill("E-mail address", "dev@example.com");
    b.fill("Password", "maker passphrase 1");
    b.click_button("Sign in");
    b.wait_text("Your account is suspended until");
    assert!(b
        .source()
        .contains("Automated requests for forged documents"));
    b.screenshot("26-suspended");

    // A narrower restriction stands next to the ban; the banner names both
    // and leads to Settings, where each can be appealed once.
    cli(
        &s,
        &[
            "ban",
            "dev@example.com",
            "--scope",
            "upload",
            "--for",
            "30d",
            "--reason",
            "Uploads of other people's documents",
        ],
    );
    b.goto(&format!("{app_url}/library"));
    b.wait_text("You may not upload reference images until");
    b.goto(&format!("{app_url}/settings#restrictions-h"));
    b.wait_text("Reference-image uploads");
    b.fill(
        "Why this restriction should be lifted",
        "The forged-document prompts came from a leaked key, revoked since.",
    );
    b.click_button("Send appeal");
    b.wait_text("is sent. The decision arrives in your inbox.");
    b.wait_text("Appeal pending");
    assert!(b.source().contains("leaked key, revoked since"));
    b.screenshot("27-appeal");
}

#[test]
fn studio_journey_in_chromium() {
    let Some(s) = start("studio_journey_in_chromium") else {
        return;
    };
    let (b, app_url) = (&s.b, &s.app_url);
    sign_in_new_user(&s, "maker@example.com", "Maker", "/studio");
    b.wait_text("Nothing here yet");
    assert!(b.source().contains("built-in renderer, no AI model"));
    b.screenshot("10-studio-empty");

    // Write a prompt, pick 16:9 and two images; the cost follows.
    b.fill("Prompt", "a sunset over the ocean, warm light, calm water");
    // As a person would: scroll the choice out from under the action bar.
    b.script("document.querySelector('label[for=\"ar-16-9\"]').scrollIntoView({block: 'center'});");
    let wide = b.xpath("//label[normalize-space()='16:9']");
    b.call("POST", &format!("/element/{wide}/click"), None);
    b.select("Images", "2");
    wait_for("the cost to show 2 credits", || {
        b.source().contains("2 credits")
    });
    b.click_button("Generate");

    // The card appears at once and turns into images, live.
    b.wait_text("Queued: 2 images on the way.");
    wait_for("the task to finish", || b.source().contains(">Done<"));
    wait_for("two images in the card", || {
        b.script("return document.querySelectorAll('.task-card .thumb img').length;") == json!(2)
    });
    wait_for("the images to load", || {
        b.script("return Array.from(document.querySelectorAll('.task-card .thumb img')).every(i => i.complete && i.naturalWidth > 0);") == json!(true)
    });
    b.screenshot("11-studio-done");

    // Open the large view, then close it with Escape.
    let thumb = b.xpath("(//button[contains(@class,'thumb')])[1]");
    b.call("POST", &format!("/element/{thumb}/click"), None);
    wait_for("the viewer", || {
        b.script("return document.getElementById('viewer').open;") == json!(true)
    });
    wait_for("the full image", || {
        b.script("const i = document.getElementById('viewer-img'); return i.complete && i.naturalWidth === 1024;") == json!(true)
    });
    b.screenshot("12-viewer");
    // The heading is the prompt; the arrow keys and the buttons walk the
    // images, and the ends have no button past them.
    let viewer_state = || {
        b.script("const v = k => document.getElementById(k); return [v('viewer-title').textContent, v('viewer-img').getAttribute('src'), v('viewer-prev').hidden, v('viewer-next').hidden, v('viewer-position').textContent];")
    };
    let first = viewer_state();
    assert!(
        first[0]
            .as_str()
            .unwrap()
            .starts_with("a sunset over the ocean"),
        "{first}"
    );
    assert_eq!(
        (&first[2], &first[3]),
        (&json!(true), &json!(false)),
        "{first}"
    );
    assert_eq!(first[4], "1 of 2");
    let key = |code: &str| {
        b.call(
            "POST",
            "/actions",
            Some(
                json!({ "actions": [{ "type": "key", "id": "kb", "actions": [
            { "type": "keyDown", "value": code }, { "type": "keyUp", "value": code } ] }] }),
            ),
        );
    };
    key("\u{E014}"); // ArrowRight
    let second = viewer_state();
    assert_ne!(second[1], first[1], "another image");
    assert_eq!(
        (&second[2], &second[3], &second[4]),
        (&json!(false), &json!(true), &json!("2 of 2")),
        "{second}"
    );
    b.script("document.getElementById('viewer-prev').click();");
    assert_eq!(viewer_state()[1], first[1]);
    key("\u{E012}"); // ArrowLeft at the first image: nothing before it
    assert_eq!(viewer_state()[1], first[1]);
    // The close button is on screen, at desktop and phone sizes.
    for (w, h) in [(1280, 800), (390, 844)] {
        b.resize(w, h);
        let on_screen = b.script("const r = document.getElementById('viewer-close').getBoundingClientRect(); return r.top >= 0 && r.right <= window.innerWidth && r.bottom <= window.innerHeight && r.width > 0;");
        assert_eq!(on_screen, json!(true), "{w}x{h}");
    }
    b.screenshot("12b-viewer-phone");
    b.resize(1280, 800);
    key("\u{E00C}");
    wait_for("the viewer to close", || {
        b.script("return document.getElementById('viewer').open;") == json!(false)
    });

    // The library shows both images; the download link serves the PNG.
    b.goto(&format!("{app_url}/library"));
    wait_for("two tiles", || {
        b.script("return document.querySelectorAll('.gallery .tile').length;") == json!(2)
    });
    wait_for("the previews to load", || {
        b.script("return Array.from(document.querySelectorAll('.gallery img')).every(i => i.complete && i.naturalWidth > 0);") == json!(true)
    });
    b.screenshot("13-library");
    let tile = b.xpath("(//ul[@class='gallery']//button)[1]");
    b.call("POST", &format!("/element/{tile}/click"), None);
    wait_for("the viewer", || {
        b.script("return document.getElementById('viewer').open;") == json!(true)
    });
    let kind = b.call("POST", "/execute/async", Some(json!({ "script":
        "const done = arguments[0]; fetch(document.getElementById('viewer-download').href).then(r => done([r.status, r.headers.get('content-type'), r.headers.get('content-disposition')]));",
        "args": [] })));
    assert_eq!(kind[0], 200);
    assert_eq!(kind[1], "image/png");
    assert!(kind[2].as_str().unwrap().starts_with("attachment"));

    // "Use these settings again" fills the studio form.
    let reuse = b.call(
        "POST",
        "/execute/sync",
        Some(
            json!({ "script": "return document.getElementById('viewer-reuse').href;", "args": [] }),
        ),
    );
    b.goto(reuse.as_str().unwrap());
    wait_for("the prompt to be filled", || {
        b.script("return document.getElementById('prompt').value;")
            == json!("a sunset over the ocean, warm light, calm water")
    });
    assert_eq!(
        b.script("return document.querySelector('input[name=aspect_ratio]:checked').value;"),
        json!("16:9")
    );

    // Phone width: nothing scrolls sideways.
    b.resize(360, 780);
    for path in ["/studio", "/library"] {
        b.goto(&format!("{app_url}{path}"));
        assert!(b.no_horizontal_scroll(), "{path} scrolls sideways at 360px");
    }
    b.goto(&format!("{app_url}/studio"));
    b.screenshot("14-studio-phone");
    b.resize(1280, 900);

    // Sharing: publish one image to the gallery and share it by link.
    b.goto(&format!("{app_url}/library"));
    b.hover(&b.xpath("//li[contains(@class, 'tile')]"));
    let publish = b.xpath("//button[@aria-label='Publish to the gallery']");
    b.call("POST", &format!("/element/{publish}/click"), None);
    b.wait_text("The image is in the public gallery.");
    b.script("document.querySelector('.tile details.share').open = true; return 1;");
    b.click_button("Create a share link");
    b.wait_text("Anyone with the link can now see the image.");
    b.script("document.querySelector('.tile details.share').open = true; return 1;");
    b.screenshot("15-library-sharing");
    let link = b.script("return document.querySelector('.share-body input[readonly]').value;");
    let link = link
        .as_str()
        .unwrap()
        .replace("http://127.0.0.1:8000", app_url);
    b.goto(&format!("{app_url}/gallery"));
    wait_for("the published image to load", || {
        b.script("return Array.from(document.querySelectorAll('.gallery img')).filter(i => i.complete && i.naturalWidth > 0).length;") == json!(1)
    });
    b.screenshot("16-gallery");
    b.goto(&link);
    wait_for("the shared image to load", || {
        b.script("var i = document.querySelector('.shared img'); return !!i && i.complete && i.naturalWidth > 0;") == json!(true)
    });
    b.screenshot("17-shared");

    // The footer switches the whole studio to Simplified Chinese, live
    // texts of the scripts included.
    b.goto(&format!("{app_url}/studio"));
    b.select("Language", "简体中文");
    b.click_button("Change");
    b.wait_text("你的任务");
    b.fill("提示词", "海上日落，温暖的光线");
    b.click_button("生成");
    b.wait_text("已排队：1 张图片正在生成。");
    wait_for("the new task to finish", || {
        b.script("return document.querySelectorAll('.task-card .badge-succeeded').length;")
            == json!(2)
    });
    wait_for("the images to load", || {
        b.script("return Array.from(document.querySelectorAll('.task-card .thumb img')).every(i => i.complete && i.naturalWidth > 0);") == json!(true)
    });
    assert!(b.source().contains(">已完成<"));
    b.script("window.scrollTo(0, 0); return true;");
    b.screenshot("18-studio-zh-CN");

    // The reference picker reads in the page's language (the browser's own
    // file button, which stays English, is hidden) and says what was chosen.
    let picker = b.script("const i = document.getElementById('refs'); return [document.getElementById('refs-choose').textContent, document.getElementById('refs-chosen').textContent, i.getBoundingClientRect().width <= 1];");
    assert_eq!(picker, json!(["选择图片", "未选择", true]));
    upload_reference(&s, [200, 120, 40]);
    assert_eq!(
        b.script("return document.getElementById('refs-chosen').textContent;"),
        json!("已选 1 张，最多 4 张")
    );
    b.script("document.getElementById('dropzone').scrollIntoView({block: 'center'}); return true;");
    b.screenshot("18b-reference-zh-CN");
}

#[test]
fn toasts_are_one_at_a_time_leave_by_themselves_and_show_inbox_items_once() {
    let Some(s) = start("toasts_are_one_at_a_time_leave_by_themselves_and_show_inbox_items_once")
    else {
        return;
    };
    let (b, app_url) = (&s.b, &s.app_url);
    sign_in_new_user(&s, "toast@example.com", "Toast", "/studio");
    b.wait_text("Generate");
    // The sign-in's own notice is the one toast; a new one replaces it.
    wait_for("the sign-in toast", || toasts(b).len() == 1);
    b.script("window.novartToast('Queued: 2 images on the way.', 'success'); window.novartToast('Canceled.', 'info');");
    assert_eq!(toasts(b), ["Canceled."]);
    // It leaves by itself.
    wait_for("the toast to leave", || toasts(b).is_empty());
    // An error stays until dismissed.
    b.script("window.novartToast('The upload failed.', 'error');");
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(toasts(b), ["The upload failed."]);
    b.script("document.querySelector('#toasts .toast-close').click();");
    assert!(toasts(b).is_empty());

    // An inbox item: a toast on the page it arrives on, and never again.
    cli(
        &s,
        &[
            "announce",
            "--title",
            "Maintenance tonight",
            "--body",
            "Back at 2:00.",
            "--to",
            "toast@example.com",
        ],
    );
    wait_for("the inbox toast", || {
        toasts(b).iter().any(|t| t.contains("Maintenance tonight"))
    });
    for path in ["/studio", "/library", "/wallet"] {
        b.goto(&format!("{app_url}{path}"));
        b.wait_text("Novart Studio");
        assert!(
            !toasts(b).iter().any(|t| t.contains("Maintenance tonight")),
            "shown once, not again on {path}"
        );
    }

    // On a phone the toast keeps off the form: at the bottom it would cover
    // Generate, so it goes to the top.
    b.resize(390, 844);
    b.goto(&format!("{app_url}/studio"));
    b.wait_text("Generate");
    b.script("document.querySelector('.studio-panel button[type=submit]').scrollIntoView({block: 'end'});");
    b.script("window.novartToast('Your images are ready.', 'success');");
    let covered = b.script(
        "const t = document.querySelector('#toasts').getBoundingClientRect();
         const g = document.querySelector('.studio-panel button[type=submit]').getBoundingClientRect();
         return g.bottom > t.top && g.top < t.bottom;",
    );
    assert_eq!(covered, json!(false), "the toast covers Generate");
    b.screenshot("28-toast-phone");
}

#[test]
fn generate_waits_while_the_cost_is_over_the_balance() {
    let Some(s) = start("generate_waits_while_the_cost_is_over_the_balance") else {
        return;
    };
    let b = &s.b;
    sign_in_new_user(&s, "short@example.com", "Short", "/studio");
    b.wait_text("Generate");
    // Leave 2 credits (the built-in model costs 1 per image).
    cli(
        &s,
        &[
            "credits",
            "deduct",
            "short@example.com",
            "18",
            "--reason",
            "test",
        ],
    );
    b.goto(&format!("{}/studio", s.app_url));
    b.wait_text("Generate");
    let state = || {
        b.script(
            "return [document.getElementById('generate').disabled, document.getElementById('generate-why').hidden, document.getElementById('generate-why').textContent];",
        )
    };
    assert_eq!(state()[0], json!(false), "1 image for 1 of 2 credits");
    b.select("Images", "4");
    let v = state();
    assert_eq!((&v[0], &v[1]), (&json!(true), &json!(false)), "{v}");
    assert!(
        v[2].as_str().unwrap().contains("4 credits")
            && v[2].as_str().unwrap().contains("2 credits"),
        "{v}"
    );
    b.script("document.getElementById('generate').scrollIntoView({block: 'center'});");
    b.screenshot("29-generate-short");
    b.select("Images", "2");
    let v = state();
    assert_eq!((&v[0], &v[1]), (&json!(false), &json!(true)), "{v}");
}

#[test]
fn generate_is_always_reachable_and_a_new_card_comes_into_view() {
    let Some(s) = start("generate_is_always_reachable_and_a_new_card_comes_into_view") else {
        return;
    };
    let (b, app_url) = (&s.b, &s.app_url);
    sign_in_new_user(&s, "reach@example.com", "Reach", "/studio");
    b.wait_text("Generate");
    for (w, h, name) in [
        (1280, 800, "30-studio-actions"),
        (390, 844, "31-studio-actions-phone"),
    ] {
        b.resize(w, h);
        b.goto(&format!("{app_url}/studio"));
        b.wait_text("Generate");
        assert!(on_screen(b, "#generate"), "Generate on screen at {w}x{h}");
        assert!(on_screen(b, "#cost"), "the cost beside it at {w}x{h}");
        // Opening more options does not push it away.
        b.script("document.querySelector('details.more').open = true;");
        assert!(
            on_screen(b, "#generate"),
            "with more options open at {w}x{h}"
        );
        b.screenshot(name);
    }
    // On the phone, a new task's card is brought into view.
    b.fill("Prompt", "a paper boat on a puddle");
    b.select("Images", "4");
    b.click_button("Generate");
    wait_for("the new card", || {
        b.script("return document.querySelectorAll('.task-card').length;") == json!(1)
    });
    wait_for("the card in view", || {
        b.script("const r = document.querySelector('.task-card').getBoundingClientRect(); return r.top < window.innerHeight && r.bottom > 0;")
            == json!(true)
    });
    // Four images sit in a grid, not one long column.
    wait_for("the images", || {
        b.script("return document.querySelectorAll('.task-card .thumb img').length;") == json!(4)
    });
    let columns = b.script(
        "const xs = Array.from(document.querySelectorAll('.task-card .thumb')).map(t => Math.round(t.getBoundingClientRect().left)); return new Set(xs).size;",
    );
    assert_eq!(columns, json!(2), "two columns on a phone");
    b.screenshot("32-studio-phone-grid");
}
