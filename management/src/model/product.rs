//! Products and subscriptions (management-reference §1.3, §1.4).

use serde::{Deserialize, Serialize};

use super::Extra;

/// `properties` of `/products/{productId}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductProperties {
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<String>,
    /// Default true: a product without keys is an "open" product.
    #[serde(default = "true_default")]
    pub subscription_required: bool,
    #[serde(default)]
    pub approval_required: bool,
    /// Per user; `None` = unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions_limit: Option<u32>,
    #[serde(default)]
    pub state: ProductState,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Only published products are offered in the portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ProductState {
    #[default]
    NotPublished,
    Published,
}

/// `properties` of `/subscriptions/{sid}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionProperties {
    /// `/products/{pid}`, `/apis/{apiId}` or `/apis` (APIM writes full ARM ids; the tail counts).
    pub scope: String,
    /// `/users/{uid}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    #[serde(default)]
    pub display_name: String,
    /// A subscription created without a state is `submitted` (APIM).
    #[serde(default)]
    pub state: SubscriptionState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_comment: Option<String>,
    /// Secret: generated when absent, never returned by a GET (`listSecrets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_tracing: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_date: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl SubscriptionProperties {
    /// The scope relative to the service: `/apis`, `/apis/{id}` or `/products/{id}`, whether it was
    /// written so or as a full ARM id (`/subscriptions/.../service/{svc}/products/{id}`).
    pub fn relative_scope(&self) -> &str {
        relative_to_service(&self.scope)
    }

    /// The owner's user id.
    pub fn owner(&self) -> Option<&str> {
        self.owner_id.as_deref().map(relative_to_service).and_then(|owner| owner.strip_prefix("/users/"))
    }
}

/// Subscription states; only `active` keys pass the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionState {
    #[default]
    Submitted,
    Active,
    Suspended,
    Rejected,
    Cancelled,
    Expired,
}

impl SubscriptionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionState::Submitted => "submitted",
            SubscriptionState::Active => "active",
            SubscriptionState::Suspended => "suspended",
            SubscriptionState::Rejected => "rejected",
            SubscriptionState::Cancelled => "cancelled",
            SubscriptionState::Expired => "expired",
        }
    }

    /// Whether APIM lets a subscription go from `self` to `next` (the transitions the publisher
    /// portal and the developer portal offer: approve/reject a submitted one, suspend/reactivate,
    /// cancel, expire).
    pub fn can_become(self, next: SubscriptionState) -> bool {
        use SubscriptionState::*;
        self == next
            || matches!(
                (self, next),
                (Submitted, Active | Rejected | Cancelled)
                    | (Active, Suspended | Cancelled | Expired)
                    | (Suspended, Active | Cancelled | Expired)
                    | (Expired, Active)
                    | (Rejected, Submitted)
            )
    }
}

/// The part of an ARM id after `/providers/Microsoft.ApiManagement/service/{name}`, or `id`.
pub fn relative_to_service(id: &str) -> &str {
    const SERVICE: &str = "/providers/Microsoft.ApiManagement/service/";
    match id.find(SERVICE) {
        Some(at) => {
            let rest = &id[at + SERVICE.len()..];
            rest.find('/').map_or("", |slash| &rest[slash..])
        }
        None => id,
    }
}

fn true_default() -> bool {
    true
}
