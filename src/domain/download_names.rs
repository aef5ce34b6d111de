//! The file name a downloaded image gets: what it shows and how it was
//! made, `a-lighthouse-at-dusk-1234.png` (prompt and seed; `-2`, `-3` for
//! the further images of a task), never an internal id.

use crate::domain::Connection;

use crate::domain::db;
use crate::error::AppResult;
use crate::model::Asset;

/// Longest part of the name taken from the prompt, in characters.
const PROMPT_CHARS: usize = 48;

/// Lower-case words of `text` joined by `-`: letters and digits of any
/// script kept, everything else a separator, cut at a word boundary.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c);
        } else {
            dash = true;
        }
        if out.chars().count() >= PROMPT_CHARS {
            break;
        }
    }
    if out.chars().count() >= PROMPT_CHARS {
        if let Some(cut) = out.rfind('-').filter(|i| *i > 0) {
            out.truncate(cut);
        }
    }
    out
}

/// The download name of an image: (a Unicode name, its ASCII fallback).
pub fn for_asset(conn: &Connection, asset: &Asset, ext: &str) -> AppResult<(String, String)> {
    let task = match asset.task_id {
        Some(t) => db::tasks::by_id(conn, t)?,
        None => None,
    };
    let Some(task) = task else {
        return Ok((format!("image.{ext}"), format!("image.{ext}")));
    };
    let mut tail = task.seed.to_string();
    if task.n > 1 {
        let siblings = db::assets::results_of_tasks(conn, &[task.id])?;
        if let Some(i) = siblings
            .iter()
            .position(|a| a.id == asset.id)
            .filter(|i| *i > 0)
        {
            tail.push_str(&format!("-{}", i + 1));
        }
    }
    let words = slug(&task.prompt);
    let ascii: String = {
        let kept: Vec<&str> = words
            .split('-')
            .filter(|w| !w.is_empty() && w.is_ascii())
            .collect();
        kept.join("-")
    };
    let name = |w: &str| {
        if w.is_empty() {
            format!("image-{tail}.{ext}")
        } else {
            format!("{w}-{tail}.{ext}")
        }
    };
    Ok((name(&words), name(&ascii)))
}

#[cfg(test)]
mod tests {
    use super::slug;

    #[test]
    fn slugs_read_like_the_prompt() {
        assert_eq!(slug("A lighthouse at dusk, 4K!"), "a-lighthouse-at-dusk-4k");
        assert_eq!(
            slug("  \"quoted\" / slashed \\ path..  "),
            "quoted-slashed-path"
        );
        assert_eq!(slug("月光下的灯塔"), "月光下的灯塔");
        assert_eq!(slug("***"), "");
        let long = slug(&"word ".repeat(40));
        assert!(long.chars().count() <= 48 && !long.ends_with('-'), "{long}");
        assert!(long.split('-').all(|w| w == "word"), "{long}");
    }
}
