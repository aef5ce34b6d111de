//! Tera templates embedded in the binary (from `templates/`). Used for pages
//! and e-mails; autoescaping is on for every `.html` template.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use rust_embed::Embed;
use tera::{Tera, Value};

use std::sync::{Arc, Mutex};

use crate::error::{AppError, AppResult};
use crate::i18n::{Catalogs, Lang};

mod localize;

#[derive(Embed)]
#[folder = "$CARGO_MANIFEST_DIR/templates/"]
struct Files;

pub struct Templates {
    tera: Tera,
    catalogs: Arc<Catalogs>,
    /// For each language's copy of a template ("zh-CN/studio.html"), the
    /// catalogue sections it still looks up as `L.<section>` (the lookups
    /// `localize` could not write in), through what it extends, includes
    /// and imports: a page gets those sections, usually none, in its
    /// context.
    sections: HashMap<String, Vec<String>>,
    /// Rendered fragments by their exact inputs (see `fragment`).
    fragments: Mutex<HashMap<Vec<u8>, Arc<str>>>,
}

/// A fragment's key written out exactly: the bytes its `Hash` impl feeds
/// a hasher (each field in order, a string with an end marker no UTF-8
/// text contains, a list after its length), not a digest of them, so two
/// keys are equal only when the values are. Deriving `Hash` covers a
/// field added later, which a hand-written key could miss; writing the
/// key out with `Debug` instead took 7 % of a library page.
struct KeyBytes(Vec<u8>);

impl Hasher for KeyBytes {
    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    fn finish(&self) -> u64 {
        0
    }
}

/// At most this many rendered fragments are kept (a few MB); the cache
/// starts over when full.
const FRAGMENTS_MAX: usize = 2048;

/// The templates a template's source pulls in (`extends`, `include`,
/// `import`) and the catalogue sections it reads as `L.<section>`.
fn references(source: &str) -> (Vec<String>, Vec<String>) {
    let mut deps = Vec::new();
    for tag in source.split("{%").skip(1) {
        if let Some(name) = localize::reference(tag) {
            deps.push(tag[name].to_string());
        }
    }
    let bytes = source.as_bytes();
    let mut sections = Vec::new();
    for (i, _) in source.match_indices("L.") {
        if !localize::lookup_at(bytes, i) {
            continue;
        }
        let len = bytes[i + 2..]
            .iter()
            .take_while(|b| localize::is_name_byte(**b))
            .count();
        let name = &source[i + 2..i + 2 + len];
        if !name.is_empty() && !sections.iter().any(|s| s == name) {
            sections.push(name.to_string());
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
        let catalogs = Arc::new(load_catalogs()?);
        // One copy per language, named "<code>/<name>", with its texts
        // written in (see `localize`).
        let mut copies = Vec::with_capacity(files.len() * crate::i18n::ALL.len());
        for lang in crate::i18n::ALL {
            let prefix = format!("{}/", lang.code());
            for (name, source) in &files {
                let escape = name.ends_with(".html");
                let text = localize::localize(source, &prefix, catalogs.tree(lang), escape);
                copies.push((format!("{prefix}{name}"), text));
            }
        }
        let sections = sections_by_template(&copies);
        tera.autoescape_on(vec![".html"]);
        tera.add_raw_templates(copies)
            .map_err(|e| AppError::internal(format!("templates: {e:?}")))?;
        tera.register_filter("datetime", datetime_filter);
        tera.register_filter("urlencode", urlencode_filter);
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
        let Some(sections) = self.sections.get(&localized(template, lang)) else {
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
    /// key: a page showing the same 24 cards again copies their HTML
    /// instead of rendering them again (about a third of a studio page's
    /// time). The key must cover everything `values` is made from (the
    /// caller passes its data, its CSRF token and the minute for
    /// clock-dependent texts; the template and language are added here);
    /// `values` (an object) is only built for a key not seen yet. Keys are
    /// compared exactly (see `KeyBytes`).
    pub fn fragment(
        &self,
        template: &str,
        lang: Lang,
        key: &impl Hash,
        values: impl FnOnce() -> Value,
    ) -> AppResult<Arc<str>> {
        let mut bytes = KeyBytes(Vec::with_capacity(256));
        (template, lang.code(), key).hash(&mut bytes);
        let key = bytes.0;
        if let Some(html) = self.fragments().get(&key) {
            return Ok(html.clone());
        }
        let mut values = values();
        if let Value::Object(map) = &mut values {
            map.insert("L".into(), self.texts(template, lang));
            map.insert("lang".into(), lang.code().into());
        }
        let ctx = tera::Context::from_value(values)
            .map_err(|e| AppError::internal(format!("fragment {template}: {e}")))?;
        let html: Arc<str> = self.render(template, lang, &ctx)?.into();
        let mut cached = self.fragments();
        if cached.len() >= FRAGMENTS_MAX {
            cached.clear();
        }
        cached.insert(key, html.clone());
        Ok(html)
    }

    fn fragments(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Arc<str>>> {
        self.fragments.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Renders `name` in `lang` (that language's copy of the template).
    pub fn render(&self, name: &str, lang: Lang, context: &tera::Context) -> AppResult<String> {
        self.tera
            .render(&localized(name, lang), context)
            .map_err(|e| {
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

/// The name of `lang`'s copy of a template.
fn localized(name: &str, lang: Lang) -> String {
    format!("{}/{name}", lang.code())
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
    fn a_page_gets_only_the_sections_it_still_looks_up() {
        let t = Templates::load().unwrap();
        // The studio's texts (its own, the layout's, the viewer's) are
        // written into each language's copy.
        for lang in crate::i18n::ALL {
            assert_eq!(
                t.sections[&localized("studio.html", lang)],
                Vec::<String>::new()
            );
        }
        assert!(t
            .texts("studio.html", Lang::ZhCn)
            .as_object()
            .unwrap()
            .is_empty());
        // Every other template has all its texts written in.
        for (name, left) in &t.sections {
            if !name.ends_with("/partials/task_card.html") {
                assert!(left.is_empty(), "{name} still looks up {left:?}");
            }
        }
        // A card looks its status up by a computed key.
        assert_eq!(t.sections["zh-CN/partials/task_card.html"], ["task"]);
        let texts = t.texts("partials/task_card.html", Lang::ZhCn);
        assert_eq!(texts["task"], t.catalogs.tree(Lang::ZhCn)["task"]);
        // A name it does not know gets everything.
        assert!(t.texts("operator.html", Lang::En).get("docs").is_some());
    }

    #[test]
    fn each_language_has_its_own_copy_with_its_texts() {
        let t = Templates::load().unwrap();
        let c = t.catalogs();
        let mut ctx = tera::Context::new();
        ctx.insert("lang", "en");
        let page = |lang| t.tera.get_template(&localized("studio.html", lang)).is_ok();
        assert!(page(Lang::En) && page(Lang::ZhCn));
        for lang in crate::i18n::ALL {
            let html = t.render("partials/viewer.html", lang, &ctx).unwrap();
            let close = c.text(lang, "viewer.download", &[]);
            assert!(
                html.contains(&tera::escape_html(&close)),
                "{lang:?}: {html}"
            );
        }
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
