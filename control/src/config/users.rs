//! Users and groups (`users/`, `groups/`): their checks across files, and the tables
//! `context.User`, `context.Product.Groups` and the subscription-key check read.
//!
//! As in APIM, three groups exist without files (`administrators`, `developers`, `guests`), every
//! user is in `developers`, and the administrator (user `1`) exists without a file, in
//! `administrators`; a `users/1.toml` describes that administrator.

use std::collections::{BTreeSet, HashMap};

use portcullis_contract::model::{Group, User, UserState};
use toml::Spanned;

use super::files::{GroupFile, GroupKind, UserFile, UserStateName};
use super::load::{Item, Parsed};
use super::{Diagnostics, SourceFile};

/// The built-in groups (APIM's system groups): id and display name, in table order.
pub const BUILT_IN_GROUPS: [(&str, &str); 3] =
    [(ADMINISTRATORS, "Administrators"), (DEVELOPERS, "Developers"), ("guests", "Guests")];
/// The group of the administrator.
pub const ADMINISTRATORS: &str = "administrators";
/// The group every registered user is in.
pub const DEVELOPERS: &str = "developers";
/// APIM's built-in administrator user.
pub const ADMINISTRATOR_ID: &str = "1";
/// The administrator's email unless `users/1.toml` gives one (`.invalid` never resolves).
pub const ADMINISTRATOR_EMAIL_DEFAULT: &str = "administrator@portcullis.invalid";
/// The administrator's first name unless `users/1.toml` gives one (APIM's).
pub const ADMINISTRATOR_FIRST_NAME_DEFAULT: &str = "Administrator";

/// APIM's limits on user and group properties (management-reference §1.5–1.6), in characters.
pub const EMAIL_CHARS_MAX: usize = 254;
pub const PERSON_NAME_CHARS_MAX: usize = 100;
pub const GROUP_NAME_CHARS_MAX: usize = 300;
pub const DESCRIPTION_CHARS_MAX: usize = 1000;

/// The users and groups tables of a config, with their ids.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    pub(crate) users: Vec<User>,
    pub(crate) groups: Vec<Group>,
    user_index: HashMap<String, u32>,
    group_index: HashMap<String, u32>,
}

impl Directory {
    /// Every user id with its index in [`Directory::users`].
    pub(crate) fn user_ids(&self) -> impl Iterator<Item = (&str, u32)> {
        self.user_index.iter().map(|(id, index)| (id.as_str(), *index))
    }

    pub(crate) fn group(&self, id: &str) -> Option<u32> {
        self.group_index.get(id).copied()
    }
}

/// Checks and compiles `groups/` and `users/`; every problem is a diagnostic at its position.
pub(crate) fn compile(parsed: &Parsed, diagnostics: &mut Diagnostics) -> Directory {
    let mut directory = Directory::default();
    for (id, name) in BUILT_IN_GROUPS {
        add_group(&mut directory, id, name);
    }
    for item in &parsed.groups {
        if let Some(name) = group(item, diagnostics) {
            add_group(&mut directory, &item.id, &name);
        }
    }
    let mut emails: HashMap<String, String> = HashMap::new();
    if !parsed.users.iter().any(|item| item.id == ADMINISTRATOR_ID) {
        emails.insert(ADMINISTRATOR_EMAIL_DEFAULT.to_owned(), ADMINISTRATOR_ID.to_owned());
        let administrators = directory.group(ADMINISTRATORS).into_iter().collect();
        add_user(&mut directory, administrator(administrators));
    }
    for item in &parsed.users {
        let user = user(item, parsed, &directory, &mut emails, diagnostics);
        add_user(&mut directory, user);
    }
    directory
}

fn add_group(directory: &mut Directory, id: &str, name: &str) {
    directory.group_index.insert(id.to_owned(), directory.groups.len() as u32);
    directory.groups.push(Group { id: id.to_owned(), name: name.to_owned() });
}

fn add_user(directory: &mut Directory, user: User) {
    directory.user_index.insert(user.id.clone(), directory.users.len() as u32);
    directory.users.push(user);
}

/// The built-in administrator, when no `users/1.toml` describes it.
fn administrator(groups: Vec<u32>) -> User {
    User {
        id: ADMINISTRATOR_ID.to_owned(),
        email: ADMINISTRATOR_EMAIL_DEFAULT.to_owned(),
        first_name: ADMINISTRATOR_FIRST_NAME_DEFAULT.to_owned(),
        last_name: String::new(),
        note: None,
        registration_unix_ms: None,
        state: UserState::Active,
        groups,
    }
}

/// One `groups/<id>.toml`: its display name, or `None` when it may not exist (a built-in id).
fn group(item: &Item<GroupFile>, diagnostics: &mut Diagnostics) -> Option<String> {
    let (source, file) = (&item.source, &item.file);
    if BUILT_IN_GROUPS.iter().any(|(id, _)| *id == item.id) {
        diagnostics.push(source.error_at_start(format!(
            "{:?} is a built-in group, which exists without a file: remove groups/{}.toml",
            item.id, item.id
        )));
        return None;
    }
    check_text(&file.name, 1, GROUP_NAME_CHARS_MAX, "a group name", source, diagnostics);
    if let Some(description) = &file.description {
        check_text(description, 0, DESCRIPTION_CHARS_MAX, "a description", source, diagnostics);
    }
    let external = file.kind.as_ref().is_some_and(|kind| *kind.get_ref() == GroupKind::External);
    match (&file.external_id, &file.kind) {
        (Some(id), _) if !external => {
            diagnostics.push(source.error(id.span(), "external-id is only for groups of type = \"external\""));
        }
        (None, Some(kind)) if external => {
            diagnostics.push(source.error(
                kind.span(),
                "an external group needs external-id (its id at the identity provider, e.g. \"aad://<tenant>/groups/<object-id>\")",
            ));
        }
        _ => {}
    }
    Some(file.name.get_ref().clone())
}

/// One `users/<id>.toml`, checked; `emails` holds the lower-cased emails seen so far.
fn user(
    item: &Item<UserFile>,
    parsed: &Parsed,
    directory: &Directory,
    emails: &mut HashMap<String, String>,
    diagnostics: &mut Diagnostics,
) -> User {
    let (source, file) = (&item.source, &item.file);
    let email = file.email.get_ref();
    if !check_text(&file.email, 1, EMAIL_CHARS_MAX, "an email", source, diagnostics) {
    } else if !is_email(email) {
        diagnostics.push(source.error(file.email.span(), format!("{email:?} is not an email address")));
    } else if let Some(other) = emails.insert(email.to_lowercase(), item.id.clone()) {
        diagnostics.push(source.error(
            file.email.span(),
            format!("user {other:?} already has this email (emails are unique, whatever their case)"),
        ));
    }
    check_text(&file.first_name, 1, PERSON_NAME_CHARS_MAX, "a first name", source, diagnostics);
    check_text(&file.last_name, 1, PERSON_NAME_CHARS_MAX, "a last name", source, diagnostics);
    // APIM puts registered users in Developers; its administrator is in Administrators.
    let implicit = if item.id == ADMINISTRATOR_ID { ADMINISTRATORS } else { DEVELOPERS };
    let mut groups: Vec<u32> = directory.group(implicit).into_iter().collect();
    for index in group_refs(&file.groups, source, directory, &parsed.broken_group_ids, diagnostics) {
        if !groups.contains(&index) {
            groups.push(index);
        }
    }
    User {
        id: item.id.clone(),
        email: email.clone(),
        first_name: file.first_name.get_ref().clone(),
        last_name: file.last_name.get_ref().clone(),
        note: file.note.clone(),
        registration_unix_ms: date_ms(file.registration_date.as_ref(), source, diagnostics),
        state: match file.state {
            UserStateName::Active => UserState::Active,
            UserStateName::Blocked => UserState::Blocked,
            UserStateName::Pending => UserState::Pending,
            UserStateName::Deleted => UserState::Deleted,
        },
        groups,
    }
}

/// The indices of the groups `ids` names, in order; an unknown id or one listed twice is an
/// error at its position (a group whose own file is broken is reported there, not here).
pub(crate) fn group_refs(
    ids: &[Spanned<String>],
    source: &SourceFile,
    directory: &Directory,
    broken: &BTreeSet<String>,
    diagnostics: &mut Diagnostics,
) -> Vec<u32> {
    let mut indices = Vec::new();
    for id in ids {
        match directory.group(id.get_ref()) {
            Some(index) if indices.contains(&index) => {
                diagnostics.push(source.error(id.span(), format!("group {:?} is listed twice", id.get_ref())));
            }
            Some(index) => indices.push(index),
            None if broken.contains(id.get_ref()) => {}
            None => diagnostics.push(source.error(
                id.span(),
                format!(
                    "unknown group {:?}: use a built-in group (administrators, developers, guests) or add groups/{}.toml",
                    id.get_ref(),
                    id.get_ref()
                ),
            )),
        }
    }
    indices
}

/// An RFC 3339 date (`2024-05-01T12:00:00Z`) in milliseconds since the Unix epoch; anything else
/// is an error at its position.
pub(crate) fn date_ms(
    value: Option<&Spanned<String>>,
    source: &SourceFile,
    diagnostics: &mut Diagnostics,
) -> Option<i64> {
    let value = value?;
    match chrono::DateTime::parse_from_rfc3339(value.get_ref()) {
        Ok(date) => Some(date.timestamp_millis()),
        Err(error) => {
            diagnostics.push(
                source.error(
                    value.span(),
                    format!("not an RFC 3339 date ({error}): write e.g. \"2024-05-01T12:00:00Z\""),
                ),
            );
            None
        }
    }
}

/// Checks that `value` has `min..=max` characters (after trimming, for the minimum); reports it
/// as `what` otherwise. Returns whether it passed.
pub(crate) fn check_text(
    value: &Spanned<String>,
    min: usize,
    max: usize,
    what: &str,
    source: &SourceFile,
    diagnostics: &mut Diagnostics,
) -> bool {
    let text = value.get_ref();
    let chars = text.chars().count();
    let ok = text.trim().chars().count() >= min && chars <= max;
    if !ok {
        let message = if min == 0 {
            format!("{what} has at most {max} characters ({chars} here)")
        } else {
            format!("{what} has {min} to {max} characters, not only spaces ({chars} here)")
        };
        diagnostics.push(source.error(value.span(), message));
    }
    ok
}

/// A plausible email: one `@` between a non-empty local part and a domain, no spaces.
fn is_email(text: &str) -> bool {
    match text.rsplit_once('@') {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty() && !text.chars().any(char::is_whitespace),
        None => false,
    }
}
