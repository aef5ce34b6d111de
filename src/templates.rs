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
    let refs: Vec<(Lang, &str)> = texts.iter().map(|(l, t)| (*l, t.as_str())).collect();
    Catalogs::from_texts(&refs)
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
            let key = args
                .get("k")
                .and_then(Value::as_str)
                .ok_or_else(|| tera::Error::msg("t() needs k=\"section.key\""))?;
            let lang = args
                .get("l")
                .and_then(Value::as_str)
                .and_then(Lang::parse)
                .unwrap_or(Lang::En);
            let fills: Vec<(&str, String)> = args
                .iter()
                .filter(|(name, _)| *name != "k" && *name != "l")
                .map(|(name, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (name.as_str(), text)
                })
                .collect();
            Ok(Value::String(c.text(lang, key, &fills)))
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
