//! The studio's task cards, the library's tiles and the developer center on
//! a phone, in a real browser (see `common::browser`). Screenshots land in
//! target/screenshots/.

mod common;

use common::browser::*;
use serde_json::{json, Value};

/// Chrome DevTools commands through chromedriver (media emulation).
fn cdp(b: &Browser, cmd: &str, params: Value) {
    b.call(
        "POST",
        "/goog/cdp/execute",
        Some(json!({ "cmd": cmd, "params": params })),
    );
}

fn reduced_motion(b: &Browser, on: bool) {
    let value = if on { "reduce" } else { "no-preference" };
    cdp(
        b,
        "Emulation.setEmulatedMedia",
        json!({ "media": "", "features": [{ "name": "prefers-reduced-motion", "value": value }] }),
    );
}

fn card_text(b: &Browser) -> String {
    b.script("const c = document.querySelector('.task-card'); return c ? c.textContent.replace(/\\s+/g, ' ') : '';")
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Two models: one whose image service is down (the card says it waits for
/// the service to come back, and why: a refused connection, not a timeout)
/// and one whose service answers 503 (the card says it will try again, and
/// counts down). Placeholders pulse unless the browser asks for reduced
/// motion.
#[test]
fn a_waiting_task_says_what_it_waits_for_and_why() {
    let dead = free_port();
    // Answers its health probe, but every render is a 503.
    let busy = common::fake_http::serve(|req| {
        if req.path.starts_with("/sdapi/v1/txt2img") {
            common::fake_http::Resp::json(503, json!({"error": "overloaded"}))
        } else {
            common::fake_http::Resp::json(200, json!({"progress": 0.0, "state": {}}))
        }
    });
    let config = format!(
        r#"
[queue]
max_attempts = 3

[[providers]]
id = "gpu"
kind = "automatic1111"
base_url = "http://127.0.0.1:{dead}"
timeout_secs = 2

[[providers]]
id = "busy"
kind = "automatic1111"
base_url = "{busy}"
timeout_secs = 2

[[models]]
id = "sdxl"
name = "Down SDXL"
providers = ["gpu"]
price = 1
sizes = ["512x512"]
max_n = 2

[[models]]
id = "busy"
name = "Busy SDXL"
providers = ["busy"]
price = 1
sizes = ["512x512"]
max_n = 2
"#,
        busy = busy.url()
    );
    let Some(s) = start_with("a_waiting_task_says_what_it_waits_for_and_why", &config) else {
        return;
    };
    let b = &s.b;
    sign_in_new_user(&s, "wait@example.com", "Waiter", "/studio");
    b.wait_text("Generate");
    b.fill("Prompt", "a lighthouse at dusk");
    b.select("Images", "2");
    b.click_button("Generate");
    wait_for("the wait and its cause on the card", || {
        let t = card_text(b);
        t.contains("Waiting for the image service to come back")
            && t.contains("refused the connection")
    });
    let text = card_text(b);
    assert!(!text.contains("did not answer in time"), "{text}");
    // Placeholders pulse; with reduced motion they hold still.
    let animation =
        "return getComputedStyle(document.querySelector('.task-card .ph')).animationName;";
    assert_eq!(b.script(animation), json!("pulse"));
    b.screenshot("40-task-waiting-for-service");
    reduced_motion(b, true);
    assert_eq!(b.script(animation), json!("none"));
    reduced_motion(b, false);

    // The busy model: a retry with its cause, counting down.
    b.select("Model", "Busy SDXL");
    b.fill("Prompt", "a harbour in fog");
    b.click_button("Generate");
    wait_for("the retry and its cause on the card", || {
        let t = card_text(b);
        t.contains("HTTP 503") && t.contains("trying again in")
    });
    let first = b.script("return document.querySelector('[data-retry-at]').textContent;");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let later = b.script("return document.querySelector('[data-retry-at]').textContent;");
    assert_ne!(first, later, "the countdown ticks");
    b.screenshot("40b-task-retrying");
    b.resize(390, 844);
    b.script("document.querySelector('.task-card').scrollIntoView(); return true;");
    b.screenshot("41-task-retrying-phone");
}

/// A task made with a reference shows that reference on its card.
#[test]
fn a_task_card_shows_the_references_it_used() {
    let Some(s) = start("a_task_card_shows_the_references_it_used") else {
        return;
    };
    let b = &s.b;
    sign_in_new_user(&s, "refs@example.com", "Refs", "/studio");
    b.wait_text("Generate");
    upload_reference(&s, [40, 120, 200]);
    b.fill("Prompt", "the same colours, as a landscape");
    b.click_button("Generate");
    wait_for("the finished card", || {
        b.script("return document.querySelectorAll('.task-card .thumb img').length;") == json!(1)
    });
    wait_for("the reference on the card", || {
        b.script("const i = document.querySelector('.task-card .task-refs img'); return !!i && i.complete && i.naturalWidth > 0 && i.alt;")
            == json!("Reference 1")
    });
    // After a reload too (the page renders the same card).
    b.goto(&format!("{}/studio", s.app_url));
    wait_for("the reference after a reload", || {
        b.script("return document.querySelectorAll('.task-card .task-refs img').length;")
            == json!(1)
    });
    b.screenshot("42-task-card-references");
}

fn opacity(b: &Browser, tile: usize) -> f64 {
    b.script(&format!(
        "return parseFloat(getComputedStyle(document.querySelectorAll('.tile-actions')[{tile}]).opacity);"
    ))
    .as_f64()
    .unwrap()
}

fn tile_boxes(b: &Browser) -> Value {
    b.script("return Array.from(document.querySelectorAll('.tile')).map(t => { const r = t.getBoundingClientRect(); return [Math.round(r.left), Math.round(r.top), Math.round(r.height)]; });")
}

/// Library tiles: newest first in rows, actions on hover and focus (always
/// on touch), sharing opens over the grid without moving a tile, and the
/// tile's own buttons publish and delete.
#[test]
fn library_tiles_carry_their_actions() {
    let Some(s) = start("library_tiles_carry_their_actions") else {
        return;
    };
    let (b, app_url) = (&s.b, &s.app_url);
    sign_in_new_user(&s, "tiles@example.com", "Tiles", "/studio");
    b.wait_text("Generate");
    b.fill("Prompt", "tiles in a row");
    b.select("Images", "4");
    b.click_button("Generate");
    wait_for("four images", || {
        b.script("return document.querySelectorAll('.task-card .thumb img').length;") == json!(4)
    });
    b.goto(&format!("{app_url}/library"));
    b.wait_text("4 images");
    // Rows in reading order: the first two tiles side by side, same top.
    let boxes = tile_boxes(b);
    assert_eq!(boxes[0][1], boxes[1][1], "one row: {boxes}");
    assert!(boxes[0][0].as_i64() < boxes[1][0].as_i64(), "{boxes}");
    // Hidden until hovered or focused (the pointer starts in a corner).
    let corner = json!({ "actions": [{ "type": "pointer", "id": "mouse", "actions": [
        { "type": "pointerMove", "origin": "viewport", "x": 1, "y": 1 }
    ]}]});
    b.call("POST", "/actions", Some(corner.clone()));
    wait_for("the actions hidden", || opacity(b, 0) == 0.0);
    let tile = b.script("return document.querySelectorAll('.tile')[0];");
    let id = tile[ELEMENT].as_str().unwrap().to_string();
    b.hover(&id);
    wait_for("the actions on hover", || opacity(b, 0) == 1.0);
    b.screenshot("43-library-tile-hover");
    b.call("POST", "/actions", Some(corner));
    wait_for("the actions gone again", || opacity(b, 0) == 0.0);
    b.script("document.querySelectorAll('.tile-actions a')[1].focus(); return true;");
    wait_for("the actions on keyboard focus", || opacity(b, 1) == 1.0);
    // Sharing opens over the grid: no tile moves.
    let before = tile_boxes(b);
    b.script("document.querySelectorAll('.tile .share summary')[0].click(); return true;");
    wait_for("the share popover", || {
        b.script("return document.querySelector('.tile .share[open] .share-body').getBoundingClientRect().height > 0;")
            == json!(true)
    });
    assert_eq!(tile_boxes(b), before, "opening the share panel moved tiles");
    wait_for("the open tile's actions shown", || opacity(b, 0) == 1.0);
    b.screenshot("44-library-share-open");
    // Publish from the tile.
    b.script("document.querySelectorAll('.tile .share summary')[0].click(); document.querySelectorAll('.tile-actions button[aria-label=\"Publish to the gallery\"]')[0].click(); return true;");
    wait_for("the published tile", || {
        b.script("return document.querySelectorAll('.tile-actions button[aria-pressed=\"true\"]').length;")
            == json!(1)
    });
    // Delete from the tile, after the question.
    b.script("document.querySelectorAll('.tile-actions button.danger')[3].click(); return true;");
    wait_for("the question", || {
        b.call("GET", "/alert/text", None) == json!("Delete this image for good?")
    });
    b.call("POST", "/alert/accept", None);
    b.wait_text("3 images");
    // On a touch screen the actions are always there.
    b.resize(390, 844);
    cdp(
        b,
        "Emulation.setTouchEmulationEnabled",
        json!({ "enabled": true, "maxTouchPoints": 5 }),
    );
    b.goto(&format!("{app_url}/library"));
    b.wait_text("3 images");
    assert_eq!(opacity(b, 0), 1.0, "actions visible on touch");
    assert!(b.no_horizontal_scroll());
    // Two tiles a row, all four buttons inside the tile.
    let boxes = tile_boxes(b);
    assert_eq!(boxes[0][1], boxes[1][1], "two a row on a phone: {boxes}");
    let inside = b.script("const t = document.querySelector('.tile-media').getBoundingClientRect(); return Array.from(document.querySelectorAll('.tile')[0].querySelectorAll('.icon-btn')).every(x => { const r = x.getBoundingClientRect(); return r.left >= t.left && r.right <= t.right; });");
    assert_eq!(inside, json!(true));
    b.script("document.querySelector('.gallery').scrollIntoView(); return true;");
    b.screenshot("45-library-phone-touch");
}

/// The developer center on a phone: the keys and the request log are cards
/// that fit, the actions are on screen, and the log lists key calls by
/// default (the studio's own calls behind a filter).
#[test]
fn the_developer_center_fits_a_phone_and_hides_the_studios_calls() {
    let Some(s) = start("the_developer_center_fits_a_phone_and_hides_the_studios_calls") else {
        return;
    };
    let (b, app_url) = (&s.b, &s.app_url);
    sign_in_new_user(&s, "devphone@example.com", "Dev", "/developer");
    b.wait_text("API keys");
    b.fill("Name", "phone script");
    b.click_button("Create key");
    // The form posts and the page reloads with the key shown once.
    wait_for("the new key", || {
        b.script("return !!document.getElementById('new-key-secret');") == json!(true)
    });
    let secret = b.script("return document.getElementById('new-key-secret').textContent;");
    let secret = secret.as_str().unwrap().to_string();
    // One call with the key, one from the studio (its balance check).
    ureq::get(format!("{app_url}/api/v1/account"))
        .header("Authorization", &format!("Bearer {secret}"))
        .call()
        .unwrap();
    b.goto(&format!("{app_url}/studio"));
    b.wait_text("Generate");
    b.script("return fetch('/api/v1/account', {credentials: 'same-origin', headers: {'x-csrf-token': document.querySelector('meta[name=csrf-token]').content}}).then(r => r.status);");
    b.resize(390, 844);
    b.goto(&format!("{app_url}/developer"));
    b.wait_text("Request log");
    let rows = "return Array.from(document.querySelectorAll('table.requests tbody tr')).map(r => r.textContent.replace(/\\s+/g, ' ').trim());";
    // The log is written just after each answer: reload until it is there.
    wait_for("the key's call in the log", || {
        b.goto(&format!("{app_url}/developer"));
        b.wait_text("Request log");
        b.script(rows).as_array().map(|a| a.len()) == Some(1)
    });
    let listed = b.script(rows);
    assert!(
        listed[0].as_str().unwrap().contains("GET /api/v1/account"),
        "only the key's call: {listed}"
    );
    assert!(b.no_horizontal_scroll(), "the page fits 390 px");
    // The key's actions are on screen, not off to the right.
    let fits = b.script("return Array.from(document.querySelectorAll('table.keys td.actions button')).every(x => { const r = x.getBoundingClientRect(); return r.width > 0 && r.right <= window.innerWidth; });");
    assert_eq!(fits, json!(true));
    // The cards have room between them.
    let gap = b.script("const c = document.querySelectorAll('section.card'); return c[1].getBoundingClientRect().top - c[0].getBoundingClientRect().bottom;");
    assert!(gap.as_f64().unwrap() >= 16.0, "gap {gap}");
    b.script("document.getElementById('keys').scrollIntoView(); return true;");
    b.screenshot("46-developer-phone-keys");
    b.script("document.getElementById('requests').scrollIntoView(); return true;");
    b.screenshot("47-developer-phone-log");
    // The filter shows the studio's calls too.
    b.select("Key", "All calls, the studio included");
    b.click_button("Filter");
    wait_for("both calls", || {
        b.script(rows).as_array().map(|a| a.len()) >= Some(2)
    });
}
