//! Outgoing mail (verification and password-reset links) through SMTP with `lettre`, or, with no
//! SMTP server configured, appended to `mail_outbox.txt` in the data dir (with a warning at start).

use std::path::PathBuf;

use crate::config::SmtpSecurity;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

use super::error::AuthError;

/// The file mails go to when no SMTP server is configured.
pub const OUTBOX_FILE: &str = "mail_outbox.txt";

#[derive(Debug, Clone, Default)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(PathBuf),
}

/// One outgoing mail.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

pub struct Mailer {
    from: Mailbox,
    transport: Transport,
}

impl Mailer {
    /// SMTP (plain, STARTTLS or implicit TLS, verified against the Mozilla roots); no SMTP
    /// settings → the outbox file.
    pub fn new(
        from: &str,
        smtp: Option<SmtpSettings>,
        data_dir: PathBuf,
    ) -> Result<Mailer, AuthError> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| AuthError::internal(format!("auth.mail_from '{from}' is invalid: {e}")))?;
        let transport = match smtp {
            Some(smtp) => {
                let host = smtp.host.as_str();
                let tls_error = |e: lettre::transport::smtp::Error| {
                    AuthError::internal(format!("SMTP TLS for {host}: {e}"))
                };
                let mut builder = match smtp.security {
                    SmtpSecurity::None => {
                        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    }
                    SmtpSecurity::Starttls => {
                        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                            .map_err(tls_error)?
                    }
                    SmtpSecurity::Tls => {
                        AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(tls_error)?
                    }
                }
                .port(smtp.port);
                if let (Some(user), Some(password)) = (smtp.username, smtp.password) {
                    builder = builder.credentials(Credentials::new(user, password));
                }
                Transport::Smtp(builder.build())
            }
            None => {
                let path = data_dir.join(OUTBOX_FILE);
                tracing::warn!(
                    outbox = %path.display(),
                    "no SMTP server configured (auth.smtp_host): verification and reset mails are written to a file"
                );
                Transport::File(path)
            }
        };
        Ok(Mailer { from, transport })
    }

    pub async fn send(&self, mail: Mail) -> Result<(), AuthError> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|e| AuthError::Mail(format!("recipient: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body)
            .map_err(|e| AuthError::Mail(e.to_string()))?;
        match &self.transport {
            Transport::Smtp(smtp) => smtp
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| AuthError::Mail(e.to_string())),
            Transport::File(path) => {
                let path = path.clone();
                let mut bytes = message.formatted();
                bytes.extend_from_slice(b"\r\n");
                tokio::task::spawn_blocking(move || {
                    use std::io::Write as _;
                    let mut file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)?;
                    file.write_all(&bytes)
                })
                .await
                .map_err(|e| AuthError::internal(format!("mail task failed: {e}")))?
                .map_err(|e| AuthError::Mail(format!("cannot write the outbox: {e}")))
            }
        }
    }
}
