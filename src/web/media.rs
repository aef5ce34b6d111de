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

/// What is sent of a stored image.
pub enum Body {
    /// The whole image (a `Range` header is cut from it).
    Whole(Vec<u8>),
    /// A range read on its own from storage: the image's length and the
    /// range (None: not satisfiable).
    Part(crate::domain::stored::Ranged),
}

// One per response, moved once: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum MediaFile {
    Bytes {
        bytes: Body,
        content_type: ContentType,
        etag: String,
        disposition: String,
    },
    /// `storage.s3.presign_downloads`: the bucket serves the bytes.
    Redirect(Box<str>),
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
        let (bytes, content_type, etag, disposition) = match self {
            MediaFile::Bytes {
                bytes,
                content_type,
                etag,
                disposition,
            } => (bytes, content_type, etag, disposition),
            MediaFile::Redirect(url) => {
                // Not cached: the address expires before a cached copy would.
                return Response::build()
                    .status(Status::Found)
                    .header(Header::new("Location", url.into_string()))
                    .header(Header::new("Cache-Control", "no-store"))
                    .ok();
            }
        };
        let mut r = Response::build();
        r.header(content_type)
            .header(Header::new("ETag", etag.clone()))
            .header(Header::new("Cache-Control", "private, max-age=86400"))
            .header(Header::new("Accept-Ranges", "bytes"))
            .header(Header::new("Content-Disposition", disposition));
        if req.headers().get_one("If-None-Match") == Some(etag.as_str()) {
            return r.status(Status::NotModified).ok();
        }
        let bytes = match bytes {
            Body::Whole(b) => b,
            Body::Part((len, None)) => {
                return r
                    .status(Status::RangeNotSatisfiable)
                    .header(Header::new("Content-Range", format!("bytes */{len}")))
                    .ok()
            }
            Body::Part((len, Some((start, end, part)))) => {
                return r
                    .status(Status::PartialContent)
                    .header(Header::new(
                        "Content-Range",
                        format!("bytes {start}-{end}/{len}"),
                    ))
                    .sized_body(part.len(), std::io::Cursor::new(part))
                    .ok()
            }
        };
        let len = bytes.len() as u64;
        if let Some(range) = req.headers().get_one("Range") {
            return match parse_range(range, len) {
                Some((start, end)) => {
                    let part = bytes[start as usize..=end as usize].to_vec();
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
        r.sized_body(bytes.len(), std::io::Cursor::new(bytes)).ok()
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

/// The request's `Range` header, if any.
pub struct RangeReq(Option<String>);

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for RangeReq {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> rocket::request::Outcome<Self, Self::Error> {
        let range = (req.headers().get_one("If-None-Match").is_none())
            .then(|| req.headers().get_one("Range").map(str::to_string))
            .flatten();
        rocket::request::Outcome::Success(RangeReq(range))
    }
}

/// The owner's session, or a valid signed link, gives access.
async fn serve(
    app: &App,
    me: MaybeUser,
    signed: Signed,
    id: &str,
    variant: Variant,
    range: RangeReq,
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
    let preview = variant == Variant::Preview;
    if let Some(url) = assets::presigned(&config, &asset, preview) {
        return Ok(MediaFile::Redirect(url.into()));
    }
    let a = asset.clone();
    // A range is read on its own from storage where it can be (unsealed
    // images); otherwise it is cut from the whole image.
    let bytes = rocket::tokio::task::spawn_blocking(move || -> AppResult<Body> {
        if let Some(h) = range.0 {
            if let Some(part) =
                assets::read_image_range(&config, &a, preview, |len| parse_range(&h, len))?
            {
                return Ok(Body::Part(part));
            }
        }
        assets::read_image(&config, &a, preview).map(Body::Whole)
    })
    .await
    .map_err(AppError::internal)??;
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
    Ok(MediaFile::Bytes {
        bytes,
        content_type,
        etag: format!("\"{}-{tag}\"", asset.public_id),
        disposition,
    })
}

#[get("/media/<id>?<signed..>")]
async fn full(
    app: &State<App>,
    me: MaybeUser,
    signed: Signed,
    id: &str,
    range: RangeReq,
) -> AppResult<MediaFile> {
    serve(app, me, signed, id, Variant::Full, range).await
}

#[get("/media/<id>/preview?<signed..>")]
async fn preview(
    app: &State<App>,
    me: MaybeUser,
    signed: Signed,
    id: &str,
    range: RangeReq,
) -> AppResult<MediaFile> {
    serve(app, me, signed, id, Variant::Preview, range).await
}

#[get("/media/<id>/download?<signed..>")]
async fn download(
    app: &State<App>,
    me: MaybeUser,
    signed: Signed,
    id: &str,
    range: RangeReq,
) -> AppResult<MediaFile> {
    serve(app, me, signed, id, Variant::Download, range).await
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
