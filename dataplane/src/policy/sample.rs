//! A sample API and operation (`echo`, `GET /users/{id}`) that the VM's unit tests, its
//! allocation test and its benchmarks run programs against. Not used by the gateway itself.

use portcullis_contract::model::{Api, BackendUrl, Operation, Policies, Scheme};

/// The `echo` API: backend `http://backend:8081/api`, no subscription required.
pub fn api() -> Api {
    Api {
        id: "echo".into(),
        name: "Echo".into(),
        path: "echo".into(),
        backend_id: None,
        backend: BackendUrl {
            scheme: Scheme::Http,
            host: "backend".into(),
            port: 8081,
            base_path: "/api".into(),
            authority: "backend:8081".into(),
        },
        subscription_required: false,
        subscription_key_header: "Ocp-Apim-Subscription-Key".into(),
        subscription_key_query: "subscription-key".into(),
        preserve_host: false,
        version_set: None,
        version: String::new(),
        revision: "1".into(),
        revision_of: None,
        online: true,
        description: String::new(),
        revision_description: String::new(),
        operations: Vec::new(),
    }
}

/// Its `get-user` operation, `GET /users/{id}`, running `policies`.
pub fn operation(policies: Policies) -> Operation {
    Operation {
        id: "get-user".into(),
        name: "Get user".into(),
        method: "GET".into(),
        url_template: "/users/{id}".into(),
        policies,
    }
}
