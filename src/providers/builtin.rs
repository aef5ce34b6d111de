//! The built-in renderer: deterministic abstract art drawn from the prompt's
//! words and the seed. No AI model and no network: the same prompt, seed and
//! size always give the same picture. Words pick the palette (sunset, ocean,
//! forest, neon, pastel, night...) and the scene (a landscape with a horizon,
//! a starfield, a skyline, or flowing abstract shapes); a reference image, if
//! given, is blended underneath.

use image::{imageops::FilterType, ImageFormat, Rgb, RgbImage};

use super::{Control, GenRequest, Provider, ProviderError};

pub struct Builtin;

/// An edit with a mask: where the mask is opaque the original (the first
/// reference) is kept; only its transparent area is painted anew.
fn keep_unmasked(
    img: &mut image::RgbImage,
    reference: &image::DynamicImage,
    mask: &image::DynamicImage,
) {
    use image::imageops::FilterType;
    let (w, h) = img.dimensions();
    let original = reference.resize_exact(w, h, FilterType::Triangle).to_rgb8();
    let mask = mask.resize_exact(w, h, FilterType::Nearest).to_rgba8();
    for (x, y, px) in img.enumerate_pixels_mut() {
        if mask.get_pixel(x, y)[3] >= 128 {
            *px = *original.get_pixel(x, y);
        }
    }
}

impl Provider for Builtin {
    fn generate(&self, req: &GenRequest, ctl: &dyn Control) -> Result<Vec<Vec<u8>>, ProviderError> {
        let reference = match req.references.first() {
            Some(bytes) => {
                Some(
                    image::load_from_memory(bytes).map_err(|e| ProviderError::Failed {
                        message: "The reference image could not be read.".into(),
                        raw: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        let mask = match &req.mask {
            Some(bytes) => {
                Some(
                    image::load_from_memory(bytes).map_err(|e| ProviderError::Failed {
                        message: "The mask could not be read.".into(),
                        raw: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        let mut out = Vec::with_capacity(req.n as usize);
        let n = req.n.max(1);
        for i in 0..n {
            if ctl.canceled() {
                break;
            }
            let mut img = render(
                &req.prompt,
                req.seed.wrapping_add(i as u64),
                req.width,
                req.height,
                reference.as_ref(),
            );
            if let (Some(mask), Some(reference)) = (&mask, &reference) {
                keep_unmasked(&mut img, reference, mask);
            }
            let mut png = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
                .map_err(|e| ProviderError::Failed {
                    message: "The image could not be encoded.".into(),
                    raw: e.to_string(),
                })?;
            out.push(png);
            ctl.progress((i + 1) as f64 / n as f64);
        }
        Ok(out)
    }
}

/// splitmix64: small, fast, and stable across versions (unlike a library RNG).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.f()
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Scene {
    Landscape,
    Space,
    City,
    Abstract,
}

struct Mood {
    hue: Option<f32>,
    sat: f32,
    light: f32,
    scene: Scene,
    water: bool,
}

fn read_words(prompt: &str) -> (Vec<String>, Mood) {
    let words: Vec<String> = prompt
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    let mut m = Mood {
        hue: None,
        sat: 0.65,
        light: 0.5,
        scene: Scene::Abstract,
        water: false,
    };
    let has = |list: &[&str]| words.iter().any(|w| list.contains(&w.as_str()));
    let hues: &[(&[&str], f32)] = &[
        (
            &["sunset", "sunrise", "autumn", "orange", "amber", "dusk"],
            22.0,
        ),
        (&["fire", "red", "lava", "volcano", "blood"], 5.0),
        (&["gold", "golden", "desert", "sand", "honey"], 42.0),
        (
            &["forest", "green", "jungle", "leaf", "moss", "garden"],
            125.0,
        ),
        (
            &["ocean", "sea", "water", "lake", "river", "blue", "wave"],
            205.0,
        ),
        (
            &["ice", "snow", "snowy", "winter", "frost", "glacier"],
            190.0,
        ),
        (
            &["night", "space", "galaxy", "cosmic", "midnight", "moon"],
            245.0,
        ),
        (&["purple", "violet", "dream", "magic", "lavender"], 275.0),
        (
            &["rose", "pink", "love", "cherry", "blossom", "flower"],
            335.0,
        ),
    ];
    for (list, hue) in hues {
        if has(list) {
            m.hue = Some(*hue);
            break;
        }
    }
    if has(&["neon", "vivid", "cyberpunk", "electric", "bright"]) {
        m.sat = 0.95;
    }
    if has(&["pastel", "soft", "gentle", "calm", "misty", "fog"]) {
        m.sat = 0.35;
        m.light = 0.68;
    }
    if has(&["dark", "night", "noir", "shadow", "gothic", "midnight"]) {
        m.light = 0.28;
    }
    if has(&[
        "space", "galaxy", "stars", "star", "cosmic", "nebula", "universe",
    ]) {
        m.scene = Scene::Space;
    } else if has(&[
        "city",
        "skyline",
        "street",
        "tower",
        "cyberpunk",
        "town",
        "building",
    ]) {
        m.scene = Scene::City;
    } else if has(&[
        "landscape",
        "mountain",
        "mountains",
        "sunset",
        "sunrise",
        "valley",
        "hills",
        "ocean",
        "sea",
        "lake",
        "horizon",
        "desert",
    ]) {
        m.scene = Scene::Landscape;
    }
    m.water = has(&["ocean", "sea", "lake", "river", "water", "reflection"]);
    (words, m)
}

fn hsl(h: f32, s: f32, l: f32) -> [f32; 3] {
    let h = h.rem_euclid(360.0) / 360.0;
    let q = if l < 0.5 {
        l * (1.0 + s)
    } else {
        l + s - l * s
    };
    let p = 2.0 * l - q;
    let f = |t: f32| {
        let t = t.rem_euclid(1.0);
        if t < 1.0 / 6.0 {
            p + (q - p) * 6.0 * t
        } else if t < 0.5 {
            q
        } else if t < 2.0 / 3.0 {
            p + (q - p) * (2.0 / 3.0 - t) * 6.0
        } else {
            p
        }
    };
    [f(h + 1.0 / 3.0), f(h), f(h - 1.0 / 3.0)]
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn smooth(t: f32) -> f32 {
    let t = t.clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Value noise on an integer lattice, seeded.
fn noise(seed: u64, x: f32, y: f32) -> f32 {
    let (xi, yi) = (x.floor() as i64, y.floor() as i64);
    let (xf, yf) = (smooth(x - x.floor()), smooth(y - y.floor()));
    let corner = |i: i64, j: i64| {
        let mut r = Rng(seed
            ^ (i as u64).wrapping_mul(0x9E37_79B1)
            ^ (j as u64).wrapping_mul(0x85EB_CA77_C2B2_AE63));
        r.f()
    };
    let a = corner(xi, yi) + (corner(xi + 1, yi) - corner(xi, yi)) * xf;
    let b = corner(xi, yi + 1) + (corner(xi + 1, yi + 1) - corner(xi, yi + 1)) * xf;
    a + (b - a) * yf
}

fn fbm(seed: u64, x: f32, y: f32) -> f32 {
    let (mut sum, mut amp, mut freq) = (0.0, 0.5, 1.0);
    for o in 0..4 {
        sum += amp * noise(seed.wrapping_add(o), x * freq, y * freq);
        amp *= 0.5;
        freq *= 2.0;
    }
    sum / 0.9375
}

/// Draws one picture of `width`×`height`.
pub fn render(
    prompt: &str,
    seed: u64,
    width: u32,
    height: u32,
    reference: Option<&image::DynamicImage>,
) -> RgbImage {
    let (words, mood) = read_words(prompt);
    let text_hash = fnv(&words.join(" "));
    let mut rng = Rng(text_hash ^ seed.wrapping_mul(0xA24B_AED4_963E_E407));
    let base_hue = mood.hue.unwrap_or((text_hash % 360) as f32) + rng.range(-12.0, 12.0);
    // A harmony: analogous, complementary or triadic, picked by the seed.
    let spread = [30.0, 180.0, 120.0][(rng.next() % 3) as usize];
    let (s, l) = (mood.sat, mood.light);
    let palette = [
        hsl(base_hue, s, (l * 0.45).max(0.06)),
        hsl(base_hue + spread * 0.5, s, l),
        hsl(base_hue + spread, (s * 1.1).min(1.0), (l * 1.25).min(0.85)),
        hsl(base_hue - spread * 0.35, s * 0.8, (l * 1.5).min(0.92)),
    ];
    let (w, h) = (width as f32, height as f32);
    let noise_seed = rng.next();
    // Soft blobs (abstract), positions in unit coordinates.
    let blobs: Vec<(f32, f32, f32, [f32; 3])> = (0..5 + (rng.next() % 4) as usize)
        .map(|i| (rng.f(), rng.f(), rng.range(0.15, 0.45), palette[1 + i % 3]))
        .collect();
    let sun = (
        rng.range(0.2, 0.8),
        rng.range(0.18, 0.4),
        rng.range(0.05, 0.11),
    );
    let ridges: Vec<(f32, f32, u64)> = (0..3)
        .map(|i| {
            (
                0.55 + i as f32 * 0.1 + rng.range(-0.03, 0.03),
                rng.range(2.0, 5.0),
                rng.next(),
            )
        })
        .collect();
    let towers: Vec<(f32, f32, f32)> = (0..24)
        .map(|_| (rng.f(), rng.range(0.02, 0.07), rng.range(0.25, 0.7)))
        .collect();
    let horizon = if mood.water { 0.66 } else { 1.0 };
    // Landscape colours: cool sky above, warm light at the horizon, hills that
    // fade into the haze with distance.
    let sky_top = hsl(base_hue + 200.0, s * 0.55, (l * 0.7).max(0.12));
    let sky_low = hsl(base_hue, (s * 1.1).min(1.0), (l * 1.3).clamp(0.45, 0.75));
    let hill = hsl(base_hue + spread * 0.6, s * 0.6, (l * 0.45).max(0.08));
    let sky = |sy: f32| mix(sky_top, sky_low, smooth(sy / horizon).powf(1.4));

    let mut img = RgbImage::new(width, height);
    for (px, py, pixel) in img.enumerate_pixels_mut() {
        let (x, y) = (px as f32 / w, py as f32 / h);
        let aspect = w / h;
        let mut c: [f32; 3];
        match mood.scene {
            Scene::Abstract => {
                let warp = fbm(noise_seed, x * 3.0, y * 3.0);
                c = mix(palette[0], palette[2], smooth(y + (warp - 0.5) * 0.8));
                for &(bx, by, r, col) in &blobs {
                    let dx = (x - bx) * aspect;
                    let d = (dx * dx + (y - by) * (y - by)).sqrt() + (warp - 0.5) * 0.15;
                    c = mix(c, col, (1.0 - smooth(d / r)) * 0.75);
                }
                let band = ((x * 9.0 + warp * 6.0 + y * 3.0).sin() * 0.5 + 0.5).powf(18.0);
                c = mix(c, palette[3], band * 0.35);
            }
            Scene::Space => {
                c = mix(hsl(base_hue, 0.5, 0.04), hsl(base_hue, 0.6, 0.12), y);
                let neb = fbm(noise_seed, x * 2.5 * aspect, y * 2.5);
                c = mix(c, palette[2], smooth((neb - 0.45) * 2.5) * 0.7);
                c = mix(
                    c,
                    palette[3],
                    smooth((fbm(noise_seed ^ 7, x * 4.0, y * 4.0) - 0.55) * 3.0) * 0.5,
                );
                let mut star = Rng(noise_seed ^ (px as u64) << 20 ^ py as u64);
                if star.f() > 0.9975 {
                    c = mix(c, [1.0, 1.0, 0.95], star.range(0.5, 1.0));
                }
            }
            Scene::Landscape | Scene::City => {
                let sy = y.min(horizon);
                c = sky(sy);
                let dx = (x - sun.0) * aspect;
                let d = (dx * dx + (sy - sun.1) * (sy - sun.1)).sqrt();
                c = mix(c, [1.0, 0.97, 0.88], (1.0 - smooth(d / sun.2)) * 0.95);
                c = mix(c, sky_low, (1.0 - smooth(d / (sun.2 * 5.0))) * 0.45);
                if mood.scene == Scene::Landscape {
                    for (i, &(base, freq, rs)) in ridges.iter().enumerate() {
                        let ridge = base - fbm(rs, x * freq, i as f32) * 0.22;
                        if sy > ridge && y < horizon {
                            let haze = 0.6 - i as f32 * 0.27;
                            let shade = (sy - ridge) * 1.5;
                            c = mix(mix(hill, sky_low, haze), palette[0], shade.min(0.5));
                        }
                    }
                } else {
                    for &(tx, tw, th) in &towers {
                        if (x - tx).abs() < tw / 2.0
                            && sy > 1.0 - th * horizon.min(0.95)
                            && y < horizon
                        {
                            c = mix(palette[0], [0.02, 0.02, 0.04], 0.5);
                            let lit =
                                Rng(noise_seed ^ ((x * 60.0) as u64) << 16 ^ (y * 90.0) as u64).f();
                            if lit > 0.8 && ((x * 300.0) as i32 % 3 != 0) {
                                c = mix(c, palette[3], 0.8);
                            }
                        }
                    }
                }
                if y >= horizon {
                    // Water: the sky above, mirrored and rippled.
                    let ripple = (noise(noise_seed, x * 40.0, y * 120.0) - 0.5) * 0.04;
                    let my = (2.0 * horizon - y + ripple).clamp(0.0, horizon);
                    let mirror = sky(my);
                    let glint = ((y * 200.0 + ripple * 400.0).sin() * 0.5 + 0.5).powf(30.0);
                    c = mix(mix(mirror, palette[0], 0.35), sky_low, glint * 0.4);
                }
            }
        }
        // Vignette and fine grain.
        let v = ((x - 0.5) * (x - 0.5) + (y - 0.5) * (y - 0.5)).sqrt();
        c = mix(c, [0.0, 0.0, 0.0], smooth((v - 0.45) * 2.2) * 0.45);
        let grain = (Rng(noise_seed
            ^ (px as u64).wrapping_mul(7919)
            ^ (py as u64).wrapping_mul(104_729))
        .f() - 0.5)
            * 0.035;
        *pixel = Rgb([
            ((c[0] + grain).clamp(0.0, 1.0) * 255.0) as u8,
            ((c[1] + grain).clamp(0.0, 1.0) * 255.0) as u8,
            ((c[2] + grain).clamp(0.0, 1.0) * 255.0) as u8,
        ]);
    }
    if let Some(reference) = reference {
        let r = reference
            .resize_to_fill(width, height, FilterType::Triangle)
            .to_rgb8();
        for (p, q) in img.pixels_mut().zip(r.pixels()) {
            for k in 0..3 {
                p.0[k] = ((p.0[k] as f32) * 0.45 + (q.0[k] as f32) * 0.55) as u8;
            }
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(prompt: &str, seed: u64, w: u32, h: u32) -> GenRequest {
        GenRequest {
            prompt: prompt.into(),
            negative_prompt: String::new(),
            width: w,
            height: h,
            n: 1,
            seed,
            upstream_model: String::new(),
            references: vec![],
            mask: None,
        }
    }

    fn run(r: &GenRequest) -> Vec<Vec<u8>> {
        Builtin.generate(r, &crate::providers::Unattended).unwrap()
    }

    struct Stop;
    impl Control for Stop {
        fn canceled(&self) -> bool {
            true
        }
    }

    #[test]
    fn deterministic_sized_and_varied() {
        let a = run(&req("a sunset over the ocean", 7, 96, 64));
        let b = run(&req("a sunset over the ocean", 7, 96, 64));
        assert_eq!(a, b, "same input, same picture");
        let img = image::load_from_memory(&a[0]).unwrap();
        assert_eq!((img.width(), img.height()), (96, 64));
        let c = run(&req("a sunset over the ocean", 8, 96, 64));
        let d = run(&req("neon city at night", 7, 96, 64));
        assert_ne!(a, c, "another seed, another picture");
        assert_ne!(a, d, "other words, another picture");
    }

    #[test]
    fn every_scene_renders_and_is_not_flat() {
        for prompt in [
            "sunset mountains",
            "galaxy of stars",
            "cyberpunk city",
            "a quiet thought",
            "蓝色的海",
        ] {
            let img = render(prompt, 1, 64, 48, None);
            let first = *img.get_pixel(0, 0);
            assert!(
                img.pixels().any(|p| *p != first),
                "{prompt} is one flat colour"
            );
        }
    }

    #[test]
    fn a_reference_image_shows_through() {
        let white =
            image::DynamicImage::ImageRgb8(RgbImage::from_pixel(32, 32, Rgb([255, 255, 255])));
        let plain = render("night", 3, 32, 32, None);
        let blended = render("night", 3, 32, 32, Some(&white));
        let mean = |i: &RgbImage| i.pixels().map(|p| p.0[0] as u64).sum::<u64>() / 1024;
        assert!(mean(&blended) > mean(&plain) + 60);
    }

    #[test]
    fn n_images_and_cancel() {
        let mut r = req("forest", 1, 32, 32);
        r.n = 3;
        let out = run(&r);
        assert_eq!(out.len(), 3);
        assert_ne!(out[0], out[1]);
        assert!(Builtin.generate(&r, &Stop).unwrap().is_empty());
    }
}
