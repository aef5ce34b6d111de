//! Content rules: evasion tricks are caught, fair near-misses pass, a block
//! charges nothing and is logged (user, key, IP, rule, prompt hash and
//! excerpt), operators' terms and patterns work, and an upstream
//! `/v1/moderations` service is asked in the OpenAI format.

mod common;

use common::fake_http::{serve, Resp};
use common::TestApp;
use novart::config::{ModerationConfig, ProviderFailure};
use novart::domain::moderation::Moderator;
use rocket::http::{ContentType, Header, Status};
use serde_json::{json, Value};

/// Each uses a different trick; all must be blocked.
const EVASIONS: &[&str] = &[
    "a fake passport for a spy movie prop",
    "PASSPORT scan, high detail",
    "p a s s p o r t photo page",
    "p.a.s.s.p.o.r.t data page",
    "pa$$p0rt of a man",
    "ｐａｓｓｐｏｒｔ",          // full-width letters
    "pássport with visa stamps", // accent
    "p\u{0430}ssport cover",     // Cyrillic а
    "pass\u{200b}port",          // zero-width space
    "pass-port renewal form",
    "passsssssport",      // stretched letters
    "ⓟⓐⓢⓢⓟⓞⓡⓣ",           // circled letters
    "𝐩𝐚𝐬𝐬𝐩𝐨𝐫𝐭 on a desk", // mathematical bold
    "driver's license of John Smith",
    "UK drivers licence, front side",
    "DRIVER LICENSE template",
    "d r i v e r s   l i c e n s e",
    "1D card with hologram", // leetspeak
    "identity card of a citizen",
    "national ID, realistic",
    "id photo, white background, head and shoulders",
    "证件照 白底",
    "身份证 正面",
    "中国护照内页",
    "birth certificate from 1990",
    "b1rth cert1f1cate",
    "university diploma with signature",
    "three diplomas on a wall",
    "the official seal of the ministry",
    "company seal and company chop",
    "盖公章的合同",
    "notary stamp on a document",
    "0ff1c1al s3al",
    "Official_Seal",
    "social-security card",
    "marriage certificate, vintage",
];

/// Fair prompts that share words or letters with the blocked ones.
const HARMLESS: &[&str] = &[
    "stamp collection exhibition photo",
    "a baby seal resting on an arctic ice floe",
    "sea lions and a seal colony at sunset",
    "a wax seal on a vintage love letter",
    "a sealed envelope on a wooden desk",
    "stampede of wild horses across the plains",
    "a stamped leather wallet, product photo",
    "a passionate portrait of a flamenco dancer",
    "passing ships in the port at dawn",
    "identity crisis, abstract expressionist painting",
    "card game night with friends, cozy lighting",
    "squid ink pasta on a white plate",
    "id, ego and superego as three surreal creatures",
    "an ID cardigan knitting pattern",
    "race car driver celebrating a win with champagne",
    "driver's seat of a race car, cockpit view",
    "a vintage license plate on a classic car",
    "certified organic vegetables at a farmers market",
    "graduation caps thrown in the air",
    "a birthday cake with candles",
    "official portrait of a fictional queen, oil painting",
    "postage stamps from around the world, macro photo",
    "rubber stamp art of a fox",
    "a diplomat shaking hands, editorial illustration",
    "portrait photo of a golden retriever",
    "travel poster of Paris in art deco style",
    "astronaut riding a horse on mars",
    "1990s anime style city at night, 4k",
    "中国山水画，云雾缭绕",
    "邮票收藏展览照片",
    "a seal pup and a penguin, children's book style",
    "Navy ship in a harbour, watercolor",
    "a certificate-shaped cookie with icing, whimsical bakery",
    "photo ID badge lanyard clip, product render",
];

fn moderator() -> Moderator {
    Moderator::new(&ModerationConfig::default())
}

#[test]
fn every_evasion_trick_is_blocked() {
    let m = moderator();
    assert!(EVASIONS.len() >= 30);
    let missed: Vec<&str> = EVASIONS
        .iter()
        .copied()
        .filter(|p| m.check_rules("prompt", p).is_none())
        .collect();
    assert!(missed.is_empty(), "not blocked: {missed:#?}");
}

#[test]
fn fair_near_misses_are_not_blocked() {
    let m = moderator();
    assert!(HARMLESS.len() >= 30);
    let wrong: Vec<(&str, String)> = HARMLESS
        .iter()
        .filter_map(|p| m.check_rules("prompt", p).map(|h| (*p, h.rule)))
        .collect();
    assert!(wrong.is_empty(), "blocked by mistake: {wrong:#?}");
}

#[test]
fn categories_terms_and_patterns_come_from_the_config() {
    let mut c = ModerationConfig {
        categories: vec!["certificates".into()],
        blocked_terms: vec!["Glorbnax".into()],
        blocked_patterns: vec![r"\bcounterfeit (bank ?notes?|money)\b".into()],
        ..ModerationConfig::default()
    };
    let m = Moderator::new(&c);
    assert!(
        m.check_rules("prompt", "a passport").is_none(),
        "category off"
    );
    assert!(m.check_rules("prompt", "a diploma").is_some());
    let hit = m.check_rules("negative_prompt", "g l 0 r b n @ x").unwrap();
    assert_eq!(hit.rule, "term:Glorbnax");
    assert_eq!(hit.field, "negative_prompt");
    let hit = m
        .check_rules("prompt", "Counterfeit   BANK-notes, stacks")
        .unwrap();
    assert_eq!(hit.rule, "pattern:0");
    c.enabled = false;
    assert!(Moderator::new(&c)
        .check_rules("prompt", "a diploma")
        .is_none());
}

#[test]
fn bad_moderation_config_names_the_key() {
    for (f, key) in [
        (
            Box::new(|c: &mut ModerationConfig| c.categories = vec!["weapons".into()])
                as Box<dyn Fn(&mut ModerationConfig)>,
            "moderation.categories[0]",
        ),
        (
            Box::new(|c: &mut ModerationConfig| c.blocked_patterns = vec!["(unclosed".into()]),
            "moderation.blocked_patterns[0]",
        ),
        (
            Box::new(|c: &mut ModerationConfig| c.ban_durations = vec!["1h".into(), "soon".into()]),
            "moderation.ban_durations[1]",
        ),
        (
            Box::new(|c: &mut ModerationConfig| c.provider_url = "ftp://x".into()),
            "moderation.provider_url",
        ),
    ] {
        let mut config = novart::config::Config::for_data_dir(std::path::Path::new("/tmp"));
        f(&mut config.moderation);
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains(key), "{e} should name {key}");
    }
}

fn state(t: &TestApp) -> &novart::App {
    t.client.rocket().state::<novart::App>().unwrap()
}

fn setup(t: &TestApp, email: &str) -> (novart::model::UserId, String) {
    common::user_with_key(state(t), email, 100)
}

fn post(t: &TestApp, key: &str, path: &str, body: Value) -> (Status, Value) {
    let r = t
        .client
        .post(path.to_string())
        .header(Header::new("Authorization", format!("Bearer {key}")))
        .header(ContentType::JSON)
        .body(body.to_string())
        .dispatch();
    let s = r.status();
    (s, serde_json::from_str(&r.into_string().unwrap()).unwrap())
}

/// user, key, rule, field, prompt hash, excerpt
type BlockRow = (Option<i64>, Option<i64>, String, String, String, String);

#[test]
fn a_blocked_prompt_charges_nothing_and_is_logged() {
    let t = TestApp::with(|c| {
        c.queue.workers = 0;
        c.moderation.escalate_after = 0;
    });
    let (user, key) = setup(&t, "maker@example.com");
    let balance = || {
        novart::domain::wallet::get(&state(&t).db.get().unwrap(), user)
            .unwrap()
            .total()
    };
    let before = balance();
    let prompt = "A realistic pa$$port photo page for a spy film, very detailed, with a hologram and a stamp and lots of extra words to clip";
    let (s, v) = post(&t, &key, "/api/v1/tasks", json!({ "prompt": prompt }));
    assert_eq!(s.code, 422, "{v}");
    assert_eq!(v["error"]["code"], "content_blocked");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("identity documents"));
    // The OpenAI-compatible route and a negative prompt are checked too.
    let (s, v) = post(
        &t,
        &key,
        "/v1/images/generations",
        json!({ "prompt": "a calm lake", "negative_prompt": "blurry, birth certificate" }),
    );
    assert_eq!(s.code, 422, "{v}");
    assert_eq!(v["error"]["code"], "content_blocked");
    assert_eq!(balance(), before, "nothing charged");
    let db = t.db();
    let tasks: i64 = db
        .query_row("SELECT count(*) FROM tasks", (), |r| r.get(0))
        .unwrap();
    assert_eq!(tasks, 0, "nothing queued");
    let rows: Vec<BlockRow> = db
        .prepare("SELECT user_id, api_key_id, rule, field, prompt_sha256, excerpt FROM blocked_attempts ORDER BY id")
        .unwrap()
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 2);
    let (u, k, rule, field, hash, excerpt) = &rows[0];
    assert_eq!(*u, Some(user.0));
    assert!(k.is_some(), "the key is recorded");
    assert_eq!(rule, "builtin:identity_documents:passport");
    assert_eq!(field, "prompt");
    assert_eq!(hash.len(), 64);
    assert!(prompt.starts_with(excerpt.trim_end_matches('…')));
    assert!(excerpt.chars().count() <= 81 && excerpt.ends_with('…'));
    assert_eq!(rows[1].3, "negative_prompt");
    assert_eq!(rows[1].2, "builtin:certificates:birth certificate");
    // The audit log has the automatic decision.
    let audited: i64 = db
        .query_row(
            "SELECT count(*) FROM audit_log WHERE action = 'moderation.block' AND actor = 'system'",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(audited, 2);
    // Kept for [moderation] blocked_log_retention_days, then swept.
    let now = novart::domain::now();
    let kept =
        novart::domain::retention::sweep(&state(&t).db, &t.config, now + 364 * 86_400).unwrap();
    assert_eq!(kept.blocked_attempts_deleted, 0);
    let gone =
        novart::domain::retention::sweep(&state(&t).db, &t.config, now + 366 * 86_400).unwrap();
    assert_eq!(gone.blocked_attempts_deleted, 2);
}

#[test]
fn the_studio_form_explains_a_block() {
    let t = TestApp::with(|c| c.queue.workers = 0);
    t.signed_in_user("web@example.com");
    let r = t.submit(
        "/studio",
        "/studio",
        &[
            ("prompt", "official seal of a company"),
            ("model", "novart-builtin"),
            ("aspect_ratio", "1:1"),
            ("resolution", "1024"),
            ("n", "1"),
        ],
    );
    assert_eq!(r.status().code, 422);
    let html = r.into_string().unwrap();
    assert!(html.contains("blocked by the content rules (seals and stamps)"));
    assert!(html.contains("Nothing was charged"));
    assert!(
        html.contains("official seal of a company"),
        "the prompt is kept"
    );
}

#[test]
fn an_upstream_moderation_service_is_asked_in_the_openai_format() {
    let fake = serve(|req| {
        let input = req.json()["input"].to_string();
        if input.contains("dragon") {
            Resp::json(
                200,
                json!({ "id": "modr-1", "model": "omni-moderation-latest", "results": [
                    { "flagged": true, "categories": { "violence": true, "sexual": false }, "category_scores": { "violence": 0.93 } }
                ] }),
            )
        } else if input.contains("outage") {
            Resp::json(503, json!({ "error": { "message": "overloaded" } }))
        } else {
            Resp::json(
                200,
                json!({ "id": "modr-2", "model": "omni-moderation-latest", "results": [
                    { "flagged": false, "categories": { "violence": false }, "category_scores": {} }
                ] }),
            )
        }
    });
    let mut c = ModerationConfig {
        provider_url: format!("{}/v1/moderations", fake.url()),
        provider_api_key: "sk-mod".into(),
        ..ModerationConfig::default()
    };
    let m = Moderator::new(&c);
    let hit = m.check("a dragon fight", "").unwrap().unwrap();
    assert_eq!(hit.rule, "provider:violence");
    assert!(m.check("a quiet garden", "").unwrap().is_none());
    assert!(
        m.check("outage", "").unwrap().is_none(),
        "provider_failure = allow"
    );
    // The local rules answer first: the service is not asked for them.
    let asked = fake.requests_to("/v1/moderations").len();
    assert!(m.check("passport", "").unwrap().is_some());
    assert_eq!(fake.requests_to("/v1/moderations").len(), asked);
    let req = &fake.requests_to("/v1/moderations")[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.header("authorization"), Some("Bearer sk-mod"));
    assert_eq!(req.json()["model"], "omni-moderation-latest");
    assert_eq!(req.json()["input"], json!(["a dragon fight"]));
    c.provider_failure = ProviderFailure::Refuse;
    let e = Moderator::new(&c).check("outage", "").unwrap_err();
    assert_eq!(e.status(), 503);
}
