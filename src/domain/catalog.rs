//! The models creators can use, with their sizes grouped by aspect ratio.

use serde::Serialize;

use crate::config::catalog::{parse_size, ModelConfig, ProviderConfig, ProviderKind};
use crate::config::Config;
use crate::error::{AppError, AppResult};

#[derive(Debug, Clone, Serialize)]
pub struct SizeOption {
    pub size: String,
    pub width: u32,
    pub height: u32,
    /// "16:9"
    pub aspect_ratio: String,
    /// The longer side, used as the `resolution` preset.
    pub resolution: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub id: String,
    pub name: String,
    pub description: String,
    /// Credits per image.
    pub price: u64,
    pub max_n: u32,
    pub reference_images: bool,
    pub sizes: Vec<SizeOption>,
    /// True when the model is the built-in renderer (no AI model).
    pub builtin: bool,
    #[serde(skip)]
    pub providers: Vec<String>,
    #[serde(skip)]
    pub upstream_model: String,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pub models: Vec<Model>,
    pub providers: Vec<ProviderConfig>,
    /// `webhooks.allow_private_targets`: task webhook URLs are checked
    /// against it when a task is submitted.
    pub allow_private_webhooks: bool,
    /// The content rules every prompt passes before it is queued.
    pub moderator: std::sync::Arc<super::moderation::Moderator>,
    /// `[moderation]`: escalation of blocked prompts to bans.
    pub moderation: crate::config::ModerationConfig,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// "1024x576" → "16:9"; near-standard ratios snap to their usual name.
pub fn aspect_label(w: u32, h: u32) -> String {
    let named = [
        (1, 1),
        (4, 3),
        (3, 4),
        (3, 2),
        (2, 3),
        (16, 9),
        (9, 16),
        (21, 9),
        (9, 21),
        (5, 4),
        (4, 5),
    ];
    let r = w as f64 / h as f64;
    for (a, b) in named {
        let t = a as f64 / b as f64;
        if ((r - t) / t).abs() < 0.02 {
            return format!("{a}:{b}");
        }
    }
    let g = gcd(w, h).max(1);
    format!("{}:{}", w / g, h / g)
}

impl Catalog {
    pub fn from_config(config: &Config) -> Catalog {
        let (providers, models) = config.catalogue();
        let models = models
            .iter()
            .map(|m: &ModelConfig| Model {
                id: m.id.clone(),
                name: m.name.clone(),
                description: m.description.clone(),
                price: m.price,
                max_n: m.max_n,
                reference_images: m.reference_images,
                sizes: m
                    .sizes
                    .iter()
                    .filter_map(|s| parse_size(s))
                    .map(|(w, h)| SizeOption {
                        size: format!("{w}x{h}"),
                        width: w,
                        height: h,
                        aspect_ratio: aspect_label(w, h),
                        resolution: w.max(h),
                    })
                    .collect(),
                builtin: m.providers.iter().all(|p| {
                    providers
                        .iter()
                        .any(|q| &q.id == p && q.kind == ProviderKind::Builtin)
                }),
                providers: m.providers.clone(),
                upstream_model: m.upstream_model.clone(),
            })
            .collect();
        Catalog {
            models,
            providers,
            allow_private_webhooks: config.webhooks.allow_private_targets,
            moderator: std::sync::Arc::new(super::moderation::Moderator::new(&config.moderation)),
            moderation: config.moderation.clone(),
        }
    }

    pub fn model(&self, id: &str) -> AppResult<&Model> {
        self.models.iter().find(|m| m.id == id).ok_or_else(|| {
            let known: Vec<&str> = self.models.iter().map(|m| m.id.as_str()).collect();
            AppError::invalid(
                "model",
                format!("Unknown model {id:?}. Available: {}.", known.join(", ")),
            )
        })
    }

    pub fn provider(&self, id: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.id == id)
    }
}

impl Model {
    /// The size a request asks for: `size` ("WxH"), or `aspect_ratio` plus an
    /// optional `resolution` (the longer side), or the model's first size.
    pub fn resolve_size(
        &self,
        size: Option<&str>,
        aspect_ratio: Option<&str>,
        resolution: Option<u32>,
    ) -> AppResult<(u32, u32)> {
        let allowed = || {
            self.sizes
                .iter()
                .map(|s| s.size.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(size) = size
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "auto")
        {
            let (w, h) = parse_size(size).ok_or_else(|| {
                AppError::invalid(
                    "size",
                    format!("{size:?} is not a size like \"1024x1024\"."),
                )
            })?;
            return self
                .sizes
                .iter()
                .find(|s| s.width == w && s.height == h)
                .map(|s| (s.width, s.height))
                .ok_or_else(|| {
                    AppError::invalid(
                        "size",
                        format!(
                            "{} does not offer {w}x{h}. Allowed: {}.",
                            self.name,
                            allowed()
                        ),
                    )
                });
        }
        if let Some(ar) = aspect_ratio.map(str::trim).filter(|s| !s.is_empty()) {
            let mut matching: Vec<&SizeOption> =
                self.sizes.iter().filter(|s| s.aspect_ratio == ar).collect();
            if matching.is_empty() {
                let ratios: Vec<String> = self.aspect_ratios();
                return Err(AppError::invalid(
                    "aspect_ratio",
                    format!(
                        "{} does not offer the aspect ratio {ar}. Allowed: {}.",
                        self.name,
                        ratios.join(", ")
                    ),
                ));
            }
            matching.sort_by_key(|s| s.resolution);
            return match resolution {
                None => Ok((matching[0].width, matching[0].height)),
                Some(r) => matching
                    .iter()
                    .find(|s| s.resolution == r)
                    .map(|s| (s.width, s.height))
                    .ok_or_else(|| {
                        let rs: Vec<String> =
                            matching.iter().map(|s| s.resolution.to_string()).collect();
                        AppError::invalid(
                            "resolution",
                            format!(
                                "For {ar}, {} offers resolutions {}.",
                                self.name,
                                rs.join(", ")
                            ),
                        )
                    }),
            };
        }
        if resolution.is_some() {
            return Err(AppError::invalid(
                "resolution",
                "Give an aspect_ratio with the resolution.",
            ));
        }
        let first = &self.sizes[0];
        Ok((first.width, first.height))
    }

    /// Aspect ratios in the order the sizes list them, without repeats.
    pub fn aspect_ratios(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.sizes {
            if !out.contains(&s.aspect_ratio) {
                out.push(s.aspect_ratio.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_resolution() {
        assert_eq!(aspect_label(1024, 576), "16:9");
        assert_eq!(aspect_label(1344, 768), "16:9");
        assert_eq!(aspect_label(768, 1152), "2:3");
        assert_eq!(aspect_label(1000, 300), "10:3");
        let c = Catalog::from_config(&Config::default());
        let m = c.model("novart-builtin").unwrap();
        assert!(m.builtin);
        assert_eq!(m.resolve_size(None, None, None).unwrap(), (512, 512));
        assert_eq!(
            m.resolve_size(Some("768x512"), None, None).unwrap(),
            (768, 512)
        );
        assert_eq!(
            m.resolve_size(None, Some("16:9"), None).unwrap(),
            (1024, 576)
        );
        assert_eq!(
            m.resolve_size(None, Some("16:9"), Some(1344)).unwrap(),
            (1344, 768)
        );
        assert!(m.resolve_size(Some("123x77"), None, None).is_err());
        assert!(m.resolve_size(None, Some("7:5"), None).is_err());
        assert!(m.resolve_size(None, Some("1:1"), Some(999)).is_err());
        assert!(c.model("nope").is_err());
    }
}
