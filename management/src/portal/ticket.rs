//! Tickets: the signed, expiring links of confirmation and password-reset mails.
//!
//! A ticket is `base64url(purpose.user.expires_ms.stamp).base64url(HMAC-SHA256)`. The stamp ties
//! it to the account's state when it was made (for a reset, a digest of the password hash), so a
//! ticket works once: after the password changes, its stamp no longer matches.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a ticket may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Confirms a sign-up (the user goes from `pending` to `active`).
    Confirm,
    /// Sets a new password.
    Reset,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Confirm => "confirm",
            Purpose::Reset => "reset",
        }
    }
}

/// A verified ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub user: String,
    pub stamp: String,
}

/// Why a ticket is refused (the page says the link is invalid or expired, nothing more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("the link is malformed")]
    Malformed,
    #[error("the link's signature does not match")]
    Forged,
    #[error("the link has expired")]
    Expired,
}

/// Signs a ticket for `user` that expires at `expires_ms` (Unix milliseconds).
pub fn issue(key: &[u8], purpose: Purpose, user: &str, stamp: &str, expires_ms: u64) -> String {
    let payload = format!("{}.{user}.{expires_ms}.{stamp}", purpose.as_str());
    let signature = sign(key, payload.as_bytes());
    format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(signature))
}

/// Checks `ticket`'s signature, purpose and expiry at `now_ms`.
pub fn verify(key: &[u8], purpose: Purpose, ticket: &str, now_ms: u64) -> Result<Ticket, TicketError> {
    let (payload, signature) = ticket.split_once('.').ok_or(TicketError::Malformed)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TicketError::Malformed)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TicketError::Malformed)?;
    let mut mac = mac(key);
    mac.update(&payload);
    mac.verify_slice(&signature).map_err(|_| TicketError::Forged)?;
    let payload = String::from_utf8(payload).map_err(|_| TicketError::Malformed)?;
    let mut parts = payload.splitn(4, '.');
    let (Some(kind), Some(user), Some(expires), Some(stamp)) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TicketError::Malformed);
    };
    // A confirmation ticket is no reset ticket: the purpose is signed too.
    if kind != purpose.as_str() {
        return Err(TicketError::Forged);
    }
    let expires_ms: u64 = expires.parse().map_err(|_| TicketError::Malformed)?;
    if now_ms >= expires_ms {
        return Err(TicketError::Expired);
    }
    Ok(Ticket { user: user.to_owned(), stamp: stamp.to_owned() })
}

/// HMAC-SHA256 of `data` under `key` (also the CSRF tokens').
pub fn sign(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = mac(key);
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_ticket_verifies_for_its_purpose_until_it_expires() {
        let ticket = issue(KEY, Purpose::Reset, "u1", "abc", 1_000);
        assert_eq!(verify(KEY, Purpose::Reset, &ticket, 999), Ok(Ticket { user: "u1".into(), stamp: "abc".into() }));
        assert_eq!(verify(KEY, Purpose::Reset, &ticket, 1_000), Err(TicketError::Expired));
        assert_eq!(verify(KEY, Purpose::Confirm, &ticket, 0), Err(TicketError::Forged));
        assert_eq!(verify(b"another key", Purpose::Reset, &ticket, 0), Err(TicketError::Forged));
    }

    #[test]
    fn tampered_tickets_are_refused() {
        let ticket = issue(KEY, Purpose::Confirm, "u1", "", 1_000);
        let (_, signature) = ticket.split_once('.').unwrap();
        let forged = format!("{}.{signature}", URL_SAFE_NO_PAD.encode("confirm.u2.1000."));
        assert_eq!(verify(KEY, Purpose::Confirm, &forged, 0), Err(TicketError::Forged));
        let later = format!("{}.{signature}", URL_SAFE_NO_PAD.encode("confirm.u1.99999."));
        assert_eq!(verify(KEY, Purpose::Confirm, &later, 0), Err(TicketError::Forged));
        for bad in ["", "x", "!!.!!", "YQ.YQ"] {
            assert!(verify(KEY, Purpose::Confirm, bad, 0).is_err(), "{bad}");
        }
    }
}
