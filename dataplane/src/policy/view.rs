//! What the proxy lends one run of a program: borrowed, rebuilt for every run.
//!
//! Nothing here outlives the run: the proxy takes the connection buffer while it relays bodies
//! and across awaits, so whatever must persist lives in [`crate::policy::RequestState`].

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use portcullis_contract::model::{Api, Deployment, Group, Operation, Product, Subscription, User};

use crate::http::request::RequestHead;
use crate::http::response::ResponseHead;
use crate::policy::concurrency::ConcurrencyLimits;
use crate::policy::limits::RateLimits;
use crate::policy::load::Programs;

/// One URL-template parameter the operation matched (`context.Request.MatchedParameters`).
#[derive(Debug, Clone, Copy)]
pub struct MatchedParam<'a> {
    /// The template's name for it (`id` in `/users/{id}`).
    pub name: &'a str,
    /// Its value in the request path, percent-decoded.
    pub value: &'a str,
}

/// The backend's response, for the backend (after `forward-request`), outbound and on-error sections.
#[derive(Debug, Clone, Copy)]
pub struct ResponseView<'a> {
    pub head: &'a ResponseHead,
    /// The buffer `head` was parsed from.
    pub buf: &'a [u8],
    /// The whole body, when the proxy buffered it (programs that read it ask for it: see
    /// [`crate::policy::load::BodyUse`]).
    pub body: Option<&'a [u8]>,
}

/// Everything a run reads that the proxy owns.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The snapshot's programs (literals kept in request state are resolved against them).
    pub programs: &'a Programs,
    /// The client's request head, and the buffer it was parsed from.
    pub request: &'a RequestHead,
    pub request_buf: &'a [u8],
    /// Offset in the request target where the path after the API prefix starts.
    pub remainder_start: usize,
    /// The client's address (`context.Request.IpAddress`, `ip-filter`).
    pub peer: IpAddr,
    /// The client's certificate when it presented one over mTLS and it was verified against
    /// `[tls] client-ca-file` (`context.Request.Certificate`).
    pub client_certificate: Option<&'a crate::tls::ClientCertificate>,
    /// What client certificates are judged against, and the named certificates.
    pub client_trust: &'a crate::tls::ClientTrust,
    pub api: &'a Api,
    pub operation: &'a Operation,
    /// The subscription the key opened, if any, and the key it was opened with.
    pub subscription: Option<&'a Subscription>,
    pub subscription_key: Option<&'a str>,
    /// The subscription's owner and keys, and the groups table (`context.User`).
    pub caller: Caller<'a>,
    /// The product the request comes through (`context.Product`), if any.
    pub product: Option<&'a Product>,
    pub deployment: &'a Deployment,
    pub matched: &'a [MatchedParam<'a>],
    /// `context.RequestId`.
    pub request_id: u128,
    /// When the request arrived (`context.Timestamp`).
    pub timestamp: DateTime<Utc>,
    /// Now (`DateTime.UtcNow`, `context.Elapsed`): the VM never reads a clock itself.
    pub now: DateTime<Utc>,
    /// The whole request body, when the proxy buffered it.
    pub request_body: Option<&'a [u8]>,
    /// The backend's response (backend after forwarding, outbound, on-error).
    pub response: Option<ResponseView<'a>>,
    /// `limit-concurrency` counters, shared by every worker.
    pub concurrency: &'a Arc<ConcurrencyLimits>,
    /// `rate-limit` / `quota` counters, shared by every worker.
    pub limits: &'a Arc<RateLimits>,
    /// `context.Tracing`.
    pub tracing: bool,
    /// The gateway's `traceparent`, which replaces the client's on the forwarded request: what
    /// `context.Request.Headers` gives for `traceparent` (unless a policy set it).
    pub traceparent: Option<&'a [u8]>,
}

/// Who the request's subscription says is calling, for `context.User` and
/// `context.Subscription.PrimaryKey`/`SecondaryKey`, and the snapshot's groups, which users and
/// products name by index. `Debug` never shows the keys.
#[derive(Clone, Copy, Default)]
pub struct Caller<'a> {
    /// The subscription's owner (`context.User`); `None` without a subscription or an owner.
    pub user: Option<&'a User>,
    /// The subscription's keys: secrets.
    pub primary_key: Option<&'a str>,
    pub secondary_key: Option<&'a str>,
    /// The snapshot's groups (`Config::groups`).
    pub groups: &'a [Group],
}

impl std::fmt::Debug for Caller<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("user", &self.user.map(|user| &user.id))
            .field("keys", &self.primary_key.map(|_| "<redacted>"))
            .field("groups", &self.groups.len())
            .finish()
    }
}
