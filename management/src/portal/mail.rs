//! The portal's mail: confirmation and reset links, sent through SMTP (lettre) to the server the
//! config names, or, with none (the quick start), written to an outbox directory with the link
//! in the log, so the quick start works offline.

use std::path::PathBuf;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, Message};
use lettre::{SmtpTransport, Transport as _};

/// Where mail goes.
#[derive(Debug, Clone)]
pub enum MailSettings {
    /// One `.eml` file per message in `dir`; the link is logged.
    Outbox { dir: PathBuf },
    /// An SMTP server: `smtp://host:port` (plain, loopback or a trusted network),
    /// `smtp://host:587?tls=required` (STARTTLS) or `smtps://user:password@host:465`.
    Smtp { url: String },
}

/// One message, in words.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    /// Plain text.
    pub body: String,
    /// The one link the message carries (logged in outbox mode).
    pub link: String,
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("the address {0:?} is not an email address")]
    Address(String),
    #[error("the message cannot be built: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("the SMTP server refused or could not be reached: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("the outbox {path}: {source}")]
    Outbox { path: PathBuf, source: std::io::Error },
}

/// Sends the portal's mail.
#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    route: Route,
}

#[derive(Clone)]
enum Route {
    Outbox(PathBuf),
    Smtp(SmtpTransport),
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The SMTP URL may hold a password: never printed.
        let route = match &self.route {
            Route::Outbox(dir) => format!("outbox {}", dir.display()),
            Route::Smtp(_) => "smtp".to_owned(),
        };
        f.debug_struct("Mailer").field("from", &self.from.to_string()).field("route", &route).finish()
    }
}

impl Mailer {
    /// A mailer that sends as `from` (`Portcullis <portal@example.com>`).
    pub fn new(settings: &MailSettings, from: &str) -> Result<Self, MailError> {
        let from: Mailbox = from.parse().map_err(|_| MailError::Address(from.to_owned()))?;
        let route = match settings {
            MailSettings::Outbox { dir } => Route::Outbox(dir.clone()),
            MailSettings::Smtp { url } => Route::Smtp(SmtpTransport::from_url(url)?.build()),
        };
        Ok(Self { from, route })
    }

    /// Sends `mail` (blocking: call it off the async runtime).
    pub fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let to: Mailbox = mail.to.parse().map_err(|_| MailError::Address(mail.to.clone()))?;
        // 7bit (8bit for non-ASCII names), never quoted-printable or base64 (lettre picks those for
        // lines of 76 characters or more): a link stays whole on one line, readable in the outbox.
        // Lines end in CRLF and stay far below RFC 5322's 998 characters (names are at most 100).
        let text = mail.body.replace("\r\n", "\n").replace('\n', "\r\n");
        let encoding =
            if text.is_ascii() { ContentTransferEncoding::SevenBit } else { ContentTransferEncoding::EightBit };
        let body = Body::dangerous_pre_encoded(text.into_bytes(), encoding);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.as_str())
            .header(ContentType::TEXT_PLAIN)
            .body(body)?;
        match &self.route {
            Route::Smtp(transport) => {
                transport.send(&message)?;
            }
            Route::Outbox(dir) => {
                write_outbox(dir, &message.formatted())?;
                // The quick start's only way to the link: the outbox and this line (no SMTP server).
                tracing::info!("portal mail to {} ({}): {}", mail.to, mail.subject, mail.link);
            }
        }
        Ok(())
    }
}

/// Writes `bytes` as `<dir>/<millis>-<random>.eml` (mode 0600: links in it open accounts).
fn write_outbox(dir: &std::path::Path, bytes: &[u8]) -> Result<(), MailError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let error = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| MailError::Outbox { path, source }
    };
    std::fs::create_dir_all(dir).map_err(error(dir))?;
    let suffix = super::sessions::random_hex(4).unwrap_or_default();
    let path = dir.join(format!("{}-{suffix}.eml", crate::analytics::now_ms()));
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(error(&path))?;
    file.write_all(bytes).map_err(error(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_holds_one_message_per_mail() {
        let dir = std::env::temp_dir().join(format!("portcullis-outbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mailer = Mailer::new(&MailSettings::Outbox { dir: dir.clone() }, "Portal <portal@example.com>").unwrap();
        let mail = Mail {
            to: "dev@example.com".into(),
            subject: "Confirm".into(),
            body: "Open http://x/confirm?ticket=abc".into(),
            link: "http://x/confirm?ticket=abc".into(),
        };
        mailer.send(&mail).unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.contains("To: dev@example.com") && text.contains("ticket=abc"), "{text}");
        assert!(matches!(mailer.send(&Mail { to: "not an address".into(), ..mail }), Err(MailError::Address(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_sender_or_url_is_refused() {
        let outbox = MailSettings::Outbox { dir: PathBuf::from("/nonexistent") };
        assert!(matches!(Mailer::new(&outbox, "nobody"), Err(MailError::Address(_))));
        let smtp = MailSettings::Smtp { url: "ftp://host".into() };
        assert!(Mailer::new(&smtp, "p@example.com").is_err());
    }
}
