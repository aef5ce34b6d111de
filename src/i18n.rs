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
pub const READY: &[Lang] = &[Lang::En];

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

/// The catalogues, flattened to `section.key` → text.
pub struct Catalogs {
    texts: HashMap<Lang, HashMap<String, String>>,
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
        let mut out = HashMap::new();
        for (lang, text) in texts {
            out.insert(*lang, parse(lang.code(), text)?);
        }
        if !out.contains_key(&Lang::En) {
            return Err(AppError::internal("the English catalogue is missing"));
        }
        Ok(Catalogs { texts: out })
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
        ALL.into_iter()
            .filter(|l| {
                self.texts.contains_key(l) && {
                    let (missing, extra) = self.differences(*l);
                    missing.is_empty() && extra.is_empty()
                }
            })
            .collect()
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
