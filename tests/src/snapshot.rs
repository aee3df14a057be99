//! Configurations for the data plane started alone ([`crate::dataplane`]): built in code instead of
//! compiled by control, and written where the data plane reads its last good snapshot at start.

use std::net::SocketAddr;
use std::path::Path;

use portcullis_contract::key_index::{KeyEntry, KeyIndex, KeySlot};
use portcullis_contract::model::{
    Api, BackendUrl, Config, DEFAULT_SUBSCRIPTION_KEY_HEADER, DEFAULT_SUBSCRIPTION_KEY_QUERY, Operation, Policies,
    Scheme, Subscription, SubscriptionScope, SubscriptionState,
};
use portcullis_contract::program::Program;

/// The key of the active subscription in [`two_apis`].
pub const KEY: &str = "0123456789abcdef0123456789abcdef";
/// The key of the suspended subscription in [`two_apis`].
pub const SUSPENDED_KEY: &str = "suspended-suspended-suspended-00";

/// API `echo` at `echo_path` (key required, backend base path `/api`) and API `open` at `open`
/// (no key, no base path), both forwarding to `backend`; an active subscription ([`KEY`]) and a
/// suspended one ([`SUSPENDED_KEY`]).
pub fn two_apis(backend: SocketAddr, echo_path: &str) -> Config {
    let api = |id: &str, path: &str, base_path: &str, required: bool| Api {
        id: id.into(),
        name: id.into(),
        path: path.into(),
        backend_id: None,
        backend: BackendUrl {
            scheme: Scheme::Http,
            host: backend.ip().to_string(),
            port: backend.port(),
            base_path: base_path.into(),
            authority: backend.to_string(),
        },
        subscription_required: required,
        subscription_key_header: DEFAULT_SUBSCRIPTION_KEY_HEADER.into(),
        subscription_key_query: DEFAULT_SUBSCRIPTION_KEY_QUERY.into(),
        preserve_host: false,
        version_set: None,
        version: String::new(),
        revision: "1".into(),
        revision_of: None,
        online: true,
        description: String::new(),
        revision_description: String::new(),
        // Program 0 (nothing) for every section but the backend's, program 1 (forward-request).
        operations: vec![Operation::catch_all(Policies { backend: 1, ..Policies::all(0) })],
    };
    let subscription = |id: &str, state| Subscription::new(id, id, SubscriptionScope::AllApis, state);
    let entries = vec![
        KeyEntry { key: KEY.into(), subscription: 0, slot: KeySlot::Primary },
        KeyEntry { key: SUSPENDED_KEY.into(), subscription: 1, slot: KeySlot::Primary },
    ];
    Config {
        apis: vec![api("echo", echo_path, "/api", true), api("open", "open", "", false)],
        subscriptions: vec![
            subscription("active", SubscriptionState::Active),
            subscription("suspended", SubscriptionState::Suspended),
        ],
        key_index: KeyIndex::build([3, 4], entries).expect("the test keys index"),
        programs: vec![Program::empty(), Program::forward_only()],
        ..Config::empty("test")
    }
}

/// Encodes `config` as generation `generation` and writes it as `data_dir`'s last good snapshot,
/// which the data plane serves from when it starts.
pub fn write_last_good(data_dir: &Path, generation: u64, config: &Config) {
    let bytes = portcullis_contract::snapshot::encode(generation, config).expect("encode the snapshot");
    let path = portcullis_contract::layout::DataDir::new(data_dir).last_good_snapshot();
    std::fs::create_dir_all(path.parent().expect("the snapshot's directory")).expect("create snapshots/");
    std::fs::write(path, bytes).expect("write the last good snapshot");
}
