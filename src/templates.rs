//! Tera templates embedded in the binary (from `templates/`). Used for pages
//! and e-mails; autoescaping is on for every `.html` template.

use std::collections::HashMap;

use rust_embed::Embed;
use tera::{Tera, Value};

use std::sync::{Arc, Mutex};

use crate::error::{AppError, AppResult};
use crate::i18n::{Catalogs, Lang};

#[derive(Embed)]
#[folder = "$CARGO_MANIFEST_DIR/templates/"]
struct Files;

pub struct Templates {
    tera: Tera,
    catalogs: Arc<Catalogs>,
    /// For each template, the catalogue sections its `L.<section>.<key>`
    /// lookups reach, through what it extends, includes and imports: a page
    /// gets those sections, not the whole catalogue, in its context.
    sections: HashMap<String, Vec<String>>,
    /// Rendered fragments by their exact inputs (see `fragment`).
    fragments: Mutex<HashMap<String, Arc<str>>>,
}

/// At most this many rendered fragments are kept (a few MB); the cache
/// starts over when full.
const FRAGMENTS_MAX: usize = 2048;

/// The templates a template's source pulls in (`extends`, `include`,
/// `import`) and the catalogue sections it reads as `L.<section>`.
fn references(source: &str) -> (Vec<String>, Vec<String>) {
    let mut deps = Vec::new();
    for tag in source.split("{%").skip(1) {
        let tag = tag.trim_start_matches('-').trim_start();
        let Some(rest) = ["extends", "include", "import"]
            .iter()
            .find_map(|kw| tag.strip_prefix(kw))
        else {
            continue;
        };
        let mut quoted = rest.trim_start().split('"');
        if let (Some(""), Some(name)) = (quoted.next(), quoted.next()) {
            deps.push(name.to_string());
        }
    }
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut sections = Vec::new();
    for (i, _) in source.match_indices("L.") {
        let before = source[..i].chars().next_back();
        if before.is_some_and(|c| ident(c) || c == '.') {
            continue;
        }
        let name: String = source[i + 2..].chars().take_while(|c| ident(*c)).collect();
        if !name.is_empty() && !sections.contains(&name) {
            sections.push(name);
        }
    }
    (deps, sections)
}

/// [`references`] followed through every template each one pulls in.
fn sections_by_template(files: &[(String, String)]) -> HashMap<String, Vec<String>> {
    let direct: HashMap<&str, (Vec<String>, Vec<String>)> = files
        .iter()
        .map(|(name, source)| (name.as_str(), references(source)))
        .collect();
    let mut out = HashMap::new();
    for name in direct.keys() {
        let (mut seen, mut todo, mut sections) = (vec![*name], vec![*name], Vec::new());
        while let Some(t) = todo.pop() {
            let Some((deps, own)) = direct.get(t) else {
                continue;
            };
            for s in own {
                if !sections.contains(s) {
                    sections.push(s.clone());
                }
            }
            for d in deps {
                if !seen.contains(&d.as_str()) {
                    seen.push(d);
                    todo.push(d);
                }
            }
        }
        sections.sort();
        out.insert(name.to_string(), sections);
    }
    out
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
        let sections = sections_by_template(&files);
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
        Ok(Templates {
            tera,
            fragments: Mutex::new(HashMap::new()),
            catalogs,
            sections,
        })
    }

    /// The `L` value for rendering `template` in `lang`: the catalogue
    /// sections the template reads (the whole tree for a name not known).
    pub fn texts(&self, template: &str, lang: Lang) -> Value {
        let tree = self.catalogs.tree(lang);
        let Some(sections) = self.sections.get(template) else {
            return tree.clone();
        };
        Value::Object(
            sections
                .iter()
                .filter_map(|s| Some((s.clone(), tree.get(s)?.clone())))
                .collect(),
        )
    }

    /// The language catalogues (for texts written outside templates).
    pub fn catalogs(&self) -> &Catalogs {
        &self.catalogs
    }

    /// Renders a fragment (a task card, a library tile) once per distinct
    /// `key`: a page showing the same 24 cards again copies their HTML
    /// instead of rendering them again (about a third of a studio page's
    /// time). The key must name everything `values` is made from (the
    /// caller writes down its data, its CSRF token and the minute for
    /// clock-dependent texts; the template and language are added here);
    /// `values` (an object) is only built for a key not seen yet. Keys are
    /// compared exactly.
    pub fn fragment(
        &self,
        template: &str,
        lang: Lang,
        key: &str,
        values: impl FnOnce() -> Value,
    ) -> AppResult<Arc<str>> {
        let key = format!("{template}\0{}\0{key}", lang.code());
        if let Some(html) = self.fragments().get(&key) {
            return Ok(html.clone());
        }
        let mut ctx = tera::Context::from_value(values())
            .map_err(|e| AppError::internal(format!("fragment {template}: {e}")))?;
        ctx.insert("L", &self.texts(template, lang));
        ctx.insert("lang", lang.code());
        let html: Arc<str> = self.render(template, &ctx)?.into();
        let mut cached = self.fragments();
        if cached.len() >= FRAGMENTS_MAX {
            cached.clear();
        }
        cached.insert(key, html.clone());
        Ok(html)
    }

    fn fragments(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<str>>> {
        self.fragments.lock().unwrap_or_else(|e| e.into_inner())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_gets_the_sections_of_everything_it_pulls_in() {
        let t = Templates::load().unwrap();
        let studio = &t.sections["studio.html"];
        // Its own, the base layout's and the included image viewer's.
        for s in ["studio", "layout", "viewer"] {
            assert!(studio.contains(&s.to_string()), "{s} missing: {studio:?}");
        }
        assert!(!studio.contains(&"docs".to_string()), "{studio:?}");
        // Cards are fragments rendered on their own, with their own texts.
        assert!(!studio.contains(&"task".to_string()), "{studio:?}");
        assert!(t.sections["partials/task_card.html"].contains(&"task".to_string()));
        let texts = t.texts("studio.html", Lang::ZhCn);
        assert_eq!(texts["viewer"], t.catalogs.tree(Lang::ZhCn)["viewer"]);
        assert!(texts.get("docs").is_none());
        // A name it does not know gets everything.
        assert!(t.texts("operator.html", Lang::En).get("docs").is_some());
    }

    #[test]
    fn references_read_tags_and_lookups() {
        let (deps, sections) = references(
            r#"{% extends "base.html" %}{%- include "partials/x.html" -%}
            {% import "macros.html" as m %}{{ L.auth.title }} {{ L.auth.x }}
            {{ foo.L.bar }} {{ XL.nope }}"#,
        );
        assert_eq!(deps, ["base.html", "partials/x.html", "macros.html"]);
        assert_eq!(sections, ["auth"]);
    }
}
