//! Outgoing e-mail. The default transport writes each message as an `.eml`
//! file under `<data_dir>/outbox/` and logs it, so a first run needs no mail
//! server; with `mail.transport = "smtp"` messages go through lettre's SMTP
//! transport. Every message has a plain-text and an HTML body.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{Message, SmtpTransport, Transport as _};

use crate::config::{Config, MailTransport};
use crate::error::{AppError, AppResult};
use crate::templates::Templates;

/// A message to send: `template` names `templates/emails/<template>.txt` and
/// `.html`, rendered with `context` (plus `public_url`).
pub struct Email {
    pub to: String,
    /// The English subject; sent in `lang` through the message catalogue.
    pub subject: String,
    /// The recipient's language (the account's choice).
    pub lang: crate::i18n::Lang,
    pub template: &'static str,
    pub context: tera::Context,
    /// The action link inside, logged with outbox delivery for convenience.
    pub link: Option<String>,
}

enum Transport {
    Outbox(PathBuf),
    Smtp(Box<SmtpTransport>),
}

#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    from: Mailbox,
    public_url: String,
    templates: Arc<Templates>,
}

impl Mailer {
    pub fn new(config: &Config, templates: Arc<Templates>) -> AppResult<Mailer> {
        let transport = match config.mail.transport {
            MailTransport::Outbox => Transport::Outbox(config.outbox_dir()),
            MailTransport::Smtp => {
                let t = SmtpTransport::from_url(&config.mail.smtp_url)
                    .map_err(|e| AppError::internal(format!("mail.smtp_url: {e}")))?
                    .timeout(Some(Duration::from_secs(20)))
                    .build();
                Transport::Smtp(Box::new(t))
            }
        };
        let from = config
            .mail
            .from
            .parse()
            .map_err(|e| AppError::internal(format!("mail.from: {e}")))?;
        Ok(Mailer {
            inner: Arc::new(Inner {
                transport,
                from,
                public_url: config.public_url(),
                templates,
            }),
        })
    }

    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    /// Renders and sends (or files) one message.
    pub fn send(&self, email: Email) -> AppResult<()> {
        let inner = &self.inner;
        let mut ctx = email.context.clone();
        let subject = inner
            .templates
            .catalogs()
            .message(email.lang, &email.subject);
        ctx.insert("public_url", &inner.public_url);
        ctx.insert("subject", &subject);
        ctx.insert("lang", email.lang.code());
        let render = |ext: &str| {
            let name = format!("emails/{}.{ext}", email.template);
            inner.templates.render(&name, email.lang, &ctx)
        };
        let (text, html) = (render("txt")?, render("html")?);
        let to: Mailbox = email
            .to
            .parse()
            .map_err(|e| AppError::internal(format!("recipient {:?}: {e}", email.to)))?;
        let message = Message::builder()
            .from(inner.from.clone())
            .to(to)
            .subject(subject)
            .message_id(None)
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| AppError::internal(format!("building e-mail: {e}")))?;
        match &inner.transport {
            Transport::Outbox(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| AppError::internal(format!("outbox: {e}")))?;
                let name = format!(
                    "{}-{}.eml",
                    crate::domain::now(),
                    crate::domain::secrets::random_token(6)
                );
                let tmp = dir.join(format!(".{name}.tmp"));
                std::fs::write(&tmp, message.formatted())
                    .and_then(|_| std::fs::rename(&tmp, dir.join(&name)))
                    .map_err(|e| AppError::internal(format!("outbox: {e}")))?;
                tracing::info!(
                    to = %email.to,
                    subject = %email.subject,
                    file = %dir.join(&name).display(),
                    link = email.link.as_deref().unwrap_or("-"),
                    "e-mail written to outbox"
                );
            }
            Transport::Smtp(t) => {
                t.send(&message).map_err(|e| {
                    AppError::internal(format!("SMTP delivery to {}: {e}", email.to))
                })?;
                tracing::info!(to = %email.to, subject = %email.subject, "e-mail sent");
            }
        }
        Ok(())
    }
}
