//! Version sets and revisions: `version-sets/<id>.toml`, the versioning keys of `api.toml` and
//! `apis/<id>;rev=<n>/`, each error at its position.

use portcullis_contract::model::VersioningScheme;

use super::*;

const BACKEND: &str = "backend-url = \"http://127.0.0.1:9000\"\n";

/// The valid config with a query-versioned set `orders` (Original, v1, v2) and revision 2 of
/// `echo` (offline revision 3 as well).
fn versioned() -> TempConfig {
    let config = TempConfig::valid();
    config
        .write("version-sets/orders.toml", "name = \"Orders\"\nscheme = \"query\"\ndescription = \"All orders\"\n")
        .write("version-sets/by-path.toml", "name = \"By path\"\nscheme = \"segment\"\n")
        .write("version-sets/by-header.toml", "name = \"H\"\nscheme = \"header\"\nheader-name = \"X-Version\"\n")
        .write("apis/orders/api.toml", &format!("name = \"Orders\"\npath = \"orders\"\nversion-set = \"orders\"\n{BACKEND}"))
        .write(
            "apis/orders-v1/api.toml",
            &format!("name = \"Orders v1\"\npath = \"orders\"\nversion-set = \"orders\"\nversion = \"v1\"\n{BACKEND}"),
        )
        .write(
            "apis/orders-v2/api.toml",
            &format!("name = \"Orders v2\"\npath = \"orders\"\nversion-set = \"orders\"\nversion = \"v2\"\nrevision = \"4\"\n{BACKEND}"),
        )
        .write("apis/echo;rev=2/api.toml", &format!("revision-description = \"faster\"\n{BACKEND}"))
        .write("apis/echo;rev=2/policy.xml", "<policies><inbound><base /></inbound></policies>")
        .write("apis/echo;rev=3/api.toml", &format!("online = false\nname = \"Echo\"\n{BACKEND}"))
        .write("products/p/product.toml", "name = \"P\"\napis = [\"echo\"]\n");
    config
}

#[test]
fn compiles_version_sets_and_revisions() {
    let compiled = versioned().load().unwrap();
    let sets: Vec<_> = compiled.version_sets.iter().map(|set| (set.id.as_str(), &set.scheme)).collect();
    assert_eq!(
        sets,
        [
            ("by-header", &VersioningScheme::Header("X-Version".into())),
            ("by-path", &VersioningScheme::Segment),
            ("orders", &VersioningScheme::Query("api-version".into())),
        ]
    );
    assert_eq!(compiled.version_sets[2].description, "All orders");
    let apis: Vec<_> = compiled
        .apis
        .iter()
        .map(|api| {
            (api.id.as_str(), api.version_set, api.version.as_str(), api.revision.as_str(), api.revision_of, api.online)
        })
        .collect();
    // Current revisions in directory order, then the others.
    assert_eq!(
        apis,
        [
            ("echo", None, "", "1", None, true),
            ("orders", Some(2), "", "1", None, true),
            ("orders-v1", Some(2), "v1", "1", None, true),
            ("orders-v2", Some(2), "v2", "4", None, true),
            ("echo", None, "", "2", Some(0), true),
            ("echo", None, "", "3", Some(0), false),
        ]
    );
    let revision = &compiled.apis[4];
    assert_eq!((revision.name.as_str(), revision.path.as_str()), ("Echo", "echo"), "inherited");
    assert_eq!(revision.revision_description, "faster");
    assert!(revision.subscription_required);
    assert_eq!(compiled.products[0].apis, [0, 4, 5], "a product holds every revision of its APIs");
    assert_eq!(compiled.subscriptions[0].scope, SubscriptionScope::Api(0));
}

#[test]
fn version_set_errors() {
    let config = versioned();
    config.write("version-sets/orders.toml", "name = \"Orders\"\nscheme = \"query\"\nquery_name = \"v\"\n");
    let (message, at) = config.error();
    assert!(message.contains("unknown field `query_name`"), "{message}");
    assert_eq!(at, "version-sets/orders.toml:3:1");

    config.write("version-sets/orders.toml", "name = \"Orders\"\nscheme = \"path\"\n");
    let (message, at) = config.error();
    assert!(message.contains("unknown variant `path`"), "{message}");
    assert_eq!(at, "version-sets/orders.toml:2:10");

    config.write("version-sets/orders.toml", "name = \"Orders\"\n");
    assert!(config.error().0.contains("missing field `scheme`"));

    config.write(
        "version-sets/orders.toml",
        "name = \"Orders\"\nscheme = \"segment\"\nquery-name = \"v\"\nheader-name = \"h\"\n",
    );
    let errors = config.errors();
    assert_eq!(
        errors,
        [
            ("query-name is only for scheme = \"query\"".to_owned(), "version-sets/orders.toml:3:14".to_owned()),
            ("header-name is only for scheme = \"header\"".to_owned(), "version-sets/orders.toml:4:15".to_owned()),
        ]
    );

    config.write("version-sets/orders.toml", "name = \" \"\nscheme = \"query\"\nquery-name = \"a&b\"\n");
    let places: Vec<_> = config.errors().into_iter().map(|(_, at)| at).collect();
    assert_eq!(places, ["version-sets/orders.toml:1:8", "version-sets/orders.toml:3:14"]);

    config.write("version-sets/orders.toml", "name = \"Orders\"\nscheme = \"header\"\nheader-name = \"a b\"\n");
    let (message, at) = config.error();
    assert_eq!((message.as_str(), at.as_str()), ("not a valid HTTP header name", "version-sets/orders.toml:3:15"));

    config.write("version-sets/Bad Id.toml", "name = \"X\"\nscheme = \"segment\"\n");
    config.write("version-sets/orders.toml", "name = \"Orders\"\nscheme = \"query\"\n");
    assert!(config.error().0.contains("\"Bad Id\" is not a valid id"));
}

#[test]
fn versioning_key_errors() {
    let config = versioned();
    let write_v1 = |extra: &str| {
        config.write("apis/orders-v1/api.toml", &format!("name = \"Orders v1\"\npath = \"orders\"\n{extra}{BACKEND}"));
    };
    write_v1("version-set = \"nope\"\nversion = \"v1\"\n");
    let (message, at) = config.error();
    assert!(message.contains("unknown version set \"nope\" (add version-sets/nope.toml)"), "{message}");
    assert_eq!(at, "apis/orders-v1/api.toml:3:15");

    write_v1("version = \"v1\"\n");
    let (message, at) = config.error();
    assert!(message.starts_with("version needs version-set"), "{message}");
    assert_eq!(at, "apis/orders-v1/api.toml:3:11");

    write_v1("version-set = \"orders\"\nversion = \"v 1\"\n");
    let (message, at) = config.error();
    assert!(message.contains("\"v 1\" is not a version"), "{message}");
    assert_eq!(at, "apis/orders-v1/api.toml:4:11");

    write_v1("version-set = \"orders\"\nversion = \"v2\"\n");
    let (message, at) = config.error();
    assert_eq!(message, "version \"v2\" of version set \"orders\" is already API \"orders-v1\"");
    assert_eq!(at, "apis/orders-v2/api.toml:4:11");

    write_v1("version-set = \"orders\"\n");
    let (message, at) = config.error();
    assert_eq!(message, "API \"orders\" is already the Original version (no version) of version set \"orders\"");
    assert_eq!(at, "apis/orders-v1/api.toml:3:15");

    write_v1("version-set = \"orders\"\nversion = \"v1\"\nrevision = \"01\"\n");
    let (message, at) = config.error();
    assert!(message.contains("\"01\" is not a revision number"), "{message}");
    assert_eq!(at, "apis/orders-v1/api.toml:5:12");

    write_v1("version-set = \"orders\"\nversion = \"v1\"\nonline = false\n");
    let (message, at) = config.error();
    assert!(message.starts_with("online is only for a non-current revision"), "{message}");
    assert_eq!(at, "apis/orders-v1/api.toml:5:10");

    config.write(
        "apis/orders-v1/api.toml",
        &format!("name = \"Orders v1\"\npath = \"orders/v1\"\nversion-set = \"orders\"\nversion = \"v1\"\n{BACKEND}"),
    );
    let (message, at) = config.error();
    assert_eq!(message, "the versions of version set \"orders\" share one path: API \"orders\" has path \"orders\"");
    assert_eq!(at, "apis/orders-v1/api.toml:2:8");

    // Two sets on one path, and an unversioned API on a set's path.
    config.write(
        "apis/orders-v1/api.toml",
        &format!("name = \"Orders v1\"\npath = \"orders\"\nversion-set = \"by-path\"\nversion = \"v1\"\n{BACKEND}"),
    );
    let (message, at) = config.error();
    assert!(message.contains("already used by API \"orders\"; APIs share a path only as versions"), "{message}");
    assert_eq!(at, "apis/orders-v1/api.toml:2:8");

    config.write("apis/orders-v1/api.toml", &format!("name = \"Orders v1\"\npath = \"orders\"\n{BACKEND}"));
    assert_eq!(config.error().1, "apis/orders-v1/api.toml:2:8");

    config.write("apis/orders-v1/api.toml", &format!("version = \"v1\"\n{BACKEND}"));
    let places: Vec<_> =
        config.errors().into_iter().map(|(message, at)| (message.split(':').next().unwrap().to_owned(), at)).collect();
    assert_eq!(
        places,
        [
            ("an API needs a name".to_owned(), "apis/orders-v1/api.toml:1:1".to_owned()),
            (
                "version needs version-set = \"<id of version-sets/<id>.toml>\"".to_owned(),
                "apis/orders-v1/api.toml:1:11".to_owned()
            ),
            ("an API needs a path".to_owned(), "apis/orders-v1/api.toml:1:1".to_owned()),
        ]
    );
}

#[test]
fn a_revision_may_not_change_what_only_the_current_revision_changes() {
    let config = versioned();
    let cases = [
        ("name = \"Other\"\n", "name is \"Echo\" in the current revision (apis/echo/api.toml)", "1:8"),
        ("path = \"other\"\n", "path is \"echo\"", "1:8"),
        ("description = \"d\"\n", "description is \"\"", "1:15"),
        ("subscription-required = false\n", "subscription-required is true", "1:25"),
        ("version-set = \"orders\"\n", "version-set is absent", "1:15"),
        ("version = \"v1\"\n", "version is \"\"", "1:11"),
    ];
    for (key, says, at) in cases {
        config.write("apis/echo;rev=2/api.toml", &format!("{key}{BACKEND}"));
        let (message, place) = config.error();
        assert!(message.starts_with("Can't change property for non-current revision: "), "{message}");
        assert!(message.contains(says), "{message}");
        assert_eq!(place, format!("apis/echo;rev=2/api.toml:{at}"));
    }
    // Equal values may be written out.
    config.write(
        "apis/echo;rev=2/api.toml",
        &format!("name = \"Echo\"\npath = \"/echo/\"\nsubscription-required = true\nrevision = \"2\"\n{BACKEND}"),
    );
    config.load().unwrap();

    config.write("apis/echo;rev=2/api.toml", &format!("revision = \"5\"\n{BACKEND}"));
    let (message, at) = config.error();
    assert!(message.starts_with("this revision's number is \"2\", from its directory name"), "{message}");
    assert_eq!(at, "apis/echo;rev=2/api.toml:1:12");

    config.write("apis/echo;rev=2/api.toml", "online = false\n");
    let (message, at) = config.error();
    assert!(message.contains("an API needs backend-url"), "a revision has its own backend: {message}");
    assert_eq!(at, "apis/echo;rev=2/api.toml:1:1");
}

#[test]
fn revision_directories_and_references() {
    let config = versioned();
    config.write("apis/echo;rev=1/api.toml", BACKEND);
    let (message, at) = config.error();
    assert!(message.starts_with("revision 1 is the current revision of API \"echo\""), "{message}");
    assert_eq!(at, "apis/echo;rev=1/api.toml:1:1");
    std::fs::remove_dir_all(config.0.join("apis/echo;rev=1")).unwrap();

    config.write("apis/gone;rev=2/api.toml", BACKEND);
    let (message, at) = config.error();
    assert_eq!(message, "revision 2 of an unknown API \"gone\": add its current revision, apis/gone/");
    assert_eq!(at, "apis/gone;rev=2/api.toml:1:1");
    std::fs::remove_dir_all(config.0.join("apis/gone;rev=2")).unwrap();

    for (name, says) in [
        ("echo;rev=02", "\"02\" is not a revision number"),
        ("echo;rev=", "\"\" is not a revision number"),
        ("e cho;rev=2", "\"e cho\" is not a valid id"),
        ("echo;v=2", "\"echo;v=2\" is not a valid id"),
    ] {
        config.write(&format!("apis/{name}/api.toml"), BACKEND);
        let (message, at) = config.error();
        assert!(message.contains(says), "{name}: {message}");
        assert_eq!(at, format!("apis/{name}"));
        std::fs::remove_dir_all(config.0.join("apis").join(name)).unwrap();
    }
    config.write("apis/echo;rev=4", "a file");
    assert!(config.error().0.starts_with("unexpected file \"echo;rev=4\""));
    std::fs::remove_file(config.0.join("apis/echo;rev=4")).unwrap();

    config.write(
        "subscriptions/demo.toml",
        "name = \"Demo\"\nscope = \"/apis/echo;rev=2\"\nprimary-key = \"k1\"\nsecondary-key = \"k2\"\n",
    );
    let (message, at) = config.error();
    assert_eq!(message, "a subscription to an API covers all its revisions: use scope = \"/apis/echo\"");
    assert_eq!(at, "subscriptions/demo.toml:2:9");

    config.write(
        "subscriptions/demo.toml",
        "name = \"Demo\"\nscope = \"/apis/echo\"\nprimary-key = \"k1\"\nsecondary-key = \"k2\"\n",
    );
    config.write("products/p/product.toml", "name = \"P\"\napis = [\"echo;rev=2\"]\n");
    let (message, at) = config.error();
    assert_eq!(message, "a product lists API ids, each with all its revisions: use \"echo\"");
    assert_eq!(at, "products/p/product.toml:2:9");
}
