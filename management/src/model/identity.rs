//! Users and groups (management-reference §1.5, §1.6).

use serde::{Deserialize, Serialize};

use super::Extra;

/// `properties` of `/users/{userId}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserProperties {
    pub email: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub state: UserState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_date: Option<String>,
    /// Write-only: the portal's sign-in password, stored as its argon2id hash (one written in clear
    /// is hashed on write); never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A user's state: only `active` users sign in and call APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserState {
    #[default]
    Active,
    Blocked,
    Pending,
    Deleted,
}

impl UserState {
    pub fn as_str(self) -> &'static str {
        match self {
            UserState::Active => "active",
            UserState::Blocked => "blocked",
            UserState::Pending => "pending",
            UserState::Deleted => "deleted",
        }
    }
}

/// `properties` of `/groups/{groupId}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupProperties {
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Read-only: the three system groups.
    #[serde(default)]
    pub built_in: bool,
    #[serde(rename = "type", default)]
    pub group_type: GroupType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `custom` groups are made by publishers; `system` ones are built in; `external` come from an
/// identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupType {
    #[default]
    Custom,
    System,
    External,
}
