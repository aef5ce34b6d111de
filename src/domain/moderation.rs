//! Content rules: the check every prompt passes before a task is queued or
//! charged. Built-in categories and the operator's terms are matched after
//! folding the tricks people use to slip past word lists: case, full-width,
//! enclosed, squared and decorated letters, small capitals, accents,
//! look-alike letters of other scripts (Unicode's confusables data),
//! invisible and default-ignorable characters, Traditional Chinese forms
//! (see `textfold`), spaces and punctuation inside a word, stretched letters
//! and common leetspeak. An optional upstream service (an
//! OpenAI-compatible `/v1/moderations`) is asked after the local rules.

use std::time::Duration;

use super::textfold::is_cjk;
use regex::Regex;

use crate::config::{ModerationConfig, ProviderFailure};
use crate::error::{AppError, AppResult};

/// The built-in categories and the words that name them. Terms are matched
/// as whole words (an English plural is included), never inside a longer
/// word: "seal" in "sealed" or "id card" in "squid cards" does not match.
pub const BUILTIN: &[(&str, &str, &[&str])] = &[
    (
        "identity_documents",
        "identity documents",
        &[
            "passport",
            "driver's license",
            "driver license",
            "driving licence",
            "driving license",
            "drivers licence",
            "id card",
            "identity card",
            "identification card",
            "identity document",
            "national id",
            "social security card",
            "residence permit",
            "resident card",
            "身份证",
            "护照",
            "驾驶证",
            "驾照",
            "户口本",
            "居住证",
            "港澳通行证",
        ],
    ),
    (
        "id_photos",
        "ID photos",
        &[
            "id photo",
            "id picture",
            "visa photo",
            "biometric photo",
            "证件照",
            "一寸照",
            "二寸照",
            "签证照",
        ],
    ),
    (
        "certificates",
        "certificates",
        &[
            "birth certificate",
            "death certificate",
            "marriage certificate",
            "divorce certificate",
            "degree certificate",
            "graduation certificate",
            "diploma",
            "academic transcript",
            "vaccination certificate",
            "medical certificate",
            "business license",
            "certificate of incorporation",
            "毕业证",
            "学位证",
            "结婚证",
            "离婚证",
            "出生证明",
            "营业执照",
            "房产证",
            "医疗证明",
        ],
    ),
    (
        "seals_stamps",
        "seals and stamps",
        &[
            "official seal",
            "official stamp",
            "company seal",
            "company chop",
            "company stamp",
            "corporate seal",
            "government seal",
            "government stamp",
            "notary seal",
            "notary stamp",
            "notarial seal",
            "customs stamp",
            "公章",
            "合同章",
            "财务专用章",
            "钢印",
            "公司印章",
        ],
    ),
];

/// Why a prompt was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// What matched, for the blocked-attempt log: `builtin:<category>:<term>`,
    /// `term:<term>`, `pattern:<n>` or `provider:<categories>`.
    pub rule: String,
    /// `prompt` or `negative_prompt`.
    pub field: &'static str,
    /// What the user is told the prompt touched ("identity documents").
    pub label: String,
}

/// One letter of the folded text: what it may stand for (leetspeak digits
/// are ambiguous: "1" may be i or l), and whether a word may start before it
/// or end after it.
#[derive(Debug, Clone, Copy)]
struct Pos {
    alts: [char; 2],
    start: bool,
    end: bool,
}

/// Leetspeak: what a digit or symbol may stand for.
fn leet(c: char) -> Option<[char; 2]> {
    Some(match c {
        '0' => ['o', 'o'],
        '1' => ['i', 'l'],
        '3' => ['e', 'e'],
        '4' => ['a', 'a'],
        '5' => ['s', 's'],
        '7' => ['t', 't'],
        '8' => ['b', 'b'],
        '9' => ['g', 'g'],
        '@' => ['a', 'a'],
        '$' => ['s', 's'],
        '!' => ['i', 'i'],
        '|' => ['i', 'l'],
        '€' => ['e', 'e'],
        _ => return None,
    })
}

/// Case, width, decorated letters, accents and look-alikes folded away;
/// invisible characters dropped (see `textfold`).
fn fold(text: &str) -> Vec<char> {
    super::textfold::fold(text)
}

/// The folded text as letters with word boundaries. Spaces and punctuation
/// vanish (so "p.a.s.s" reads "pass") but mark where words may start and
/// end; a run of the same letter counts once ("passsport").
fn letters(text: &str) -> Vec<Pos> {
    let mut out: Vec<Pos> = Vec::with_capacity(text.len());
    let mut boundary = true; // a word may start here
    let mut prev_cjk = false;
    for c in fold(text) {
        let cjk = is_cjk(c);
        let (alts, word_char) = if c.is_alphabetic() && !c.is_numeric() {
            ([c, c], true)
        } else if let Some(a) = leet(c) {
            // Digits are word characters; symbols ("$", "!") stand for
            // letters inside a word but never join two words.
            (a, c.is_ascii_digit())
        } else {
            if let Some(last) = out.last_mut() {
                last.end = true;
            }
            boundary = true;
            prev_cjk = false;
            continue;
        };
        let start = boundary || !word_char || cjk || prev_cjk;
        if let Some(last) = out.last_mut() {
            if cjk || prev_cjk || !word_char {
                last.end = true;
            }
            if last.alts == alts {
                // A stretched letter: keep one, widen its boundaries.
                last.end = false;
                boundary = false;
                prev_cjk = cjk;
                continue;
            }
        }
        out.push(Pos {
            alts,
            start,
            end: false,
        });
        boundary = !word_char;
        prev_cjk = cjk;
    }
    if let Some(last) = out.last_mut() {
        last.end = true;
    }
    out
}

/// A term as the letters it must match (folded, separators dropped, runs
/// of one letter collapsed).
fn term_letters(term: &str) -> Vec<char> {
    let mut out: Vec<char> = Vec::new();
    for c in fold(term) {
        let c = if c.is_alphabetic() {
            c
        } else if let Some([a, _]) = leet(c) {
            a
        } else {
            continue;
        };
        if out.last() != Some(&c) {
            out.push(c);
        }
    }
    out
}

/// True when `term` occurs in `text` as whole words (plus an optional "s"
/// or "es").
fn contains(text: &[Pos], term: &[char]) -> bool {
    if term.is_empty() {
        return false;
    }
    'start: for i in 0..text.len() {
        if !text[i].start || i + term.len() > text.len() {
            continue;
        }
        for (j, t) in term.iter().enumerate() {
            if !text[i + j].alts.contains(t) {
                continue 'start;
            }
        }
        let last = i + term.len() - 1;
        if text[last].end {
            return true;
        }
        // Plural: "passports", "diplomas", "licenses" (the e of "es" may
        // have collapsed into the term's last letter).
        let rest = &text[last + 1..];
        let is = |p: &Pos, c: char| p.alts.contains(&c);
        if rest.first().is_some_and(|p| is(p, 's') && p.end)
            || (rest.len() >= 2 && is(&rest[0], 'e') && is(&rest[1], 's') && rest[1].end)
        {
            return true;
        }
    }
    false
}

/// The folded text for operators' regular expressions: leetspeak read as
/// letters, every run of spaces and punctuation one space.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in fold(text) {
        let c = if c.is_alphabetic() && !c.is_numeric() {
            c
        } else if let Some([a, _]) = leet(c).filter(|_| c.is_ascii_digit() || c == '$' || c == '@')
        {
            a
        } else if c.is_alphanumeric() {
            c
        } else {
            space = !out.is_empty();
            continue;
        };
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
    }
    out
}

/// An upstream moderation service.
pub trait Provider: Send + Sync {
    /// Some(categories) when the service flags one of the texts.
    fn flagged(&self, texts: &[&str]) -> Result<Option<Vec<String>>, String>;
}

/// An OpenAI-compatible `POST /v1/moderations`.
pub struct OpenAiModeration {
    pub url: String,
    pub api_key: String,
    pub model: String,
    pub agent: ureq::Agent,
}

impl OpenAiModeration {
    pub fn new(config: &ModerationConfig) -> OpenAiModeration {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(
                config.provider_timeout_secs.max(1) as u64,
            )))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .new_agent();
        OpenAiModeration {
            url: config.provider_url.trim().to_string(),
            api_key: config.provider_api_key.clone(),
            model: config.provider_model.clone(),
            agent,
        }
    }
}

impl Provider for OpenAiModeration {
    fn flagged(&self, texts: &[&str]) -> Result<Option<Vec<String>>, String> {
        let body = serde_json::json!({ "model": self.model, "input": texts });
        let mut req = self.agent.post(&self.url);
        if !self.api_key.is_empty() {
            req = req.header("Authorization", &format!("Bearer {}", self.api_key));
        }
        let mut resp = req.send_json(&body).map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let v: serde_json::Value = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_json()
            .map_err(|e| format!("HTTP {status}: unreadable answer: {e}"))?;
        if status != 200 {
            let msg = v["error"]["message"].as_str().unwrap_or("no message");
            return Err(format!("HTTP {status}: {msg}"));
        }
        let results = v["results"]
            .as_array()
            .ok_or_else(|| "the answer has no results".to_string())?;
        let mut flagged = Vec::new();
        let mut any = false;
        for r in results {
            if r["flagged"].as_bool() == Some(true) {
                any = true;
                if let Some(cats) = r["categories"].as_object() {
                    for (name, on) in cats {
                        if on.as_bool() == Some(true) && !flagged.contains(name) {
                            flagged.push(name.clone());
                        }
                    }
                }
            }
        }
        Ok(any.then_some(flagged))
    }
}

/// The compiled rules.
pub struct Moderator {
    enabled: bool,
    terms: Vec<(String, String, Vec<char>)>, // (rule, label, letters)
    patterns: Vec<Regex>,
    provider: Option<Box<dyn Provider>>,
    on_failure: ProviderFailure,
}

impl std::fmt::Debug for Moderator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moderator")
            .field("enabled", &self.enabled)
            .field("terms", &self.terms.len())
            .field("patterns", &self.patterns.len())
            .field("provider", &self.provider.is_some())
            .finish()
    }
}

impl Moderator {
    pub fn new(config: &ModerationConfig) -> Moderator {
        let provider: Option<Box<dyn Provider>> = (!config.provider_url.trim().is_empty())
            .then(|| Box::new(OpenAiModeration::new(config)) as Box<dyn Provider>);
        Moderator::with_provider(config, provider)
    }

    pub fn with_provider(config: &ModerationConfig, provider: Option<Box<dyn Provider>>) -> Self {
        let mut terms = Vec::new();
        for (cat, label, list) in BUILTIN {
            if config.categories.iter().any(|c| c == cat) {
                for t in *list {
                    terms.push((
                        format!("builtin:{cat}:{t}"),
                        label.to_string(),
                        term_letters(t),
                    ));
                }
            }
        }
        for t in &config.blocked_terms {
            terms.push((
                format!("term:{}", t.trim()),
                "terms this site does not allow".to_string(),
                term_letters(t),
            ));
        }
        Moderator {
            enabled: config.enabled,
            terms,
            // Validated with the config.
            // Matched against folded text, where Traditional Chinese reads
            // as Simplified: so are the patterns.
            patterns: config
                .blocked_patterns
                .iter()
                .filter_map(|p| Regex::new(&fast2s::convert(p)).ok())
                .collect(),
            provider,
            on_failure: config.provider_failure,
        }
    }

    /// The local rules only.
    pub fn check_rules(&self, field: &'static str, text: &str) -> Option<Hit> {
        if !self.enabled || text.trim().is_empty() {
            return None;
        }
        let folded = letters(text);
        for (rule, label, term) in &self.terms {
            if contains(&folded, term) {
                return Some(Hit {
                    rule: rule.clone(),
                    field,
                    label: label.clone(),
                });
            }
        }
        if !self.patterns.is_empty() {
            let norm = normalize(text);
            for (i, p) in self.patterns.iter().enumerate() {
                if p.is_match(&norm) {
                    return Some(Hit {
                        rule: format!("pattern:{i}"),
                        field,
                        label: "terms this site does not allow".into(),
                    });
                }
            }
        }
        None
    }

    /// Prompt and negative prompt through the rules, then the upstream
    /// service. Err only when the service is down and the config says to
    /// refuse then.
    pub fn check(&self, prompt: &str, negative: &str) -> AppResult<Option<Hit>> {
        match self.check_local(prompt, negative) {
            Some(hit) => Ok(Some(hit)),
            None => self.check_service(prompt, negative),
        }
    }

    /// Prompt and negative prompt through the local rules (cheap: no
    /// network).
    pub fn check_local(&self, prompt: &str, negative: &str) -> Option<Hit> {
        if !self.enabled {
            return None;
        }
        [("prompt", prompt), ("negative_prompt", negative)]
            .into_iter()
            .find_map(|(field, text)| self.check_rules(field, text))
    }

    /// The upstream moderation service, when one is configured: a network
    /// call, so never made while holding a database connection.
    pub fn check_service(&self, prompt: &str, negative: &str) -> AppResult<Option<Hit>> {
        if !self.enabled {
            return Ok(None);
        }
        let Some(provider) = &self.provider else {
            return Ok(None);
        };
        let texts: Vec<&str> = [prompt, negative]
            .into_iter()
            .filter(|t| !t.trim().is_empty())
            .collect();
        match provider.flagged(&texts) {
            Ok(None) => Ok(None),
            Ok(Some(cats)) => {
                let label = if cats.is_empty() {
                    "content the moderation service flagged".to_string()
                } else {
                    cats.join(", ")
                };
                Ok(Some(Hit {
                    rule: format!("provider:{}", cats.join(",")),
                    field: "prompt",
                    label,
                }))
            }
            Err(e) => {
                tracing::warn!("moderation service failed: {e}");
                match self.on_failure {
                    ProviderFailure::Allow => Ok(None),
                    ProviderFailure::Refuse => Err(AppError::Unavailable(
                        "The content check is unavailable right now; please try again in a few minutes."
                            .into(),
                    )),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(text: &str) -> bool {
        Moderator::new(&ModerationConfig::default())
            .check_rules("prompt", text)
            .is_some()
    }

    #[test]
    fn whole_words_only() {
        assert!(blocked("passport"));
        assert!(blocked("my passports!"));
        assert!(!blocked("squid cards"));
        assert!(!blocked("a sealed envelope"));
        assert!(blocked("id cards"));
        assert!(!blocked("id cardigan"));
        assert!(blocked("a diploma."));
    }

    #[test]
    fn normalize_reads_leetspeak_and_spacing() {
        assert_eq!(normalize("  Ｆ4KE -- pa$$port!! "), "fake passport");
    }
}
