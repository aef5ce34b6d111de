//! Configuration mistakes, each naming its key once, in one spelling
//! (`server.port`, `models[0].upstream_model`), with where it came from (the
//! file and line, or the environment variable) and, for an unknown key, the
//! nearest valid one.

/// Environment variables with the `NOVART_` prefix that are not config keys.
const PROCESS_VARS: &[&str] = &["CONFIG", "LOG", "REQUIRE_BROWSER"];

/// A configuration mistake, naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "config error: {}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

pub(crate) fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Refuses `NOVART_*` variables that cannot be settings (a single `_`
/// between section and key is the usual slip).
pub fn check_env_names(names: impl Iterator<Item = String>) -> Result<(), ConfigError> {
    for name in names {
        let Some(rest) = name.strip_prefix("NOVART_") else {
            continue;
        };
        if !PROCESS_VARS.contains(&rest) && !rest.contains("__") {
            return Err(err(
                &name,
                "not a setting; config variables look like NOVART_<SECTION>__<KEY>, e.g. NOVART_SERVER__PORT",
            ));
        }
    }
    Ok(())
}

/// A key path as operators write it: `models[0].upstream_model`.
pub fn key_path<S: AsRef<str>>(parts: &[S]) -> String {
    let mut out = String::new();
    for p in parts {
        let p = p.as_ref();
        if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{p}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(p);
        }
    }
    out
}

/// The valid key nearest to a misspelt one, if one is near enough.
fn nearest<'a>(typo: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|e| (strsim::damerau_levenshtein(typo, e), *e))
        .filter(|(d, e)| *d <= 2.max(e.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e)
}

/// The line of a TOML file where `path` is written: the key under its
/// table, counting `[[array]]` tables for an index.
fn line_of(text: &str, path: &[String]) -> Option<usize> {
    let (last, tables) = path.split_last()?;
    let mut table: Vec<String> = Vec::new();
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(h) = t.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
            let name = h.trim().to_string();
            let n = counts.entry(name.clone()).or_insert(0);
            table = name.split('.').map(|s| s.trim().to_string()).collect();
            table.push(n.to_string());
            *n += 1;
        } else if let Some(h) = t.strip_prefix('[').and_then(|h| h.split(']').next()) {
            table = h.split('.').map(|s| s.trim().to_string()).collect();
            // The header itself names the (misspelt) table.
            if table == path {
                return Some(i + 1);
            }
        } else if let Some((k, _)) = t.split_once('=') {
            let k = k.trim().trim_matches('"');
            let mut full = table.clone();
            full.extend(k.split('.').map(|s| s.trim().to_string()));
            if k == last.as_str() && table.as_slice() == tables || full == path {
                return Some(i + 1);
            }
        }
    }
    None
}

pub(crate) fn figment_error(e: figment::Error) -> ConfigError {
    use figment::error::Kind;
    let e = e
        .into_iter()
        .next()
        .expect("figment errors are never empty");
    let mut path: Vec<String> = e.path.clone();
    let mut hint = String::new();
    let message = match &e.kind {
        Kind::UnknownField(field, expected) => {
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            if let Some(near) = nearest(field, expected) {
                hint = format!(" (did you mean {near}?)");
            }
            format!(
                "unknown key{hint}; expected one of: {}",
                expected.join(", ")
            )
        }
        Kind::UnknownVariant(v, expected) => {
            format!(
                "{v:?} is not allowed; expected one of: {}",
                expected.join(", ")
            )
        }
        other => other.to_string(),
    };
    let source = match &e.metadata {
        Some(m) if m.name.contains("environment") => {
            let var: Vec<String> = path.iter().map(|p| p.to_ascii_uppercase()).collect();
            format!(" (from environment variable NOVART_{})", var.join("__"))
        }
        Some(m) => match &m.source {
            Some(figment::Source::File(file)) => {
                let line = std::fs::read_to_string(file)
                    .ok()
                    .and_then(|text| line_of(&text, &path))
                    .map(|l| format!(", line {l}"))
                    .unwrap_or_default();
                let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.clone());
                format!(" (in {}{line})", file.display())
            }
            Some(src) => format!(" (in {src})"),
            None => String::new(),
        },
        None => String::new(),
    };
    let mut key = key_path(&path);
    if key.is_empty() {
        key = "config".into();
    }
    ConfigError {
        key,
        message: format!("{message}{source}"),
    }
}
