//! Tera templates embedded in the binary (from `templates/`). Used for pages
//! and e-mails; autoescaping is on for every `.html` template.

use std::collections::HashMap;

use rust_embed::Embed;
use tera::{Tera, Value};

use std::sync::Arc;

use crate::error::{AppError, AppResult};
use crate::i18n::{Catalogs, Lang};

#[derive(Embed)]
#[folder = "$CARGO_MANIFEST_DIR/templates/"]
struct Files;

pub struct Templates {
    tera: Tera,
    catalogs: Arc<Catalogs>,
}

/// The embedded catalogues, `templates/i18n/<code>.toml`.
pub fn load_catalogs() -> AppResult<Catalogs> {
    let mut texts: Vec<(Lang, String)> = Vec::new();
    for lang in crate::i18n::ALL {
        if let Some(f) = Files::get(&format!("i18n/{}.toml", lang.code())) {
            texts.push((lang, String::from_utf8_lossy(&f.data).into_owned()));
        }
    }
    let mut messages: Vec<(Lang, String)> = Vec::new();
    for lang in crate::i18n::ALL {
        if let Some(f) = Files::get(&format!("i18n/{}.messages.toml", lang.code())) {
            messages.push((lang, String::from_utf8_lossy(&f.data).into_owned()));
        }
    }
    let refs: Vec<(Lang, &str)> = texts.iter().map(|(l, t)| (*l, t.as_str())).collect();
    let msg_refs: Vec<(Lang, &str)> = messages.iter().map(|(l, t)| (*l, t.as_str())).collect();
    Catalogs::with_messages(&refs, &msg_refs)
}

fn lang_arg(args: &HashMap<String, Value>) -> Lang {
    args.get("l")
        .and_then(Value::as_str)
        .and_then(Lang::parse)
        .unwrap_or(Lang::En)
}

/// What `t()` does: the text for `k` in `l`, placeholders filled from the
/// other arguments. With `n=1` a `k_one` text is preferred (English
/// singulars). For `_html` keys (catalogue texts with markup, shown with
/// `| safe`) the filled-in values are escaped.
fn catalogue_text(c: &Catalogs, args: &HashMap<String, Value>) -> tera::Result<Value> {
    let key = args
        .get("k")
        .and_then(Value::as_str)
        .ok_or_else(|| tera::Error::msg("t() needs k=\"section.key\""))?;
    let lang = lang_arg(args);
    let one = format!("{key}_one");
    let key = match args.get("n").and_then(Value::as_i64) {
        Some(1) if c.has(Lang::En, &one) => one.as_str(),
        _ => key,
    };
    let html = key.ends_with("_html");
    let fills: Vec<(&str, String)> = args
        .iter()
        .filter(|(name, _)| *name != "k" && *name != "l")
        .map(|(name, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let text = if html { tera::escape_html(&text) } else { text };
            (name.as_str(), text)
        })
        .collect();
    Ok(Value::String(c.text(lang, key, &fills)))
}

/// "3 h 20 min" style time left, in the page's language.
pub fn time_left(c: &Catalogs, lang: Lang, secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m) = (secs / 3600, (secs % 3600) / 60);
    let n = |v: i64| v.to_string();
    if h == 0 {
        c.text(lang, "units.minutes", &[("m", n(m))])
    } else if h >= 24 {
        c.text(
            lang,
            "units.days_hours",
            &[("d", n(h / 24)), ("h", n(h % 24))],
        )
    } else {
        c.text(lang, "units.hours_minutes", &[("h", n(h)), ("m", n(m))])
    }
}

impl Templates {
    pub fn load() -> AppResult<Templates> {
        let mut tera = Tera::default();
        let files: Vec<(String, String)> = Files::iter()
            .filter(|name| !name.starts_with("i18n/"))
            .filter_map(|name| {
                let file = Files::get(&name)?;
                Some((
                    name.to_string(),
                    String::from_utf8_lossy(&file.data).into_owned(),
                ))
            })
            .collect();
        tera.add_raw_templates(files)
            .map_err(|e| AppError::internal(format!("templates: {e:?}")))?;
        tera.autoescape_on(vec![".html"]);
        tera.register_filter("datetime", datetime_filter);
        tera.register_filter("urlencode", urlencode_filter);
        let catalogs = Arc::new(load_catalogs()?);
        let c = catalogs.clone();
        tera.register_function("t", move |args: &HashMap<String, Value>| {
            catalogue_text(&c, args)
        });
        let c = catalogs.clone();
        tera.register_filter(
            "msg",
            move |value: &Value, args: &HashMap<String, Value>| {
                let text = value.as_str().unwrap_or_default();
                Ok(Value::String(c.message(lang_arg(args), text)))
            },
        );
        let c = catalogs.clone();
        tera.register_filter(
            "left",
            move |value: &Value, args: &HashMap<String, Value>| {
                let secs = value.as_i64().unwrap_or(0) - crate::domain::now();
                Ok(Value::String(time_left(&c, lang_arg(args), secs)))
            },
        );
        // The scripts' texts, as JSON ready for a <script> block, made once
        // per language (every page carries them).
        let js: HashMap<&'static str, String> = crate::i18n::ALL
            .iter()
            .map(|l| {
                let json = serde_json::to_string(&catalogs.section(*l, "js"))
                    .unwrap_or_else(|_| "{}".into())
                    .replace('<', "\\u003c");
                (l.code(), json)
            })
            .collect();
        tera.register_function("script_texts", move |args: &HashMap<String, Value>| {
            let lang = lang_arg(args);
            Ok(Value::String(
                js.get(lang.code()).cloned().unwrap_or_default(),
            ))
        });
        Ok(Templates { tera, catalogs })
    }

    /// The language catalogues (for texts written outside templates).
    pub fn catalogs(&self) -> &Catalogs {
        &self.catalogs
    }

    pub fn render(&self, name: &str, context: &tera::Context) -> AppResult<String> {
        self.tera.render(name, context).map_err(|e| {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                source = s.source();
            }
            AppError::internal(format!("template {name}: {msg}"))
        })
    }
}

pub use crate::domain::format_time;

fn datetime_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    match value.as_i64() {
        Some(secs) => Ok(Value::String(format_time(secs))),
        None => Ok(Value::String(String::new())),
    }
}

/// Percent-encodes a string for use in a URL query.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn urlencode_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(urlencode(value.as_str().unwrap_or_default())))
}
