//! Subscriptions: each one checked against the APIs, products and users it names, and the
//! subscription-key index built from their keys.
//!
//! A store holds far more subscriptions than anything else (issue 14's scale: 100,000 of 121,000
//! resources), and a new or changed subscription is the most common change. So the compile of a
//! store keeps what it made of each subscription ([`Patchable`]); a later change that touches only
//! subscriptions recompiles just those and reuses the rest of the last config, instead of
//! compiling the whole store again (`compile_change` in `config.rs`). Both ways run the same
//! per-subscription check, [`compile_one`], and a test holds them equal.

use std::collections::{BTreeMap, HashMap, HashSet};

use portcullis_contract::key_index::{KEY_BYTES_MAX, KeyEntry, KeyIndex, KeySlot};
use portcullis_contract::model::{Api, Config, Product, Subscription, SubscriptionScope, SubscriptionState};

use super::compile::ALL_APIS_SCOPE;
use super::files::{StateName, SubscriptionFile};
use super::load::{Item, Parsed, split_revision};
use super::users::Directory;
use super::{Diagnostics, SourceFile};

/// What a subscription may name, by id: its scope (an API's current revision, a product) and
/// its owner.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Refs {
    /// The current revision of each API (a subscription to an API covers all its revisions).
    apis: HashMap<String, u32>,
    /// Ids not reported as unknown when they are not in `apis`: every API with a file (the
    /// directory form of a revision is reported on its own) and those whose file is broken.
    quiet_apis: HashSet<String>,
    products: HashMap<String, u32>,
    /// Products whose file is broken (reported there).
    quiet_products: HashSet<String>,
    users: HashMap<String, u32>,
    /// Users whose file is broken (reported there).
    quiet_users: HashSet<String>,
}

impl Refs {
    pub(crate) fn new(parsed: &Parsed, apis: &[(Api, String)], products: &[Product], directory: &Directory) -> Self {
        let current = apis.iter().enumerate().filter(|(_, (api, _))| api.is_current());
        Refs {
            apis: current.map(|(index, (_, id))| (id.clone(), index as u32)).collect(),
            quiet_apis: parsed
                .apis
                .iter()
                .map(|item| item.id.clone())
                .chain(parsed.broken_api_ids.iter().cloned())
                .collect(),
            products: products.iter().enumerate().map(|(index, product)| (product.id.clone(), index as u32)).collect(),
            quiet_products: parsed.broken_product_ids.iter().cloned().collect(),
            users: directory.user_ids().map(|(id, index)| (id.to_owned(), index)).collect(),
            quiet_users: parsed.broken_user_ids.iter().cloned().collect(),
        }
    }
}

/// One compiled subscription and its two keys (primary, secondary), with the ids its indexes
/// came from (to resolve them again when a change moves the APIs, products or users).
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub(crate) subscription: Subscription,
    pub(crate) keys: [String; 2],
    scope: Named,
    owner: Option<String>,
}

/// What a scope names.
#[derive(Debug, Clone)]
enum Named {
    AllApis,
    Api(String),
    Product(String),
}

impl Compiled {
    /// This subscription with its scope and owner looked up in `refs`; `None` when one of them
    /// is gone (a compile of its file reports why).
    fn resolved(&self, refs: &Refs) -> Option<Compiled> {
        let scope = match &self.scope {
            Named::AllApis => SubscriptionScope::AllApis,
            Named::Api(id) => SubscriptionScope::Api(*refs.apis.get(id)?),
            Named::Product(id) => SubscriptionScope::Product(*refs.products.get(id)?),
        };
        let owner = match &self.owner {
            Some(id) => Some(*refs.users.get(id)?),
            None => None,
        };
        let mut resolved = self.clone();
        resolved.subscription.scope = scope;
        resolved.subscription.owner = owner;
        Some(resolved)
    }
}

/// Checks and compiles one subscription; `claim` records a key for this subscription and
/// answers the subscription that already holds it, if another one does.
pub(crate) fn compile_one<'a>(
    item: &'a Item<SubscriptionFile>,
    refs: &Refs,
    claim: &mut dyn FnMut(&'a str) -> Option<String>,
    diagnostics: &mut Diagnostics,
) -> Option<Compiled> {
    let before = diagnostics.len();
    let (source, file) = (&item.source, &item.file);
    if file.name.get_ref().trim().is_empty() {
        diagnostics.push(source.error(file.name.span(), "a subscription needs a name"));
    }
    let scope = scope(file, source, refs, diagnostics);
    for key in [&file.primary_key, &file.secondary_key] {
        let text = key.get_ref().as_str();
        if text.is_empty() || text.len() > KEY_BYTES_MAX || !text.bytes().all(|b| b.is_ascii_graphic()) {
            diagnostics.push(source.error(
                key.span(),
                format!("a subscription key is 1 to {KEY_BYTES_MAX} visible ASCII characters (no spaces)"),
            ));
        } else if let Some(owner) = claim(text) {
            diagnostics.push(source.error(
                key.span(),
                format!("this key is already used by subscription {owner:?}; every key must be unique"),
            ));
        }
    }
    let owner = file.owner.as_ref().and_then(|owner| {
        let found = refs.users.get(owner.get_ref()).copied();
        // A user whose own file is broken is reported there, not here.
        if found.is_none() && !refs.quiet_users.contains(owner.get_ref()) {
            let id = owner.get_ref();
            diagnostics.push(source.error(owner.span(), format!("unknown user {id:?} (add users/{id}.toml)")));
        }
        found
    });
    // The expiration date is audit only and the data plane never reads it: checked, not kept.
    let _ = super::users::date_ms(file.expiration_date.as_ref(), source, diagnostics);
    let created_unix_ms = super::users::date_ms(file.created_date.as_ref(), source, diagnostics);
    let start_unix_ms = super::users::date_ms(file.start_date.as_ref(), source, diagnostics);
    let end_unix_ms = super::users::date_ms(file.end_date.as_ref(), source, diagnostics);
    let scope = scope.filter(|_| diagnostics.len() == before)?;
    Some(Compiled {
        subscription: Subscription {
            id: item.id.clone(),
            name: file.name.get_ref().clone(),
            scope,
            state: state(file.state),
            owner,
            created_unix_ms,
            start_unix_ms,
            end_unix_ms,
            allow_tracing: file.allow_tracing,
        },
        keys: [file.primary_key.get_ref().clone(), file.secondary_key.get_ref().clone()],
        scope: match scope {
            SubscriptionScope::AllApis => Named::AllApis,
            SubscriptionScope::Api(_) => Named::Api(file.scope.get_ref()["/apis/".len()..].to_owned()),
            SubscriptionScope::Product(_) => Named::Product(file.scope.get_ref()["/products/".len()..].to_owned()),
        },
        owner: file.owner.as_ref().map(|owner| owner.get_ref().clone()),
    })
}

/// Compiles every subscription of `parsed` (in directory order, the order of the config's table).
pub(crate) fn compile_all(parsed: &Parsed, refs: &Refs, diagnostics: &mut Diagnostics) -> Vec<Compiled> {
    let mut owners: HashMap<&str, &str> = HashMap::with_capacity(parsed.subscriptions.len() * 2);
    let mut compiled = Vec::with_capacity(parsed.subscriptions.len());
    for item in &parsed.subscriptions {
        let mut claim = |key| owners.insert(key, item.id.as_str()).map(str::to_owned);
        compiled.extend(compile_one(item, refs, &mut claim, diagnostics));
    }
    compiled
}

/// The config's table and the key entries of `compiled` (subscription indexes in that order).
pub(crate) fn table<'a>(compiled: impl Iterator<Item = &'a Compiled>) -> (Vec<Subscription>, Vec<KeyEntry>) {
    let (lower, _) = compiled.size_hint();
    let mut subscriptions = Vec::with_capacity(lower);
    let mut keys = Vec::with_capacity(lower * 2);
    for (index, one) in compiled.enumerate() {
        let subscription = index as u32;
        let [primary, secondary] = &one.keys;
        keys.push(KeyEntry { key: primary.clone(), subscription, slot: KeySlot::Primary });
        keys.push(KeyEntry { key: secondary.clone(), subscription, slot: KeySlot::Secondary });
        subscriptions.push(one.subscription.clone());
    }
    (subscriptions, keys)
}

fn scope(
    file: &SubscriptionFile,
    source: &SourceFile,
    refs: &Refs,
    diagnostics: &mut Diagnostics,
) -> Option<SubscriptionScope> {
    let text = file.scope.get_ref().as_str();
    if text == ALL_APIS_SCOPE {
        return Some(SubscriptionScope::AllApis);
    }
    if let Some(id) = text.strip_prefix("/apis/") {
        if let Some(&index) = refs.apis.get(id) {
            return Some(SubscriptionScope::Api(index));
        }
        if let (base, Some(_)) = split_revision(id) {
            let message = format!("a subscription to an API covers all its revisions: use scope = \"/apis/{base}\"");
            diagnostics.push(source.error(file.scope.span(), message));
            return None;
        }
        // An API that exists but has errors of its own is reported there, not here.
        if !refs.quiet_apis.contains(id) {
            diagnostics.push(source.error(file.scope.span(), format!("unknown API {id:?} in subscription scope")));
        }
        return None;
    }
    if let Some(id) = text.strip_prefix("/products/") {
        if let Some(&index) = refs.products.get(id) {
            return Some(SubscriptionScope::Product(index));
        }
        if !refs.quiet_products.contains(id) {
            diagnostics.push(source.error(file.scope.span(), format!("unknown product {id:?} in subscription scope")));
        }
        return None;
    }
    let message = format!(
        "bad scope {text:?}: use \"/apis/<api-id>\" for one API, \"/products/<product-id>\" for a product or \"/apis\" for all APIs"
    );
    diagnostics.push(source.error(file.scope.span(), message));
    None
}

fn state(name: StateName) -> SubscriptionState {
    match name {
        StateName::Active => SubscriptionState::Active,
        StateName::Suspended => SubscriptionState::Suspended,
        StateName::Submitted => SubscriptionState::Submitted,
        StateName::Rejected => SubscriptionState::Rejected,
        StateName::Cancelled => SubscriptionState::Cancelled,
        StateName::Expired => SubscriptionState::Expired,
    }
}

/// The file a subscription is declared by, the order of the config's table (`<id>.toml`).
pub(crate) fn file_key(id: &str) -> String {
    format!("{id}.toml")
}

/// What a successful compile of a store leaves for patching the next one: the config without
/// its subscriptions and key index, and each subscription as compiled, in table order.
#[derive(Debug)]
pub(crate) struct Patchable {
    /// `gateway.toml` as that compile read it: a patch applies only while it is unchanged.
    pub(crate) gateway_text: Option<String>,
    /// The config with an empty subscription table and key index.
    pub(crate) template: Config,
    pub(crate) refs: Refs,
    /// By [`file_key`].
    pub(crate) subscriptions: BTreeMap<String, Compiled>,
    /// Which subscription (id) holds each key.
    pub(crate) owners: HashMap<String, String>,
}

/// `config` without its subscriptions and key index (moved out and back: no subscription is copied).
pub(crate) fn template(config: &mut Config) -> Config {
    let table = std::mem::take(&mut config.subscriptions);
    let index = std::mem::take(&mut config.key_index);
    let template = config.clone();
    config.subscriptions = table;
    config.key_index = index;
    template
}

impl Patchable {
    /// Keeps `config` (as its [`template`]) and its subscriptions.
    pub(crate) fn new(gateway_text: Option<String>, config: &mut Config, refs: Refs, compiled: Vec<Compiled>) -> Self {
        let template = template(config);
        let mut owners = HashMap::with_capacity(compiled.len() * 2);
        let mut subscriptions = BTreeMap::new();
        for one in compiled {
            for key in &one.keys {
                owners.insert(key.clone(), one.subscription.id.clone());
            }
            subscriptions.insert(file_key(&one.subscription.id), one);
        }
        Patchable { gateway_text, template, refs, subscriptions, owners }
    }

    /// The config with the subscriptions of `changes` (by [`file_key`]: compiled, or `None` when
    /// removed) in place of those they replace.
    pub(crate) fn patched(
        &self,
        changes: &BTreeMap<String, Option<Compiled>>,
        seed: [u64; 2],
    ) -> Result<Config, portcullis_contract::key_index::KeyIndexError> {
        let merged = Merge::new(self.subscriptions.iter(), changes.iter());
        let (subscriptions, keys) = table(merged);
        let key_index = KeyIndex::build(seed, keys)?;
        Ok(Config { subscriptions, key_index, ..self.template.clone() })
    }

    /// The subscriptions of the last committed compile, their scopes and owners resolved in
    /// `refs` (a compile after a change that touched no subscription); `None` when one names
    /// something that is gone.
    pub(crate) fn resolved(&self, refs: &Refs) -> Option<Vec<Compiled>> {
        self.subscriptions.values().map(|one| one.resolved(refs)).collect()
    }

    /// Makes `changes` part of what later patches start from (once the change is committed).
    pub(crate) fn apply(&mut self, changes: BTreeMap<String, Option<Compiled>>) {
        for (file, change) in changes {
            if let Some(old) = self.subscriptions.remove(&file) {
                for key in &old.keys {
                    if self.owners.get(key) == Some(&old.subscription.id) {
                        self.owners.remove(key);
                    }
                }
            }
            if let Some(new) = change {
                for key in &new.keys {
                    self.owners.insert(key.clone(), new.subscription.id.clone());
                }
                self.subscriptions.insert(file, new);
            }
        }
    }
}

/// The kept subscriptions with changes merged in, in table order.
struct Merge<'a, K, C>
where
    K: Iterator<Item = (&'a String, &'a Compiled)>,
    C: Iterator<Item = (&'a String, &'a Option<Compiled>)>,
{
    kept: std::iter::Peekable<K>,
    changes: std::iter::Peekable<C>,
}

impl<'a, K, C> Merge<'a, K, C>
where
    K: Iterator<Item = (&'a String, &'a Compiled)>,
    C: Iterator<Item = (&'a String, &'a Option<Compiled>)>,
{
    fn new(kept: K, changes: C) -> Self {
        Merge { kept: kept.peekable(), changes: changes.peekable() }
    }
}

impl<'a, K, C> Iterator for Merge<'a, K, C>
where
    K: Iterator<Item = (&'a String, &'a Compiled)>,
    C: Iterator<Item = (&'a String, &'a Option<Compiled>)>,
{
    type Item = &'a Compiled;

    fn next(&mut self) -> Option<&'a Compiled> {
        loop {
            let order = match (self.kept.peek(), self.changes.peek()) {
                (None, None) => return None,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((kept, _)), Some((changed, _))) => kept.cmp(changed),
            };
            let (_, change) = match order {
                std::cmp::Ordering::Less => return self.kept.next().map(|(_, one)| one),
                // Replaced (or removed) by the change.
                std::cmp::Ordering::Equal => {
                    self.kept.next();
                    self.changes.next()?
                }
                std::cmp::Ordering::Greater => self.changes.next()?,
            };
            if let Some(one) = change {
                return Some(one);
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.kept.size_hint().0, None)
    }
}
