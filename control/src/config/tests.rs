//! Tests of loading and compiling config directories: every error kind, with its file:line:col.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use portcullis_contract::key_index::KeySlot;
use portcullis_contract::model::{Scheme, SubscriptionScope, SubscriptionState};

use super::*;

/// A config directory under the system temp dir, removed on drop.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "portcullis-config-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, relative: &str, text: &str) -> &Self {
        let path = self.0.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    /// A valid API `echo` and subscription `demo`, for tests to break one piece of.
    fn valid() -> Self {
        let config = Self::new();
        config
            .write(
                "apis/echo/api.toml",
                "name = \"Echo\"\npath = \"echo\"\nbackend-url = \"http://127.0.0.1:9000/api\"\n",
            )
            .write(
                "subscriptions/demo.toml",
                "name = \"Demo\"\nscope = \"/apis/echo\"\nprimary-key = \"k1\"\nsecondary-key = \"k2\"\n",
            );
        config
    }

    fn load(&self) -> Result<Config, Diagnostics> {
        load_seeded(&self.0, &NamedValues::default(), [1, 2])
    }

    /// The single error of a failing load, as `(message, "relative/file:line:col")`.
    fn error(&self) -> (String, String) {
        let errors = self.errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.into_iter().next().unwrap()
    }

    fn errors(&self) -> Vec<(String, String)> {
        let diagnostics = self.load().expect_err("the load should fail");
        diagnostics
            .items
            .iter()
            .map(|d| {
                let file = d.file.strip_prefix(&self.0).unwrap_or(&d.file).display().to_string();
                let at = d.location.map_or(file.clone(), |l| format!("{file}:{}:{}", l.line, l.column));
                (d.message.clone(), at)
            })
            .collect()
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn quickstart_values() -> NamedValues {
    let mut values = NamedValues::default();
    values.insert(ECHO_BACKEND_URL, NamedValue { value: "http://127.0.0.1:4567".into(), secret: false });
    values
}

#[test]
fn the_quickstart_example_compiles() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let config = load_seeded(&dir, &quickstart_values(), [3, 4]).unwrap();
    let api = &config.apis[0];
    assert_eq!((api.id.as_str(), api.name.as_str(), api.path.as_str()), ("echo", "Echo API", "echo"));
    assert_eq!(api.backend.authority, "127.0.0.1:4567");
    assert_eq!(api.backend.base_path, "/api");
    assert!(api.subscription_required);
    assert_eq!(api.subscription_key_header, "Ocp-Apim-Subscription-Key");
    assert_eq!(api.subscription_key_query, "subscription-key");
    let demo = &config.subscriptions[0];
    assert_eq!(
        (demo.id.as_str(), demo.scope, demo.state),
        ("demo", SubscriptionScope::Api(0), SubscriptionState::Active)
    );
    assert_eq!(config.key_index.entries().len(), 2);
    assert!(load(&dir, &NamedValues::default()).is_err(), "echo-backend-url must be provided");
}

#[test]
fn compiles_paths_urls_scopes_limits_and_keys() {
    let config = TempConfig::valid();
    config
        .write("apis/orders/api.toml", "name = \"Orders\"\npath = \"/v1/orders/\"\nbackend-url = \"http://{{host}}/\"\nsubscription-required = false\n[subscription-key]\nheader = \"X-Key\"\nquery = \"key\"\n")
        .write("apis/root/api.toml", "name = \"Root\"\npath = \"\"\nbackend-url = \"http://[::1]:81\"\n")
        .write("named-values.toml", "[[named-value]]\nname = \"host\"\nvalue = \"orders.internal:8080\"\n")
        .write("subscriptions/all.toml", "name = \"All\"\nscope = \"/apis\"\nstate = \"suspended\"\nprimary-key = \"a1\"\nsecondary-key = \"a2\"\n")
        .write("gateway.toml", "[limits]\nbackend-connect-timeout-ms = 250\n")
        .write("README.md", "ignored")
        .write(".editor.swp", "ignored")
        .write("apis/.hidden", "ignored")
        .write("subscriptions/notes.md", "ignored");
    let compiled = config.load().unwrap();
    let paths: Vec<_> = compiled.apis.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(paths, ["echo", "v1/orders", ""]);
    let orders = &compiled.apis[1];
    assert_eq!(orders.backend.scheme, Scheme::Http);
    assert_eq!((orders.backend.host.as_str(), orders.backend.port), ("orders.internal", 8080));
    assert_eq!((orders.backend.base_path.as_str(), orders.backend.authority.as_str()), ("", "orders.internal:8080"));
    assert!(!orders.subscription_required);
    assert_eq!((orders.subscription_key_header.as_str(), orders.subscription_key_query.as_str()), ("X-Key", "key"));
    assert_eq!(compiled.apis[2].backend.authority, "[::1]:81");
    assert_eq!(compiled.subscriptions[0].scope, SubscriptionScope::AllApis);
    assert_eq!(compiled.subscriptions[0].state, SubscriptionState::Suspended);
    assert_eq!(compiled.subscriptions[1].scope, SubscriptionScope::Api(0));
    assert_eq!(compiled.limits.backend_connect_timeout_ms, 250);
    assert_eq!(compiled.limits.keepalive_idle_timeout_ms, Limits::default().keepalive_idle_timeout_ms);
    let found = compiled.key_index.lookup(b"k2").unwrap();
    assert_eq!((found.subscription, found.slot), (1, KeySlot::Secondary));
    assert!(compiled.key_index.lookup(b"nope").is_none());
    assert!(compiled.source.ends_with(config.0.file_name().unwrap().to_str().unwrap()));
}

use portcullis_contract::model::Limits;

#[test]
fn a_config_value_wins_over_a_provided_one() {
    let config = TempConfig::new();
    config
        .write("apis/echo/api.toml", "name = \"E\"\npath = \"e\"\nbackend-url = \"{{echo-backend-url}}\"\n")
        .write("named-values.toml", "[[named-value]]\nname = \"echo-backend-url\"\nvalue = \"http://mine:1\"\n");
    let compiled = load_seeded(&config.0, &quickstart_values(), [0, 0]).unwrap();
    assert_eq!(compiled.apis[0].backend.authority, "mine:1");
}

#[test]
fn unknown_keys_syntax_errors_and_missing_fields() {
    let config = TempConfig::valid();
    config.write("apis/echo/api.toml", "name = \"E\"\npath = \"e\"\nbackend-url = \"http://a\"\nbackend_url = 1\n");
    let (message, at) = config.error();
    assert!(message.contains("unknown field `backend_url`"), "{message}");
    assert_eq!(at, "apis/echo/api.toml:4:1");

    config.write(
        "apis/echo/api.toml",
        "name = \"E\"\npath = \"e\"\nbackend-url = \"http://a\"\n[subscription-key]\nhead = \"x\"\n",
    );
    assert_eq!(config.error().1, "apis/echo/api.toml:5:1");

    config.write("apis/echo/api.toml", "name = \"E\"\npath = = \"e\"\n");
    assert_eq!(config.error().1, "apis/echo/api.toml:2:8");

    config.write("apis/echo/api.toml", "name = \"E\"\npath = \"e\"\n");
    let (message, at) = config.error();
    assert!(message.contains("an API needs backend-url"), "{message}");
    assert_eq!(at, "apis/echo/api.toml:1:1");
}

#[test]
fn duplicate_paths_bad_paths_bad_urls_and_https() {
    let config = TempConfig::valid();
    config.write("apis/other/api.toml", "name = \"O\"\npath = \"/echo/\"\nbackend-url = \"http://a\"\n");
    let (message, at) = config.error();
    assert!(message.contains("already used by API \"echo\""), "{message}");
    assert_eq!(at, "apis/other/api.toml:2:8");

    config.write("apis/other/api.toml", "name = \"O\"\npath = \"a//b\"\nbackend-url = \"http://a\"\n");
    assert!(config.error().0.starts_with("bad API path"));

    config.write("apis/other/api.toml", "name = \"O\"\npath = \"o\"\nbackend-url = \"http://a:99999\"\n");
    let (message, at) = config.error();
    assert!(message.contains("port \"99999\""), "{message}");
    assert_eq!(at, "apis/other/api.toml:3:15");

    // https backends are served (docs/tls.md), on port 443 by default.
    config.write("apis/other/api.toml", "name = \"O\"\npath = \"o\"\nbackend-url = \"https://a\"\n");
    let compiled = config.load().unwrap();
    let other = compiled.apis.iter().find(|api| api.id == "other").unwrap();
    assert_eq!((other.backend.scheme, other.backend.port), (Scheme::Https, 443));

    config.write("apis/other/api.toml", "name = \" \"\npath = \"o\"\nbackend-url = \"http://a\"\n[subscription-key]\nheader = \"a b\"\nquery = \"a&b\"\n");
    let errors = config.errors();
    let places: Vec<_> = errors.iter().map(|(_, at)| at.as_str()).collect();
    assert_eq!(places, ["apis/other/api.toml:1:8", "apis/other/api.toml:5:10", "apis/other/api.toml:6:9"]);
}

#[test]
fn named_value_errors_point_inside_the_string() {
    let config = TempConfig::valid();
    config.write("apis/echo/api.toml", "name = \"E\"\npath = \"e\"\nbackend-url = \"http://{{nope}}/x\"\n");
    let (message, at) = config.error();
    assert!(message.starts_with("unknown named value \"nope\""), "{message}");
    assert_eq!(at, "apis/echo/api.toml:3:23");

    config
        .write("apis/echo/api.toml", "name = \"E\"\npath = \"e\"\nbackend-url = \"http://{{token}}:x\"\n")
        .write(
            "named-values.toml",
            "[[named-value]]\nname = \"token\"\nvalue = \"hunter2\"\nsecret = true\n[[named-value]]\nname = \"token\"\nvalue = \"b\"\n[[named-value]]\nname = \"bad name\"\nvalue = \"c\"\n",
        );
    let errors = config.errors();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert_eq!(errors[0], ("named value \"token\" is defined twice".into(), "named-values.toml:6:8".into()));
    assert_eq!(errors[1].1, "named-values.toml:9:8");
    assert_eq!(errors[2].1, "apis/echo/api.toml:3:15");
    assert!(!errors[2].0.contains("hunter2"), "a secret leaked: {}", errors[2].0);
    let rendered = config.load().unwrap_err().to_string();
    assert!(!rendered.contains("hunter2"), "{rendered}");
}

#[test]
fn scope_state_and_key_errors() {
    let config = TempConfig::valid();
    config.write(
        "subscriptions/demo.toml",
        "name = \"D\"\n\nscope = \"/apis/ech\"\nprimary-key = \"k1\"\nsecondary-key = \"k2\"\n",
    );
    assert_eq!(
        config.error(),
        ("unknown API \"ech\" in subscription scope".into(), "subscriptions/demo.toml:3:9".into())
    );
    let rendered = config.load().unwrap_err().to_string();
    assert!(rendered.contains(" 3 | scope = \"/apis/ech\"\n   |         ^^^^^^^^^^^\n"), "{rendered}");

    config.write(
        "subscriptions/demo.toml",
        "name = \"D\"\nscope = \"/products/p\"\nprimary-key = \"k1\"\nsecondary-key = \"k2\"\n",
    );
    assert_eq!(config.error().0, "unknown product \"p\" in subscription scope");
    config.write(
        "subscriptions/demo.toml",
        "name = \"D\"\nscope = \"apis\"\nprimary-key = \"k1\"\nsecondary-key = \"k2\"\n",
    );
    assert!(config.error().0.starts_with("bad scope"));

    config.write(
        "subscriptions/demo.toml",
        "name = \"D\"\nscope = \"/apis\"\nstate = \"paused\"\nprimary-key = \"k1\"\nsecondary-key = \"k2\"\n",
    );
    let (message, at) = config.error();
    assert!(message.contains("unknown variant `paused`"), "{message}");
    assert_eq!(at, "subscriptions/demo.toml:3:9");

    config
        .write(
            "subscriptions/demo.toml",
            "name = \"D\"\nscope = \"/apis\"\nprimary-key = \"k 1\"\nsecondary-key = \"k2\"\n",
        )
        .write(
            "subscriptions/twin.toml",
            "name = \"T\"\nscope = \"/apis\"\nprimary-key = \"k3\"\nsecondary-key = \"k2\"\n",
        );
    let errors = config.errors();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].0.starts_with("a subscription key is 1 to 256"));
    assert_eq!(errors[0].1, "subscriptions/demo.toml:3:15");
    assert_eq!(
        errors[1],
        (
            "this key is already used by subscription \"demo\"; every key must be unique".into(),
            "subscriptions/twin.toml:4:17".into()
        )
    );
}

#[test]
fn a_broken_api_does_not_also_report_its_scope() {
    let config = TempConfig::valid();
    config.write("apis/echo/api.toml", "name = \"E\"\n");
    let errors = config.errors();
    let places: Vec<_> = errors.iter().map(|(_, at)| at.as_str()).collect();
    assert_eq!(places, ["apis/echo/api.toml:1:1", "apis/echo/api.toml:1:1"], "no path, no backend: {errors:?}");
}

#[test]
fn stray_files_missing_files_bad_ids_and_limits() {
    let config = TempConfig::valid();
    config
        .write("policy.xml", "<policies/>")
        .write("apis/echo/policy.xml", "<policies/>")
        .write("apis/echo/README.txt", "x")
        .write("apis/notes.txt", "x")
        .write("apis/empty/.keep", "")
        .write("apis/-bad/api.toml", "")
        .write("subscriptions/demo.json", "{}")
        .write("gateway.toml", "[limits]\nkeepalive-idle-timeout-ms = 0\nrequest-header-timeout-ms = -1\n");
    let errors = config.errors();
    let places: Vec<_> = errors.iter().map(|(_, at)| at.as_str()).collect();
    assert_eq!(
        places,
        [
            "apis/-bad",
            "apis/echo/README.txt",
            "apis/empty",
            "apis/notes.txt",
            "gateway.toml:3:29",
            "subscriptions/demo.json",
        ],
        "{errors:?}"
    );
    assert!(errors[2].0.contains("has no api.toml"));
    std::fs::write(config.0.join("gateway.toml"), "[limits]\nkeepalive-idle-timeout-ms = 0\n").unwrap();
    std::fs::remove_file(config.0.join("apis/echo/README.txt")).unwrap();
    assert!(
        config.errors().contains(&(
            "keepalive-idle-timeout-ms must be between 1 and 4294967295".into(),
            "gateway.toml:2:29".into()
        ))
    );
}

#[test]
fn a_missing_directory_and_non_utf8_files() {
    let missing = load(Path::new("/nonexistent/portcullis-config"), &NamedValues::default()).unwrap_err();
    assert!(missing.items[0].message.contains("does not exist"));
    let config = TempConfig::valid();
    std::fs::write(config.0.join("gateway.toml"), [0xff, 0xfe]).unwrap();
    assert_eq!(config.error(), ("the file is not UTF-8 text".into(), "gateway.toml".into()));
    std::fs::write(config.0.join("gateway.toml"), vec![b'#'; load::FILE_BYTES_MAX as usize + 1]).unwrap();
    assert!(config.error().0.contains("larger than"));
}

#[test]
fn policies_compile_with_the_config() {
    let config = TempConfig::valid();
    // Documents that only inherit compile to the default programs and are accepted.
    config.write("policy.xml", "<policies><inbound><base/></inbound><backend><base/></backend></policies>");
    config.write("apis/echo/policy.xml", "<policies><inbound><base/></inbound></policies>");
    assert!(load(&config.0, &NamedValues::default()).is_ok());
    // A broken policy is refused with file:line:col.
    config.write(
        "apis/echo/policy.xml",
        "<policies>\n<inbound>\n  <xsl-transform><xsl:stylesheet /></xsl-transform>\n</inbound></policies>",
    );
    let errors = config.errors();
    assert!(errors[0].0.contains("unsupported policy <xsl-transform>"), "{errors:?}");
    assert_eq!(errors[0].1, "apis/echo/policy.xml:3:4");
    // A valid policy compiles into the operation's programs.
    config.write(
        "apis/echo/policy.xml",
        "<policies><inbound><set-header name=\"x\"><value>1</value></set-header></inbound></policies>",
    );
    let compiled = load(&config.0, &NamedValues::default()).unwrap();
    let inbound = compiled.apis[0].operations[0].policies.inbound as usize;
    assert!(
        compiled.programs[inbound]
            .ops
            .iter()
            .any(|op| matches!(op, portcullis_contract::program::Op::SetHeaderConst { .. }))
    );
}

#[test]
fn operation_responses_give_mock_response_its_examples() {
    use portcullis_contract::program::{Const, Op};
    let config = TempConfig::valid();
    config.write(
        "apis/echo/operations/item.toml",
        "method = \"GET\"\nurl-template = \"/item\"\n\n[[response]]\nstatus = 200\ncontent-type = \"Application/XML; charset=utf-8\"\nexample = \"<item/>\"\n\n[[response]]\nstatus = 200\nexample = '{}'\n",
    );
    config.write(
        "apis/echo/operations/item.xml",
        "<policies><inbound><mock-response content-type=\"application/json\" /></inbound></policies>",
    );
    let compiled = load(&config.0, &NamedValues::default()).unwrap();
    let operation = &compiled.apis[0].operations[0];
    let inbound = &compiled.programs[operation.policies.inbound as usize];
    let mock = inbound.ops.iter().find_map(|op| match op {
        Op::MockResponse { status, content_type, example } => Some((*status, *content_type, *example)),
        _ => None,
    });
    let (status, content_type, example) = mock.expect("a mock-response op");
    let text = |index: u32| match &inbound.consts[index as usize] {
        Const::Str(text) => text.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!((status, text(content_type), example.map(text)), (200, "application/json".into(), Some("{}".into())));
    // Without content-type, the first documented media type (normalised) and its example.
    config.write("apis/echo/operations/item.xml", "<policies><inbound><mock-response /></inbound></policies>");
    let compiled = load(&config.0, &NamedValues::default()).unwrap();
    let inbound = &compiled.programs[compiled.apis[0].operations[0].policies.inbound as usize];
    assert!(inbound.consts.contains(&Const::Str("application/xml".into())), "{:?}", inbound.consts);
    assert!(inbound.consts.contains(&Const::Str("<item/>".into())), "{:?}", inbound.consts);

    // Bad responses are refused where they are written.
    config.write(
        "apis/echo/operations/item.toml",
        "method = \"GET\"\nurl-template = \"/item\"\n[[response]]\nstatus = 99\n[[response]]\nstatus = 200\ncontent-type = \"json\"\n[[response]]\nstatus = 201\n[[response]]\nstatus = 201\n",
    );
    let errors = config.errors();
    let messages: Vec<&str> = errors.iter().map(|(message, _)| message.as_str()).collect();
    assert!(messages.iter().any(|m| m.contains("between 100 and 599")), "{errors:?}");
    assert!(messages.iter().any(|m| m.contains("\"json\" is not a media type")), "{errors:?}");
    assert!(messages.iter().any(|m| m.contains("a second response 201 application/json")), "{errors:?}");
    assert!(errors.iter().all(|(_, at)| at.starts_with("apis/echo/operations/item.toml:")), "{errors:?}");
}

#[test]
fn a_global_ip_filter_every_operation_runs_fills_the_xdp_lists() {
    use portcullis_contract::xdp::IpPrefix;
    let config = TempConfig::valid();
    config.write(
        "policy.xml",
        r#"<policies><inbound>
  <ip-filter action="forbid"><address>10.9.9.9</address><address-range from="192.168.0.0" to="192.168.0.255"/></ip-filter>
  <ip-filter action="allow"><address-range from="10.0.0.0" to="10.255.255.255"/></ip-filter>
  <choose><when condition="@(true)"><ip-filter action="forbid"><address>10.1.1.1</address></ip-filter></when></choose>
</inbound></policies>"#,
    );
    let compiled = load(&config.0, &NamedValues::default()).unwrap();
    let prefix = |text: &str| IpPrefix::parse(text).unwrap();
    assert_eq!(compiled.xdp.deny, [prefix("10.9.9.9/32"), prefix("192.168.0.0/24")]);
    assert_eq!(compiled.xdp.allow, [prefix("10.0.0.0/8")]);

    // An API whose inbound section drops <base/> does not run them: XDP must not drop for it.
    config.write(
        "apis/echo/policy.xml",
        "<policies><inbound><set-header name=\"x\"><value>1</value></set-header></inbound></policies>",
    );
    let compiled = load(&config.0, &NamedValues::default()).unwrap();
    assert!(compiled.xdp.deny.is_empty() && compiled.xdp.allow.is_empty(), "{:?}", compiled.xdp);
}

#[test]
fn products_scope_subscriptions_and_carry_policies() {
    use portcullis_contract::model::SubscriptionScope;
    let config = TempConfig::valid();
    config.write("products/gold/product.toml", "name = \"Gold\"\napis = [\"echo\"]\nsubscription-required = false\n");
    config.write(
        "products/gold/policy.xml",
        "<policies><inbound><base/><set-header name=\"x\"><value>1</value></set-header></inbound></policies>",
    );
    config.write(
        "subscriptions/gold.toml",
        "name = \"G\"\nscope = \"/products/gold\"\nprimary-key = \"g1\"\nsecondary-key = \"g2\"\n",
    );
    let compiled = load(&config.0, &NamedValues::default()).unwrap();
    assert_eq!(compiled.products.len(), 1);
    assert_eq!(compiled.products[0].apis, [0]);
    assert!(!compiled.products[0].subscription_required);
    let gold = compiled.subscriptions.iter().find(|s| s.id == "gold").unwrap();
    assert_eq!(gold.scope, SubscriptionScope::Product(0));
    // The product's sections differ from the operation's own.
    assert_eq!(compiled.product_policies.len(), 1);
    let entry = compiled.product_policies[0];
    assert_ne!(entry.policies.inbound, compiled.apis[0].operations[0].policies.inbound);

    config.write("products/gold/product.toml", "name = \"Gold\"\napis = [\"ech\"]\n");
    let errors = config.errors();
    assert!(
        errors
            .iter()
            .any(|(m, at)| m.contains("unknown API \"ech\" in product") && at == "products/gold/product.toml:2:9"),
        "{errors:?}"
    );
    config.write("products/gold/product.toml", "name = \"Gold\"\napis = [\"echo\"]\n");
    config.write(
        "subscriptions/gold.toml",
        "name = \"G\"\nscope = \"/products/silver\"\nprimary-key = \"g1\"\nsecondary-key = \"g2\"\n",
    );
    assert!(config.errors().iter().any(|(m, _)| m.contains("unknown product \"silver\"")), "{:?}", config.errors());
}

mod backends;
mod jwt;
mod users;
mod versions;
