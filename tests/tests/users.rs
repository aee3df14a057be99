//! Users and groups run by the real gateway: policies read `context.User` (email, groups),
//! `context.Subscription` and `context.Product` from the config directory's `users/`, `groups/`,
//! products and subscriptions; keys of a blocked (or pending) owner get APIM's invalid-key 401,
//! and a reload that blocks an owner refuses its keys from then on.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::path::Path;

use portcullis_tests::http;
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins};

const INVALID_KEY: &str = r#"{ "statusCode": 401, "message": "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription." }"#;

/// Every value a policy reads about the caller, as request headers the echo backend returns.
const POLICY: &str = r#"<policies>
  <inbound>
    <base />
    <set-header name="X-User-Email" exists-action="override"><value>@(context.User?.Email ?? "none")</value></set-header>
    <set-header name="X-User-Groups" exists-action="override"><value>@(context.User == null ? "none" : string.Join(",", context.User.Groups.Select(g => g.Name)))</value></set-header>
    <set-header name="X-Partner" exists-action="override"><value>@(context.User != null &amp;&amp; context.User.Groups.Any(g => g.Id == "partners") ? "yes" : "no")</value></set-header>
    <set-header name="X-Subscription" exists-action="override"><value>@(context.Subscription?.Name ?? "none")</value></set-header>
    <set-header name="X-Key-Slot" exists-action="override"><value>@(context.Subscription == null ? "none" : context.Subscription.Key == context.Subscription.PrimaryKey ? "primary" : "secondary")</value></set-header>
    <set-header name="X-Product" exists-action="override"><value>@(context.Product == null ? "none" : context.Product.Name + " limit " + context.Product.SubscriptionLimit + " " + context.Product.State)</value></set-header>
  </inbound>
</policies>"#;

const ADA: &str =
    "email = \"ada@example.test\"\nfirst-name = \"Ada\"\nlast-name = \"Lovelace\"\ngroups = [\"partners\"]\n";

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The quickstart (its `demo` subscription has no owner), plus users ada (a partner) and bob
/// (blocked), and subscriptions to product gold owned by each.
fn config() -> TempDir {
    let dir = TempDir::new("config");
    let root = dir.path();
    copy_tree(&bins::repo_root().join("examples/quickstart"), root).unwrap();
    write(root, "apis/echo/policy.xml", POLICY);
    write(root, "groups/partners.toml", "name = \"Partners\"\n");
    write(root, "users/ada.toml", ADA);
    write(
        root,
        "users/bob.toml",
        "email = \"bob@example.test\"\nfirst-name = \"Bob\"\nlast-name = \"B\"\nstate = \"blocked\"\n",
    );
    write(
        root,
        "users/cy.toml",
        "email = \"cy@example.test\"\nfirst-name = \"Cy\"\nlast-name = \"C\"\nstate = \"pending\"\n",
    );
    write(root, "products/gold/product.toml", "name = \"Gold\"\napis = [\"echo\"]\nsubscriptions-limit = 3\n");
    for (id, owner) in [("ada-gold", "ada"), ("bob-gold", "bob"), ("cy-gold", "cy")] {
        write(
            root,
            &format!("subscriptions/{id}.toml"),
            &format!(
                "name = \"{owner} on gold\"\nscope = \"/products/gold\"\nowner = \"{owner}\"\n\
                 primary-key = \"{id}-primary\"\nsecondary-key = \"{id}-secondary\"\n"
            ),
        );
    }
    dir
}

portcullis_tests::on_both_io_backends!(policies_read_the_caller_and_owner_states_gate_keys);

fn policies_read_the_caller_and_owner_states_gate_keys(io: &str) {
    let config = config();
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let get = |key: &str| http::get(gateway.addr, "/echo/hello", &[("Ocp-Apim-Subscription-Key", key)]).unwrap();

    // Ada's secondary key, through product gold: her email and groups, the subscription, the product.
    let ada = get("ada-gold-secondary");
    assert_eq!(ada.status, 200, "{}", ada.text());
    let headers = &ada.json()["headers"];
    assert_eq!(headers["x-user-email"][0], "ada@example.test");
    assert_eq!(headers["x-user-groups"][0], "Developers,Partners");
    assert_eq!(headers["x-partner"][0], "yes");
    assert_eq!(headers["x-subscription"][0], "ada on gold");
    assert_eq!(headers["x-key-slot"][0], "secondary");
    assert_eq!(headers["x-product"][0], "Gold limit 3 Published");

    // The quickstart's subscription has no owner and is scoped to the API: no user, no product.
    let demo = get(gateway.demo_key.as_deref().expect("demo key"));
    assert_eq!(demo.status, 200, "{}", demo.text());
    let headers = &demo.json()["headers"];
    assert_eq!(headers["x-user-email"][0], "none");
    assert_eq!(headers["x-partner"][0], "no");
    assert_eq!(headers["x-subscription"][0], "Demo subscription");
    assert_eq!(headers["x-key-slot"][0], "primary");
    assert_eq!(headers["x-product"][0], "none");

    // A blocked or pending owner's keys open nothing: APIM's invalid-key answer.
    for key in ["bob-gold-primary", "cy-gold-secondary"] {
        let refused = get(key);
        assert_eq!((refused.status, refused.text().as_str()), (401, INVALID_KEY), "{key}");
    }

    // Blocking Ada takes effect with the reload; the subscription itself stays active.
    write(config.path(), "users/ada.toml", &format!("{ADA}state = \"blocked\"\n"));
    let output = gateway.ctl(&["reload"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let refused = get("ada-gold-primary");
    assert_eq!((refused.status, refused.text().as_str()), (401, INVALID_KEY));
    // Secrets never reach the log.
    assert!(!gateway.log().contains("ada-gold-secondary"), "{}", gateway.log());
}
