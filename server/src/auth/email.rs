//! `Email`: an address parsed once at the edge — trimmed, Unicode NFC, domain in lower case —
//! so the email index sees one spelling per address.

use unicode_normalization::UnicodeNormalization as _;

use super::error::AuthError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(text: &str) -> Result<Email, AuthError> {
        let normalised: String = text.trim().nfc().collect();
        let invalid =
            || AuthError::invalid(format!("'{}' is not a valid email address", text.trim()));
        if normalised.len() > 254
            || normalised
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid());
        }
        let (local, domain) = normalised.rsplit_once('@').ok_or_else(invalid)?;
        let domain = domain.to_lowercase();
        let labels_ok = domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
        if local.is_empty() || local.len() > 64 || local.contains('@') || !labels_ok {
            return Err(invalid());
        }
        Ok(Email(format!("{local}@{domain}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_trimmed_composed_and_domain_lowercased() {
        assert_eq!(
            Email::parse("  Ann.Lee@Example.COM ").unwrap().as_str(),
            "Ann.Lee@example.com"
        );
        // "e" + combining acute accent composes to "é".
        assert_eq!(
            Email::parse("jose\u{301}@b\u{fc}cher.de").unwrap().as_str(),
            "jos\u{e9}@b\u{fc}cher.de"
        );
    }

    #[test]
    fn malformed_addresses_are_rejected() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b@c.com",
            "a b@example.com",
            "a@exa mple.com",
            "a@-x.com",
            "a@x..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert!(Email::parse(&format!("{}@x.com", "a".repeat(65))).is_err());
    }
}
