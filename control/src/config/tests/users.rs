//! `users/`, `groups/`, and what products and subscriptions say about them: each check with its
//! file:line:col.

use portcullis_contract::model::UserState;

use super::*;

const ADA: &str = "email = \"ada@example.test\"\nfirst-name = \"Ada\"\nlast-name = \"Lovelace\"\n";

/// The valid config with users ada (in partners) and bob, group partners and product gold.
fn with_users() -> TempConfig {
    let config = TempConfig::valid();
    config
        .write("users/ada.toml", &format!("{ADA}groups = [\"partners\"]\nregistration-date = \"2024-05-01T12:00:00Z\"\nnote = \"VIP\"\n"))
        .write("users/bob.toml", "email = \"bob@example.test\"\nfirst-name = \"Bob\"\nlast-name = \"B\"\nstate = \"blocked\"\n")
        .write("groups/partners.toml", "name = \"Partners\"\ndescription = \"Our partners\"\n")
        .write("groups/aad.toml", "name = \"AAD\"\ntype = \"external\"\nexternal-id = \"aad://t.onmicrosoft.com/groups/1\"\n")
        .write(
            "products/gold/product.toml",
            "name = \"Gold\"\napis = [\"echo\"]\ndescription = \"Best\"\nterms = \"Be nice\"\napproval-required = true\nsubscriptions-limit = 2\ngroups = [\"developers\", \"partners\"]\n",
        )
        .write(
            "subscriptions/demo.toml",
            "name = \"Demo\"\nscope = \"/products/gold\"\nprimary-key = \"k1\"\nsecondary-key = \"k2\"\nowner = \"ada\"\n\
             start-date = \"2024-05-02T00:00:00Z\"\nexpiration-date = \"2025-05-02T00:00:00+02:00\"\nallow-tracing = true\nstate-comment = \"ok\"\n",
        );
    config
}

#[test]
fn users_groups_owners_and_product_details_compile() {
    let compiled = with_users().load().unwrap();
    let group_ids: Vec<_> = compiled.groups.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(group_ids, ["administrators", "developers", "guests", "aad", "partners"]);
    assert_eq!(compiled.groups[4].name, "Partners");
    let user_ids: Vec<_> = compiled.users.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(user_ids, ["1", "ada", "bob"], "the built-in administrator first");
    let admin = &compiled.users[0];
    assert_eq!((admin.first_name.as_str(), admin.groups.as_slice()), ("Administrator", &[0][..]));
    let ada = &compiled.users[1];
    assert_eq!(ada.groups, [1, 4], "developers, then the groups listed");
    assert_eq!((ada.note.as_deref(), ada.registration_unix_ms), (Some("VIP"), Some(1_714_564_800_000)));
    assert_eq!(compiled.users[2].state, UserState::Blocked);
    let gold = &compiled.products[0];
    assert!(gold.approval_required);
    assert_eq!((gold.subscriptions_limit, gold.groups.as_slice()), (Some(2), &[1, 4][..]));
    let demo = &compiled.subscriptions[0];
    assert_eq!((demo.owner, demo.start_unix_ms, demo.end_unix_ms), (Some(1), Some(1_714_608_000_000), None));
    assert!(demo.allow_tracing);
    assert_eq!(compiled.key_index.key_of(0, KeySlot::Secondary), Some("k2"));

    // users/1.toml describes the administrator: still in administrators, not developers.
    let config = with_users();
    config.write("users/1.toml", "email = \"admin@example.test\"\nfirst-name = \"Root\"\nlast-name = \"Admin\"\n");
    let compiled = config.load().unwrap();
    let admin = compiled.users.iter().find(|u| u.id == "1").unwrap();
    assert_eq!((admin.email.as_str(), admin.groups.as_slice()), ("admin@example.test", &[0][..]));
    assert_eq!(compiled.users.len(), 3);
}

#[test]
fn user_checks_point_at_their_values() {
    let config = with_users();
    config.write("users/eve.toml", "email = \"ADA@example.TEST\"\nfirst-name = \"Eve\"\nlast-name = \"E\"\n");
    let (message, at) = config.error();
    assert!(message.contains("user \"ada\" already has this email"), "{message}");
    assert_eq!(at, "users/eve.toml:1:9");

    config.write(
        "users/eve.toml",
        "email = \"eve\"\nfirst-name = \" \"\nlast-name = \"E\"\ngroups = [\"partners\", \"nobody\", \"partners\"]\n",
    );
    let errors = config.errors();
    let found: Vec<_> =
        errors.iter().map(|(m, at)| (m.split(':').next().unwrap_or(m).to_owned(), at.as_str())).collect();
    assert_eq!(
        found,
        [
            ("\"eve\" is not an email address".to_owned(), "users/eve.toml:1:9"),
            ("a first name has 1 to 100 characters, not only spaces (1 here)".to_owned(), "users/eve.toml:2:14"),
            ("unknown group \"nobody\"".to_owned(), "users/eve.toml:4:23"),
            ("group \"partners\" is listed twice".to_owned(), "users/eve.toml:4:33"),
        ],
        "{errors:?}"
    );

    config.write(
        "users/eve.toml",
        "email = \"eve@x\"\nfirst-name = \"E\"\nlast-name = \"E\"\nregistration-date = \"yesterday\"\n",
    );
    let (message, at) = config.error();
    assert!(message.starts_with("not an RFC 3339 date"), "{message}");
    assert_eq!(at, "users/eve.toml:4:21");

    config.write("users/eve.toml", "email = \"eve@x\"\nfirst-name = \"E\"\nlast-name = \"E\"\nstate = \"banned\"\n");
    let (message, at) = config.error();
    assert!(message.contains("unknown variant `banned`"), "{message}");
    assert_eq!(at, "users/eve.toml:4:9");
}

#[test]
fn group_checks_point_at_their_values() {
    let config = with_users();
    config.write("groups/developers.toml", "name = \"Devs\"\n");
    let (message, at) = config.error();
    assert!(message.contains("\"developers\" is a built-in group"), "{message}");
    assert_eq!(at, "groups/developers.toml:1:1");

    let config = with_users();
    config.write("groups/aad.toml", "name = \"AAD\"\ntype = \"external\"\n");
    let (message, at) = config.error();
    assert!(message.contains("an external group needs external-id"), "{message}");
    assert_eq!(at, "groups/aad.toml:2:8");

    config.write("groups/aad.toml", "name = \"\"\nexternal-id = \"aad://x\"\n");
    let errors = config.errors();
    let places: Vec<_> = errors.iter().map(|(_, at)| at.as_str()).collect();
    assert_eq!(places, ["groups/aad.toml:1:8", "groups/aad.toml:2:15"], "{errors:?}");
    assert!(errors[1].0.contains("only for groups of type = \"external\""), "{errors:?}");
}

#[test]
fn product_and_subscription_checks_point_at_their_values() {
    let config = with_users();
    config.write(
        "products/gold/product.toml",
        &format!(
            "name = \"Gold\"\napis = [\"echo\"]\nsubscriptions-limit = -1\ngroups = [\"vips\"]\ndescription = \"{}\"\n",
            "x".repeat(1001)
        ),
    );
    let errors = config.errors();
    let places: Vec<_> = errors.iter().map(|(_, at)| at.as_str()).collect();
    assert_eq!(
        places,
        ["products/gold/product.toml:3:23", "products/gold/product.toml:4:11", "products/gold/product.toml:5:15"],
        "{errors:?}"
    );
    assert!(errors[0].0.starts_with("subscriptions-limit is 0 to 2147483647"), "{errors:?}");
    assert!(errors[2].0.contains("at most 1000 characters"), "{errors:?}");

    let config = with_users();
    config.write(
        "subscriptions/demo.toml",
        "name = \"Demo\"\nscope = \"/apis\"\nprimary-key = \"k1\"\nsecondary-key = \"k2\"\nowner = \"zoe\"\nend-date = \"2024-13-01T00:00:00Z\"\n",
    );
    let errors = config.errors();
    let places: Vec<_> = errors.iter().map(|(_, at)| at.as_str()).collect();
    assert_eq!(places, ["subscriptions/demo.toml:5:9", "subscriptions/demo.toml:6:12"], "{errors:?}");
    assert!(errors[0].0.contains("unknown user \"zoe\" (add users/zoe.toml)"), "{errors:?}");

    // An owner whose own file is broken is reported there only.
    config.write(
        "subscriptions/demo.toml",
        "name = \"Demo\"\nscope = \"/apis\"\nprimary-key = \"k1\"\nsecondary-key = \"k2\"\nowner = \"zoe\"\n",
    );
    config.write("users/zoe.toml", "email = \"zoe@x\"\n");
    let (message, at) = config.error();
    assert!(message.contains("missing field `first-name`"), "{message}");
    assert!(at.starts_with("users/zoe.toml"), "{at}");
}
