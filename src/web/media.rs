//! Stored images, served only to their owner: full size, preview, download.
//! Responses carry the right Content-Type, an ETag, and honour single byte
//! ranges (`Range: bytes=...`).

use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use rocket::{get, routes, Route, State};

use super::guards::MaybeUser;
use crate::domain::assets;
use crate::error::{AppError, AppResult};
use crate::App;

pub struct MediaFile {
    bytes: Vec<u8>,
    content_type: ContentType,
    etag: String,
    disposition: String,
}

/// Parses a single `bytes=` range against a length; None = not satisfiable.
fn parse_range(header: &str, len: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (len.saturating_sub(n), len - 1)
        }
        (s, "") => (s.parse().ok()?, len - 1),
        (s, e) => (s.parse().ok()?, e.parse::<u64>().ok()?.min(len - 1)),
    };
    (start <= end && start < len).then_some((start, end))
}

impl<'r> Responder<'r, 'static> for MediaFile {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let mut r = Response::build();
        r.header(self.content_type)
            .header(Header::new("ETag", self.etag.clone()))
            .header(Header::new("Cache-Control", "private, max-age=86400"))
            .header(Header::new("Accept-Ranges", "bytes"))
            .header(Header::new("Content-Disposition", self.disposition.clone()));
        if req.headers().get_one("If-None-Match") == Some(self.etag.as_str()) {
            return r.status(Status::NotModified).ok();
        }
        let len = self.bytes.len() as u64;
        if let Some(range) = req.headers().get_one("Range") {
            return match parse_range(range, len) {
                Some((start, end)) => {
                    let part = self.bytes[start as usize..=end as usize].to_vec();
                    r.status(Status::PartialContent)
                        .header(Header::new(
                            "Content-Range",
                            format!("bytes {start}-{end}/{len}"),
                        ))
                        .sized_body(part.len(), std::io::Cursor::new(part))
                        .ok()
                }
                None => r
                    .status(Status::RangeNotSatisfiable)
                    .header(Header::new("Content-Range", format!("bytes */{len}")))
                    .ok(),
            };
        }
        r.sized_body(self.bytes.len(), std::io::Cursor::new(self.bytes))
            .ok()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Full,
    Preview,
    Download,
}

/// `?expires=&signature=` of a signed link (API answers, webhooks).
#[derive(rocket::FromForm)]
pub struct Signed {
    expires: Option<i64>,
    signature: Option<String>,
    /// A share link's id (`/s/<share>` pages show the image with it).
    share: Option<String>,
}

/// The owner's session, or a valid signed link, gives access.
async fn serve(
    app: &App,
    me: MaybeUser,
    signed: Signed,
    id: &str,
    variant: Variant,
) -> AppResult<MediaFile> {
    let by_link = match (signed.expires, signed.signature.as_deref()) {
        (Some(exp), Some(sig)) => {
            if !crate::domain::links::verify(&app.secret, id, exp, sig, crate::domain::now()) {
                return Err(AppError::Forbidden(
                    "This image link has expired or is not valid.".into(),
                ));
            }
            true
        }
        _ => false,
    };
    let owner = me.0.map(|s| s.user.id);
    let (id_owned, config, share) = (id.to_string(), app.config.clone(), signed.share);
    let (asset, name) = app
        .db
        .run(move |conn| {
            let a = assets::viewable(conn, &id_owned, owner, by_link, share.as_deref())?;
            let name = if variant == Variant::Download {
                assets::record_download(conn, &a)?;
                let ext = if a.mime == "image/jpeg" { "jpg" } else { "png" };
                Some(crate::domain::download_names::for_asset(conn, &a, ext)?)
            } else {
                None
            };
            Ok((a, name))
        })
        .await?;
    let rel = match variant {
        Variant::Preview => asset.preview_path.clone().unwrap_or(asset.path.clone()),
        _ => asset.path.clone(),
    };
    let path = assets::file_path(&config, &rel);
    let bytes = rocket::tokio::fs::read(&path).await.map_err(|e| {
        tracing::error!(file = %path.display(), "stored image missing: {e}");
        AppError::NotFound
    })?;
    let bytes = crate::domain::vault::open(&config, bytes)?;
    let jpeg =
        (variant == Variant::Preview && asset.preview_path.is_some()) || asset.mime == "image/jpeg";
    let content_type = if jpeg {
        ContentType::JPEG
    } else {
        ContentType::PNG
    };
    let disposition = match name {
        // RFC 6266: an ASCII name for every client, the full one (any
        // script) for those that read filename*.
        Some((full, ascii)) => format!(
            "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
            crate::templates::urlencode(&full)
        ),
        None => "inline".to_string(),
    };
    let tag = if variant == Variant::Preview {
        "p"
    } else {
        "f"
    };
    Ok(MediaFile {
        bytes,
        content_type,
        etag: format!("\"{}-{tag}\"", asset.public_id),
        disposition,
    })
}

#[get("/media/<id>?<signed..>")]
async fn full(app: &State<App>, me: MaybeUser, signed: Signed, id: &str) -> AppResult<MediaFile> {
    serve(app, me, signed, id, Variant::Full).await
}

#[get("/media/<id>/preview?<signed..>")]
async fn preview(
    app: &State<App>,
    me: MaybeUser,
    signed: Signed,
    id: &str,
) -> AppResult<MediaFile> {
    serve(app, me, signed, id, Variant::Preview).await
}

#[get("/media/<id>/download?<signed..>")]
async fn download(
    app: &State<App>,
    me: MaybeUser,
    signed: Signed,
    id: &str,
) -> AppResult<MediaFile> {
    serve(app, me, signed, id, Variant::Download).await
}

pub fn routes() -> Vec<Route> {
    routes![full, preview, download]
}

/// A running task's latest preview (in memory on the node running it),
/// never cached: the next one replaces it.
pub struct Preview(pub std::sync::Arc<Vec<u8>>);

impl<'r> Responder<'r, 'static> for Preview {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let png = self.0.starts_with(b"\x89PNG");
        let bytes = self.0.as_ref().clone();
        Response::build()
            .header(if png {
                ContentType::PNG
            } else {
                ContentType::JPEG
            })
            .header(Header::new("Cache-Control", "no-store"))
            .header(Header::new("X-Content-Type-Options", "nosniff"))
            .sized_body(bytes.len(), std::io::Cursor::new(bytes))
            .ok()
    }
}

/// The preview of the user's task `id` if it runs here and has one.
pub async fn preview_of(app: &App, user: crate::model::UserId, id: &str) -> AppResult<Preview> {
    let task = id.to_string();
    // Another user's task is simply not found.
    app.db
        .run(move |conn| crate::domain::tasks::get(conn, user, &task).map(|_| ()))
        .await?;
    app.engine
        .hub
        .preview(id)
        .map(|(_, image)| Preview(image))
        .ok_or(AppError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,4-5", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
