//! Text folded to what a reader sees, for the content rules: width,
//! decorated, enclosed and squared letters, accents, case, look-alike
//! letters of other scripts and small capitals come out as the plain Latin
//! letter; default-ignorable and invisible code points (zero-width
//! characters, Hangul fillers, tag characters, variation selectors) vanish;
//! Traditional Chinese comes out as Simplified.
//!
//! The data is Unicode's own: NFKD decompositions (`unicode-normalization`),
//! the UTS #39 confusables prototypes and default-ignorable set
//! (`unicode-security`), and OpenCC's Traditional-to-Simplified character
//! table (`fast2s`). What those leave out is small and rule-shaped: the
//! letter symbols without a decomposition (negative circled and squared
//! letters, regional indicators), the small capitals, and a few lowercase
//! Greek and Cyrillic letters that read as Latin ones in most fonts.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Scripts read character by character (Chinese, Japanese, Korean).
pub fn is_cjk(c: char) -> bool {
    matches!(c, '\u{1100}'..='\u{11ff}' | '\u{3130}'..='\u{318f}' | '\u{a960}'..='\u{a97f}' | '\u{d7b0}'..='\u{d7ff}' | '\u{2e80}'..='\u{2fdf}' | '\u{3040}'..='\u{30ff}' | '\u{3100}'..='\u{312f}' | '\u{3190}'..='\u{31ff}' | '\u{3400}'..='\u{4dbf}' | '\u{4e00}'..='\u{9fff}' | '\u{f900}'..='\u{faff}' | '\u{ac00}'..='\u{d7af}' | '\u{20000}'..='\u{3134f}')
}

/// The UTS #39 skeleton of one character (its confusable prototype; empty
/// for a default-ignorable code point).
fn skeleton(c: char) -> impl Iterator<Item = char> {
    let mut buf = [0u8; 4];
    let s: &str = c.encode_utf8(&mut buf);
    unicode_security::skeleton(s)
        .collect::<Vec<_>>()
        .into_iter()
}

/// Default-ignorable code points (UTS #39 drops them from skeletons), and
/// blank look-alikes that are not in that set.
fn is_invisible(c: char) -> bool {
    if matches!(c, '\u{2800}' | '\u{3000}' | '\u{00a0}') {
        return false; // blanks that separate words, like a space
    }
    !c.is_ascii() && skeleton(c).next().is_none()
}

/// Letter symbols with no decomposition: negative circled (🅐) and
/// negative squared (🅰) capitals, regional indicators (🇦).
fn letter_symbol(c: char) -> Option<char> {
    let base = match c {
        '\u{1f150}'..='\u{1f169}' => 0x1f150,
        '\u{1f170}'..='\u{1f189}' => 0x1f170,
        '\u{1f1e6}'..='\u{1f1ff}' => 0x1f1e6,
        _ => return None,
    };
    char::from_u32('a' as u32 + (c as u32 - base))
}

/// Small capitals and the prototypes the confusables data gives for some
/// of them (kra for small K, turned w for small M).
fn small_capital(c: char) -> Option<char> {
    Some(match c {
        'ᴀ' => 'a',
        'ʙ' => 'b',
        'ᴄ' => 'c',
        'ᴅ' => 'd',
        'ᴇ' => 'e',
        'ꜰ' => 'f',
        'ɢ' => 'g',
        'ʜ' => 'h',
        'ɪ' => 'i',
        'ᴊ' => 'j',
        'ᴋ' | 'ĸ' => 'k',
        'ʟ' => 'l',
        'ᴍ' | 'ʍ' => 'm',
        'ɴ' => 'n',
        'ᴏ' => 'o',
        'ᴘ' => 'p',
        'ꞯ' => 'q',
        'ʀ' => 'r',
        'ꜱ' => 's',
        'ᴛ' => 't',
        'ᴜ' => 'u',
        'ᴠ' => 'v',
        'ᴡ' => 'w',
        'ʏ' => 'y',
        'ᴢ' => 'z',
        _ => return None,
    })
}

/// Lowercase Greek and Cyrillic letters that read as Latin ones but are not
/// in the confusables data (it pairs letters by shape in every font).
fn lowercase_look_alike(c: char) -> Option<char> {
    Some(match c {
        'β' => 'b',
        'ε' | 'ꞓ' => 'e',
        'η' | 'п' | 'π' => 'n',
        'ω' => 'w',
        'χ' => 'x',
        _ => return None,
    })
}

/// A non-ASCII letter as the Latin letters it stands for, if it stands for
/// any: the confusables prototype followed until it is plain Latin (the
/// prototype of Cyrillic в is small capital B, whose letter is b).
fn latin(c: char, out: &mut Vec<char>) -> bool {
    let mut cur = c;
    for _ in 0..3 {
        if let Some(l) = letter_symbol(cur).or_else(|| small_capital(cur)) {
            out.push(l);
            return true;
        }
        let proto: Vec<char> = skeleton(cur)
            .flat_map(char::to_lowercase)
            .filter(|c| !is_combining_mark(*c))
            .collect();
        if !proto.is_empty() && proto.iter().all(char::is_ascii_alphabetic) {
            out.extend(proto);
            return true;
        }
        match proto.as_slice() {
            [one] if *one != cur => cur = *one,
            _ => break,
        }
    }
    if let Some(l) = lowercase_look_alike(cur) {
        out.push(l);
        return true;
    }
    false
}

/// The text as a reader sees it: Traditional Chinese as Simplified,
/// compatibility forms decomposed, accents and invisible code points
/// dropped, lower case, look-alike letters as the Latin letter.
pub fn fold(text: &str) -> Vec<char> {
    let simplified = fast2s::convert(text);
    let mut out = Vec::with_capacity(text.len());
    let mut latin_buf = Vec::with_capacity(2);
    for c in simplified.nfkd() {
        if is_combining_mark(c) || is_invisible(c) {
            continue;
        }
        for c in c.to_lowercase() {
            if c.is_ascii() || is_cjk(c) {
                out.push(c);
                continue;
            }
            latin_buf.clear();
            if latin(c, &mut latin_buf) {
                out.extend_from_slice(&latin_buf);
            } else {
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(s: &str) -> String {
        fold(s).into_iter().collect()
    }

    #[test]
    fn what_a_reader_sees() {
        for (text, want) in [
            ("ＰＡＳＳ", "pass"),
            ("pässport", "passport"),
            ("p\u{0430}ss", "pass"),
            ("ᴘᴀꜱꜱᴘᴏʀᴛ", "passport"),
            ("🅿🅰🆂🆂", "pass"),
            ("🅟🅐🅢🅢", "pass"),
            ("🇵🇦🇸🇸", "pass"),
            ("🄿🄰🅂🅂", "pass"),
            ("ⓟⓐⓢⓢ", "pass"),
            ("pa\u{3164}ss", "pass"),
            ("pa\u{e0041}\u{e0042}ss", "pass"),
            ("pa\u{fe0f}s\u{200d}s\u{2060}", "pass"),
            ("ꓑꓮꓢꓢ", "pass"),
            ("вт", "bt"),
            ("身份證", "身份证"),
            ("護照", "护照"),
        ] {
            assert_eq!(folded(text), want, "{text:?}");
        }
    }

    #[test]
    fn ordinary_text_stays_as_it_is() {
        for text in [
            "a lighthouse at dusk, 4k",
            "中国山水画 云雾缭绕",
            "夜景を描いた版画", // Japanese kanji and kana
            "한국어 문장",
        ] {
            let decomposed: String = text.nfkd().collect();
            assert_eq!(folded(text), decomposed.to_lowercase(), "{text}");
        }
        // Kanji that are Traditional forms are read as Simplified too.
        assert_eq!(folded("東京"), "东京");
        // Other scripts keep their letters where they do not read as Latin
        // (the others fold: this text is only ever matched, never shown).
        assert_eq!(folded("ελληνικά"), "eλλnvika");
    }
}
