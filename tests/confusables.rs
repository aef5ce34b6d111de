//! The content rules read what a reader sees: a table of many Unicode
//! variants of each built-in term (enclosed, squared, small capitals,
//! look-alike letters of other scripts, invisible characters between the
//! letters, Traditional Chinese) must all be blocked, and ordinary prompts
//! in English and Chinese must all pass. Prints the share blocked.

use novart::config::ModerationConfig;
use novart::domain::moderation::Moderator;

const TERMS: &[&str] = &[
    "passport",
    "id card",
    "diploma",
    "birth certificate",
    "official seal",
    "driver license",
    "company chop",
    "notary stamp",
];

const CHINESE: &[(&str, &str)] = &[
    // (Simplified as listed, Traditional)
    ("身份证", "身份證"),
    ("护照", "護照"),
    ("驾驶证", "駕駛證"),
    ("营业执照", "營業執照"),
    ("毕业证", "畢業證"),
    ("财务专用章", "財務專用章"),
    ("结婚证", "結婚證"),
    ("证件照", "證件照"),
];

fn offset(c: char, base: u32) -> Option<char> {
    c.is_ascii_lowercase()
        .then(|| char::from_u32(base + (c as u32 - 'a' as u32)))
        .flatten()
}

/// Each letter through `f` (other characters as they are).
fn each(term: &str, f: impl Fn(char) -> Option<char>) -> String {
    term.chars().map(|c| f(c).unwrap_or(c)).collect()
}

/// `sep` between every two characters of each word.
fn between(term: &str, sep: &str) -> String {
    term.split(' ')
        .map(|w| w.chars().map(String::from).collect::<Vec<_>>().join(sep))
        .collect::<Vec<_>>()
        .join(" ")
}

fn small_capital(c: char) -> Option<char> {
    let caps = "ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘꞯʀꜱᴛᴜᴠᴡxʏᴢ";
    c.is_ascii_lowercase()
        .then(|| caps.chars().nth((c as u32 - 'a' as u32) as usize))
        .flatten()
}

fn cyrillic(c: char) -> Option<char> {
    Some(match c {
        'a' => 'а',
        'c' => 'с',
        'd' => 'ԁ',
        'e' => 'е',
        'h' => 'һ',
        'i' => 'і',
        'j' => 'ј',
        'o' => 'о',
        'p' => 'р',
        's' => 'ѕ',
        'x' => 'х',
        'y' => 'у',
        _ => return None,
    })
}

fn greek(c: char) -> Option<char> {
    Some(match c {
        'a' => 'α',
        'i' => 'ι',
        'n' => 'η',
        'o' => 'ο',
        'p' => 'ρ',
        't' => 'τ',
        'u' => 'υ',
        'v' => 'ν',
        _ => return None,
    })
}

fn superscript(c: char) -> Option<char> {
    let mods = "ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖ\u{0}ʳˢᵗᵘᵛʷˣʸᶻ";
    small_capital(c)?;
    mods.chars()
        .nth((c as u32 - 'a' as u32) as usize)
        .filter(|m| *m != '\u{0}')
}

fn zalgo(term: &str) -> String {
    term.chars()
        .flat_map(|c| [c, '\u{0301}', '\u{0317}'])
        .collect()
}

/// Every variant of an English term, named.
fn variants(term: &str) -> Vec<(&'static str, String)> {
    let upper = term.to_uppercase();
    vec![
        ("plain", term.to_string()),
        ("upper case", upper.clone()),
        ("full width", each(term, |c| offset(c, 0xff41))),
        ("small capitals", each(term, small_capital)),
        ("circled", each(term, |c| offset(c, 0x24d0))),
        ("negative circled", each(term, |c| offset(c, 0x1f150))),
        ("squared", each(term, |c| offset(c, 0x1f130))),
        ("negative squared", each(term, |c| offset(c, 0x1f170))),
        (
            "regional indicators",
            between(&each(term, |c| offset(c, 0x1f1e6)), "\u{200b}"),
        ),
        ("parenthesized", each(term, |c| offset(c, 0x249c))),
        ("mathematical bold", each(term, |c| offset(c, 0x1d41a))),
        ("mathematical fraktur", each(term, |c| offset(c, 0x1d586))),
        (
            "mathematical double-struck",
            each(term, |c| offset(c, 0x1d552)),
        ),
        ("mathematical monospace", each(term, |c| offset(c, 0x1d68a))),
        ("superscript letters", each(term, superscript)),
        ("Cyrillic look-alikes", each(term, cyrillic)),
        ("Greek look-alikes", each(term, greek)),
        ("accents", zalgo(term)),
        ("zero-width space", between(term, "\u{200b}")),
        ("zero-width joiner", between(term, "\u{200d}")),
        ("word joiner", between(term, "\u{2060}")),
        ("soft hyphen", between(term, "\u{00ad}")),
        ("Hangul filler", between(term, "\u{3164}")),
        ("halfwidth Hangul filler", between(term, "\u{ffa0}")),
        ("Hangul choseong filler", between(term, "\u{115f}")),
        ("tag characters", between(term, "\u{e0020}\u{e0041}")),
        ("variation selectors", between(term, "\u{fe0f}")),
        ("Mongolian vowel separator", between(term, "\u{180e}")),
        ("bidi controls", between(term, "\u{202e}\u{202c}")),
        ("combining grapheme joiner", between(term, "\u{034f}")),
        ("spaced letters", between(term, " ")),
        ("dotted letters", between(term, ".")),
        (
            "alternating case",
            term.chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect(),
        ),
        ("mixed tricks", {
            let s = each(term, small_capital);
            between(&s, "\u{3164}")
        }),
    ]
}

fn chinese_variants(simplified: &str, traditional: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Simplified", simplified.to_string()),
        ("Traditional", traditional.to_string()),
        (
            "Traditional, zero-width space",
            between(traditional, "\u{200b}"),
        ),
        ("Hangul filler", between(simplified, "\u{3164}")),
        (
            "Traditional, Hangul filler",
            between(traditional, "\u{3164}"),
        ),
        ("tag characters", between(simplified, "\u{e0020}")),
        ("ideographic spaces", between(simplified, "\u{3000}")),
        ("variation selectors", between(traditional, "\u{fe00}")),
        ("in a sentence", format!("一张{traditional}的照片")),
    ]
}

/// Ordinary prompts that must pass.
const ORDINARY: &[&str] = &[
    "a lighthouse at dusk, oil painting",
    "portrait of an old fisherman, dramatic light",
    "a seal pup on the ice, national geographic style",
    "passing clouds over a mountain port",
    "a stamp collector's desk with a magnifying glass",
    "idyllic cottage garden in spring",
    "card castle on a kitchen table",
    "a diplomat's library with leather chairs",
    "certified organic apples in a wooden crate",
    "race car driver in the rain",
    "ancient Greek temple, ελληνικά letters carved in stone",
    "a Russian winter village, надпись на вывеске",
    "ꓑretty Lisu script poster",
    "Tokyo street at night, 東京の夜景",
    "서울의 야경, 네온사인",
    "𝐁𝐨𝐥𝐝 typography poster for a jazz concert",
    "🅰🅱🅲 alphabet blocks for a nursery",
    "café au lait with latte art, close up",
    "straße in Berlin, winter, tram",
    "中国山水画，云雾缭绕",
    "一只可爱的熊猫在竹林里吃竹子",
    "未來城市的夜景，霓虹燈",
    "傳統中國庭院，春天的櫻花",
    "邮票收藏展览",
    "海豹在冰面上休息",
    "一张古老的地图，羊皮纸质感",
    "毕业典礼上抛起的学士帽",
    "护士在医院走廊里微笑",
    "驾驶舱内的飞行员，电影感",
    "公园里的长椅和落叶",
];

#[test]
fn unicode_variants_of_every_term_are_blocked_and_ordinary_prompts_pass() {
    let m = Moderator::new(&ModerationConfig::default());
    let mut total = 0;
    let mut missed = Vec::new();
    for term in TERMS {
        for (how, text) in variants(term) {
            total += 1;
            let prompt = format!("a photo of a {text} on a desk");
            if m.check_rules("prompt", &prompt).is_none() {
                missed.push(format!("{term} / {how}: {prompt:?}"));
            }
        }
    }
    for (s, t) in CHINESE {
        for (how, text) in chinese_variants(s, t) {
            total += 1;
            if m.check_rules("prompt", &text).is_none() {
                missed.push(format!("{s} / {how}: {text:?}"));
            }
        }
    }
    let blocked = total - missed.len();
    println!(
        "content rules: {blocked} of {total} variants blocked ({:.1} %)",
        blocked as f64 * 100.0 / total as f64
    );
    assert!(missed.is_empty(), "not blocked: {missed:#?}");

    let wrong: Vec<(&str, String)> = ORDINARY
        .iter()
        .filter_map(|p| m.check_rules("prompt", p).map(|h| (*p, h.rule)))
        .collect();
    assert!(wrong.is_empty(), "ordinary prompts blocked: {wrong:#?}");
}
