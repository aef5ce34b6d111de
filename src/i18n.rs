//! Languages. Every text the product shows comes from a catalogue per
//! language, `templates/i18n/<code>.toml` (sections of `key = "text"`, with
//! `{name}` placeholders), looked up as `section.key`; templates call
//! `t(k="section.key", l=lang, name=...)`. A language is offered only when
//! its catalogue has every key the English one has, so a visitor never gets
//! a page that is half in one language.

use std::collections::{BTreeMap, HashMap};

use figment::providers::{Format, Toml};
use figment::Figment;

use crate::error::{AppError, AppResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    En,
    ZhCn,
}

pub const ALL: [Lang; 2] = [Lang::En, Lang::ZhCn];

/// Languages the whole product (every page, e-mail and message) is written
/// in. A complete catalogue is not enough on its own: Simplified Chinese is
/// offered once every page reads its texts from the catalogue.
pub const READY: &[Lang] = &[Lang::En, Lang::ZhCn];

impl Lang {
    /// The BCP 47 tag (also the catalogue's file name and `<html lang>`).
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    /// The language's own name, for the switcher.
    pub fn label(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::ZhCn => "简体中文",
        }
    }

    /// A tag from a cookie, a form or an account: exact codes, and the
    /// usual spellings of Simplified Chinese.
    pub fn parse(tag: &str) -> Option<Lang> {
        let t = tag.trim().to_ascii_lowercase().replace('_', "-");
        match t.as_str() {
            "en" => Some(Lang::En),
            _ if t.starts_with("en-") => Some(Lang::En),
            "zh" | "zh-cn" | "zh-hans" | "zh-sg" => Some(Lang::ZhCn),
            _ if t.starts_with("zh-hans") => Some(Lang::ZhCn),
            _ => None,
        }
    }
}

/// The language for a request: the account's choice, else the `lang`
/// cookie, else the best of `Accept-Language` (by q-value, in order), else
/// English. Only `offered` languages are ever chosen.
pub fn negotiate(
    account: Option<&str>,
    cookie: Option<&str>,
    accept_language: Option<&str>,
    offered: &[Lang],
) -> Lang {
    let ok = |l: &Lang| offered.contains(l);
    if let Some(l) = account.and_then(Lang::parse).filter(ok) {
        return l;
    }
    if let Some(l) = cookie.and_then(Lang::parse).filter(ok) {
        return l;
    }
    let mut ranked: Vec<(f32, usize, Lang)> = Vec::new();
    for (i, part) in accept_language.unwrap_or("").split(',').enumerate() {
        let mut pieces = part.split(';');
        let tag = pieces.next().unwrap_or("").trim();
        let q = pieces
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if q <= 0.0 {
            continue;
        }
        if let Some(l) = Lang::parse(tag).filter(ok) {
            ranked.push((q, i, l));
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ranked.first().map(|r| r.2).unwrap_or(Lang::En)
}

/// The catalogues, flattened to `section.key` → text, plus each
/// language's message catalogue.
pub struct Catalogs {
    texts: HashMap<Lang, HashMap<String, String>>,
    messages: HashMap<Lang, Messages>,
    /// Languages with a catalogue that has exactly the English keys
    /// (worked out once: every request asks).
    complete: Vec<Lang>,
    /// Each language's texts as `{section: {key: text}}` (English filling
    /// gaps), for templates that show many plain texts in loops.
    trees: HashMap<Lang, serde_json::Value>,
}

/// Texts the server writes (form errors, notices, inbox messages) are
/// written in English in the code, the way gettext works: the English text
/// is the message id. `<code>.messages.toml` maps each id, with `{name}`
/// placeholders where the text has values in it, to its translation.
#[derive(Default)]
pub struct Messages {
    exact: HashMap<String, String>,
    /// Ids with placeholders, most specific (longest fixed text) first.
    patterns: Vec<Pattern>,
}

struct Pattern {
    /// The fixed pieces around the placeholders (one more than `names`).
    /// A value may be empty: `"credit{s}"` covers "credit" and "credits".
    pieces: Vec<String>,
    names: Vec<String>,
    target: String,
}

/// `"Use at least {n} characters."` → pieces and placeholder names.
fn split_placeholders(id: &str) -> (Vec<String>, Vec<String>) {
    let mut pieces = vec![String::new()];
    let mut names = Vec::new();
    let mut rest = id;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        pieces.last_mut().unwrap().push_str(&rest[..open]);
        names.push(rest[open + 1..open + close].to_string());
        pieces.push(String::new());
        rest = &rest[open + close + 1..];
    }
    pieces.last_mut().unwrap().push_str(rest);
    (pieces, names)
}

impl Pattern {
    /// The placeholder values if `text` is this id with values filled in.
    fn capture<'t>(&self, text: &'t str) -> Option<Vec<&'t str>> {
        let rest = text.strip_prefix(self.pieces[0].as_str())?;
        let last = self.pieces.last().unwrap();
        let rest = rest.strip_suffix(last.as_str())?;
        let mut values = Vec::with_capacity(self.names.len());
        let mut at = rest;
        for piece in &self.pieces[1..self.pieces.len() - 1] {
            let i = at.find(piece.as_str())?;
            values.push(&at[..i]);
            at = &at[i + piece.len()..];
        }
        values.push(at);
        Some(values)
    }
}

impl Messages {
    pub fn parse(text: &str) -> AppResult<Messages> {
        let map: BTreeMap<String, String> = Figment::from(Toml::string(text))
            .extract()
            .map_err(|e| AppError::internal(format!("message catalogue: {e}")))?;
        let mut out = Messages::default();
        for (id, target) in map {
            let (pieces, names) = split_placeholders(&id);
            if names.is_empty() {
                out.exact.insert(id, target);
            } else {
                out.patterns.push(Pattern {
                    pieces,
                    names,
                    target,
                });
            }
        }
        let fixed = |p: &Pattern| p.pieces.iter().map(String::len).sum::<usize>();
        out.patterns.sort_by_key(|p| std::cmp::Reverse(fixed(p)));
        Ok(out)
    }

    /// Every message id, placeholders written `{}` (for coverage checks).
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.exact.keys().cloned().collect();
        ids.extend(self.patterns.iter().map(|p| p.pieces.join("{}")));
        ids
    }

    /// The translation of `text`, or `None` if the catalogue lacks it.
    /// Placeholder values are translated too when they are ids themselves
    /// ("3 minutes" inside "Please wait 3 minutes").
    pub fn translate(&self, text: &str) -> Option<String> {
        self.translate_depth(text, 2)
    }

    fn translate_depth(&self, text: &str, depth: u8) -> Option<String> {
        if let Some(t) = self.exact.get(text) {
            return Some(t.clone());
        }
        self.patterns.iter().find_map(|p| {
            let values = p.capture(text)?;
            let mut out = p.target.clone();
            for (name, value) in p.names.iter().zip(values) {
                let value = if depth > 0 {
                    // A sentence quoted without its full stop ("failed: {error}.").
                    self.translate_depth(value, depth - 1)
                        .or_else(|| {
                            self.translate_depth(&format!("{value}."), depth - 1)
                                .map(|t| t.trim_end_matches(['。', '.']).to_string())
                        })
                        .unwrap_or_else(|| value.to_string())
                } else {
                    value.to_string()
                };
                out = out.replace(&format!("{{{name}}}"), &value);
            }
            Some(out)
        })
    }
}

fn parse(code: &str, text: &str) -> AppResult<HashMap<String, String>> {
    let sections: BTreeMap<String, BTreeMap<String, String>> = Figment::from(Toml::string(text))
        .extract()
        .map_err(|e| AppError::internal(format!("catalogue {code}: {e}")))?;
    Ok(sections
        .into_iter()
        .flat_map(|(section, keys)| {
            keys.into_iter()
                .map(move |(k, v)| (format!("{section}.{k}"), v))
        })
        .collect())
}

impl Catalogs {
    /// From the catalogue texts of each language (as embedded).
    pub fn from_texts(texts: &[(Lang, &str)]) -> AppResult<Catalogs> {
        Catalogs::with_messages(texts, &[])
    }

    /// Page catalogues plus message catalogues (none for English: its
    /// messages are the ids).
    pub fn with_messages(texts: &[(Lang, &str)], messages: &[(Lang, &str)]) -> AppResult<Catalogs> {
        let mut out = HashMap::new();
        for (lang, text) in texts {
            out.insert(*lang, parse(lang.code(), text)?);
        }
        if !out.contains_key(&Lang::En) {
            return Err(AppError::internal("the English catalogue is missing"));
        }
        let mut msgs = HashMap::new();
        for (lang, text) in messages {
            msgs.insert(*lang, Messages::parse(text)?);
        }
        let mut catalogs = Catalogs {
            texts: out,
            messages: msgs,
            complete: Vec::new(),
            trees: HashMap::new(),
        };
        for lang in ALL {
            let mut tree = serde_json::Map::new();
            for l in [Lang::En, lang] {
                for (key, text) in catalogs.texts.get(&l).into_iter().flatten() {
                    if let Some((section, name)) = key.split_once('.') {
                        let entry = tree
                            .entry(section.to_string())
                            .or_insert_with(|| serde_json::Value::Object(Default::default()));
                        entry[name] = serde_json::Value::String(text.clone());
                    }
                }
            }
            catalogs.trees.insert(lang, serde_json::Value::Object(tree));
        }
        catalogs.complete = ALL
            .into_iter()
            .filter(|l| {
                catalogs.texts.contains_key(l) && {
                    let (missing, extra) = catalogs.differences(*l);
                    missing.is_empty() && extra.is_empty()
                }
            })
            .collect();
        Ok(catalogs)
    }

    /// A language's message catalogue (empty for English).
    pub fn messages(&self, lang: Lang) -> Option<&Messages> {
        self.messages.get(&lang)
    }

    /// A server-written English text in `lang` (unchanged for English, or
    /// when the catalogue lacks it).
    pub fn message(&self, lang: Lang, english: &str) -> String {
        if lang == Lang::En {
            return english.to_string();
        }
        match self.messages.get(&lang).and_then(|m| m.translate(english)) {
            Some(t) => t,
            None => {
                tracing::debug!(
                    lang = lang.code(),
                    english,
                    "no translation for this message"
                );
                english.to_string()
            }
        }
    }

    /// Every text of one section (for the scripts), English filling gaps.
    pub fn section(&self, lang: Lang, section: &str) -> serde_json::Map<String, serde_json::Value> {
        let prefix = format!("{section}.");
        let mut out = serde_json::Map::new();
        for l in [Lang::En, lang] {
            if let Some(m) = self.texts.get(&l) {
                for (k, v) in m {
                    if let Some(name) = k.strip_prefix(&prefix) {
                        out.insert(name.to_string(), serde_json::Value::String(v.clone()));
                    }
                }
            }
        }
        out
    }

    /// `lang`'s texts as `{section: {key: text}}` (placeholders unfilled).
    pub fn tree(&self, lang: Lang) -> &serde_json::Value {
        &self.trees[&lang]
    }

    /// Whether `lang`'s catalogue has `key`.
    pub fn has(&self, lang: Lang, key: &str) -> bool {
        self.texts.get(&lang).is_some_and(|m| m.contains_key(key))
    }

    /// Keys the English catalogue has and `lang`'s lacks (and the reverse).
    pub fn differences(&self, lang: Lang) -> (Vec<String>, Vec<String>) {
        let en = &self.texts[&Lang::En];
        let empty = HashMap::new();
        let other = self.texts.get(&lang).unwrap_or(&empty);
        let mut missing: Vec<String> = en
            .keys()
            .filter(|k| !other.contains_key(*k))
            .cloned()
            .collect();
        let mut extra: Vec<String> = other
            .keys()
            .filter(|k| !en.contains_key(*k))
            .cloned()
            .collect();
        missing.sort();
        extra.sort();
        (missing, extra)
    }

    /// Languages visitors can choose: ready, with a complete catalogue.
    pub fn offered(&self) -> Vec<Lang> {
        self.complete()
            .into_iter()
            .filter(|l| READY.contains(l))
            .collect()
    }

    /// Languages whose catalogue has exactly the English keys.
    pub fn complete(&self) -> Vec<Lang> {
        self.complete.clone()
    }

    /// The text for `key` in `lang` with `{name}` placeholders filled; the
    /// English text if the language lacks it, the key itself if both do.
    pub fn text(&self, lang: Lang, key: &str, args: &[(&str, String)]) -> String {
        let raw = self
            .texts
            .get(&lang)
            .and_then(|m| m.get(key))
            .or_else(|| self.texts[&Lang::En].get(key));
        let Some(raw) = raw else {
            tracing::warn!(key, "no text for this catalogue key");
            return key.to_string();
        };
        let mut out = raw.clone();
        for (name, value) in args {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_order_and_quality() {
        let both = [Lang::En, Lang::ZhCn];
        assert_eq!(
            negotiate(Some("zh-CN"), Some("en"), Some("en"), &both),
            Lang::ZhCn
        );
        assert_eq!(
            negotiate(None, Some("zh-CN"), Some("en"), &both),
            Lang::ZhCn
        );
        assert_eq!(
            negotiate(None, None, Some("fr;q=1, zh-CN;q=0.8, en;q=0.5"), &both),
            Lang::ZhCn
        );
        assert_eq!(
            negotiate(None, None, Some("zh-TW, en-GB;q=0.9"), &both),
            Lang::En
        );
        assert_eq!(negotiate(None, None, Some("zh-Hans-CN"), &both), Lang::ZhCn);
        assert_eq!(negotiate(None, None, Some("zh;q=0, en"), &both), Lang::En);
        assert_eq!(negotiate(None, None, None, &both), Lang::En);
        // A language not offered is never chosen.
        assert_eq!(
            negotiate(Some("zh-CN"), Some("zh"), Some("zh-CN"), &[Lang::En]),
            Lang::En
        );
    }

    #[test]
    fn messages_match_exactly_or_by_pattern() {
        let m = Messages::parse(
            "\"You are signed in.\" = \"已登录。\"\n\
             \"Please wait {wait} and try again.\" = \"请等待 {wait} 后再试。\"\n\
             \"{n} minutes\" = \"{n} 分钟\"\n\
             \"{model} makes 1 to {max} images per task.\" = \"{model} 每个任务生成 1 到 {max} 张图片。\"\n",
        )
        .unwrap();
        assert_eq!(m.translate("You are signed in.").unwrap(), "已登录。");
        assert_eq!(
            m.translate("Please wait 3 minutes and try again.").unwrap(),
            "请等待 3 分钟 后再试。"
        );
        assert_eq!(
            m.translate("Novart Draft makes 1 to 4 images per task.")
                .unwrap(),
            "Novart Draft 每个任务生成 1 到 4 张图片。"
        );
        assert_eq!(
            m.translate("Please wait  and try again.").unwrap(),
            "请等待  后再试。",
            "an empty value (an English plural ending) is allowed"
        );
        assert_eq!(m.translate("Something else."), None);
        assert_eq!(split_placeholders("a {x} b {y}").1, vec!["x", "y"]);
        // An optional tail is a value that is a message of its own.
        let m = Messages::parse(
            "\"Done.{tail}\" = \"完成。{tail}\"\n\" Refunded {n}.\" = \"已退还 {n}。\"\n",
        )
        .unwrap();
        assert_eq!(m.translate("Done.").unwrap(), "完成。");
        assert_eq!(
            m.translate("Done. Refunded 3.").unwrap(),
            "完成。已退还 3。"
        );
    }

    #[test]
    fn texts_fall_back_and_fill_placeholders() {
        let c = Catalogs::from_texts(&[
            (
                Lang::En,
                "[a]\nhello = \"Hello, {name}.\"\nonly = \"Only English\"\n",
            ),
            (Lang::ZhCn, "[a]\nhello = \"你好，{name}。\"\n"),
        ])
        .unwrap();
        assert_eq!(
            c.text(Lang::ZhCn, "a.hello", &[("name", "Ada".into())]),
            "你好，Ada。"
        );
        assert_eq!(c.text(Lang::ZhCn, "a.only", &[]), "Only English");
        assert_eq!(c.text(Lang::En, "a.nothing", &[]), "a.nothing");
        assert_eq!(c.differences(Lang::ZhCn).0, vec!["a.only".to_string()]);
        assert_eq!(
            c.complete(),
            vec![Lang::En],
            "an incomplete catalogue is not offered"
        );
    }
}
