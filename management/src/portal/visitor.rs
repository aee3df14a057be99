//! Who is asking: the signed-in member behind the session cookie (if any), the groups whose
//! products they see, and the CSRF token their forms must carry.
//!
//! CSRF tokens are HMACs under the store's signing key: of the session for a signed-in visitor,
//! of a random `portcullis_csrf` cookie for an anonymous one (sign-up, sign-in, reset). A
//! cross-site form can send the cookies but cannot read them, so it cannot compute the token.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use serde_json::Value;
use subtle::ConstantTimeEq as _;

use super::App;
use super::sessions::{hex, random_hex};
use crate::model::UserState;
use crate::resource::Kind;
use crate::service::State;

/// The session cookie (HttpOnly, SameSite=Lax, Secure over TLS).
pub(super) const SESSION_COOKIE: &str = "portcullis_session";
/// The anonymous visitor's CSRF cookie.
pub(super) const CSRF_COOKIE: &str = "portcullis_csrf";
/// The built-in groups (management-reference §1.6).
pub(super) const GUESTS: &str = "guests";
pub(super) const DEVELOPERS: &str = "developers";
pub(super) const ADMINISTRATORS: &str = "administrators";

/// A signed-in user.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Member {
    pub(super) id: String,
    pub(super) email: String,
    pub(super) first_name: String,
    pub(super) administrator: bool,
}

/// The visitor of one request.
#[derive(Debug, Clone)]
pub(super) struct Visitor {
    pub(super) member: Option<Member>,
    /// The session's hash (signed in).
    pub(super) session: Option<String>,
    /// The anonymous CSRF cookie's value.
    anonymous: Option<String>,
    /// A CSRF cookie to set (first visit).
    new_cookie: Option<String>,
    /// The groups whose products this visitor sees.
    pub(super) groups: Vec<String>,
}

impl Visitor {
    /// Reads the cookies of `headers`: a session of an active user signs the visitor in; a session
    /// of a user who is no longer active is ended.
    pub(super) async fn of(app: &App, headers: &HeaderMap) -> Self {
        let now = super::now_ms();
        let session = cookie(headers, SESSION_COOKIE).and_then(|secret| match app.sessions.find(secret, now) {
            Ok(session) => session,
            Err(error) => {
                tracing::error!("the portal cannot read its sessions: {error}");
                None
            }
        });
        let mut visitor =
            Visitor { member: None, session: None, anonymous: None, new_cookie: None, groups: Vec::new() };
        if let Some(session) = session {
            let service = app.service.lock().await;
            match member(service.state(), &session.user) {
                Some(member) => {
                    visitor.groups = groups_of(service.state(), &member.id);
                    visitor.member = Some(member);
                    visitor.session = Some(session.hash);
                }
                // Blocked, deleted or still pending: the session ends here.
                None => {
                    let _ = app.sessions.end(&session.hash);
                }
            }
        }
        if visitor.member.is_none() {
            visitor.groups = vec![GUESTS.to_owned()];
            match cookie(headers, CSRF_COOKIE).filter(|value| value.len() == 32) {
                Some(value) => visitor.anonymous = Some(value.to_owned()),
                None => {
                    let value = random_hex(16).unwrap_or_default();
                    visitor.anonymous = Some(value.clone());
                    visitor.new_cookie = Some(value);
                }
            }
        }
        visitor
    }

    /// A visitor with no session and no cookie (the page after an account is closed).
    pub(super) fn anonymous() -> Self {
        Visitor { member: None, session: None, anonymous: None, new_cookie: None, groups: vec![GUESTS.to_owned()] }
    }

    /// The token this visitor's forms carry.
    pub(super) fn csrf_token(&self, key: &[u8]) -> String {
        let binding = match (&self.session, &self.anonymous) {
            (Some(session), _) => format!("csrf\nsession\n{session}"),
            (None, Some(anonymous)) => format!("csrf\nanonymous\n{anonymous}"),
            (None, None) => return String::new(),
        };
        hex(&super::ticket::sign(key, binding.as_bytes()))
    }

    /// Whether `token` is this visitor's (constant time). A visitor who had no CSRF cookie has
    /// no valid token yet.
    pub(super) fn csrf_ok(&self, key: &[u8], token: Option<&str>) -> bool {
        let Some(token) = token else { return false };
        if self.new_cookie.is_some() {
            return false;
        }
        let expected = self.csrf_token(key);
        !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(token.as_bytes()))
    }

    /// Sets the anonymous CSRF cookie on `response` when this is the visitor's first request.
    pub(super) fn finish(&self, mut response: Response, secure: bool) -> Response {
        if let Some(value) = &self.new_cookie
            && let Ok(cookie) = HeaderValue::from_str(&set_cookie(CSRF_COOKIE, value, secure, None))
        {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
    }

    pub(super) fn sees_everything(&self) -> bool {
        self.member.as_ref().is_some_and(|member| member.administrator)
    }

    /// The template's view of the visitor.
    pub(super) fn view(&self, key: &[u8]) -> Value {
        serde_json::json!({"member": self.member, "csrf": self.csrf_token(key)})
    }
}

/// The active user `id`, as a member.
pub(super) fn member(state: &State, id: &str) -> Option<Member> {
    let user = state.get(&format!("/users/{id}"))?;
    let properties: crate::model::UserProperties = serde_json::from_value(user.properties.clone()).ok()?;
    if properties.state != UserState::Active {
        return None;
    }
    let administrator = state.get(&format!("/groups/{ADMINISTRATORS}/users/{id}")).is_some();
    Some(Member { id: id.to_owned(), email: properties.email, first_name: properties.first_name, administrator })
}

/// The groups of user `id`: developers (every signed-up user), and those that list them.
fn groups_of(state: &State, id: &str) -> Vec<String> {
    let mut groups = vec![DEVELOPERS.to_owned()];
    for link in state.of_kind(Kind::GroupUser) {
        let mut segments = link.path.segments();
        if let (Some(_), Some(group), Some(_), Some(user)) =
            (segments.next(), segments.next(), segments.next(), segments.next())
            && user == id
            && !groups.iter().any(|g| g == group)
        {
            groups.push(group.to_owned());
        }
    }
    groups
}

/// The value of cookie `name` in `headers`.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, path `/`, Secure over TLS; `max_age_s` `Some(0)`
/// deletes it, `None` makes a session cookie.
pub(super) fn set_cookie(name: &str, value: &str, secure: bool, max_age_s: Option<u64>) -> String {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if secure {
        cookie.push_str("; Secure");
    }
    if let Some(max_age) = max_age_s {
        cookie.push_str(&format!("; Max-Age={max_age}"));
    }
    cookie
}
