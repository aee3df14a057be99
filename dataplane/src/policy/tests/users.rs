//! `context.User`, `context.Product` and the subscription's keys and dates, read from the
//! snapshot's users and groups tables through the view's [`Caller`].

use portcullis_contract::model::{Group, Product, Subscription, SubscriptionScope, SubscriptionState, User, UserState};
use portcullis_contract::program::Prop;

use super::*;

/// Reads `context.<props>` (indexing the collection among them with `index`), with a
/// subscription owned by Ada, through product Gold.
fn read(props: &[Prop], index: Option<i64>) -> String {
    let groups = [
        Group { id: "administrators".into(), name: "Administrators".into() },
        Group { id: "developers".into(), name: "Developers".into() },
        Group { id: "partners".into(), name: "Partners".into() },
    ];
    let user = User {
        id: "ada".into(),
        email: "ada@example.test".into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        note: None,
        registration_unix_ms: Some(1_700_000_000_000),
        state: UserState::Active,
        groups: vec![1, 2],
    };
    let subscription = Subscription {
        start_unix_ms: Some(1_700_000_000_500),
        owner: Some(0),
        ..Subscription::new("sub-1", "One", SubscriptionScope::Product(0), SubscriptionState::Active)
    };
    let product = Product {
        id: "gold".into(),
        name: "Gold".into(),
        apis: vec![0],
        subscription_required: true,
        published: false,
        approval_required: true,
        subscriptions_limit: Some(3),
        groups: vec![2],
    };
    let mut ops = vec![Op::Context];
    for prop in props {
        ops.push(Op::Prop(*prop));
        // `[index]` after a collection.
        if matches!(prop, Prop::Groups | Prop::Identities) && index.is_some() {
            ops.extend([Op::Const(0), Op::Index]);
        }
    }
    let consts = vec![Const::Int(index.unwrap_or(0)), s("result")];
    ops.push(Op::SetVariable { name: 1 });
    let fixture = Fixture::new(GET, vec![program(ops, consts)]);
    let matched = [MatchedParam { name: "id", value: "42" }];
    let view = View {
        subscription: Some(&subscription),
        subscription_key: Some("sent-key"),
        caller: Caller { user: Some(&user), primary_key: Some("p-key"), secondary_key: Some("s-key"), groups: &groups },
        product: Some(&product),
        ..fixture.view(&matched)
    };
    let mut state = RequestState::new();
    match run(Section::Inbound, fixture.programs.get(0).expect("program"), &view, &mut state) {
        Exit::Continue => {}
        other => return format!("exit {other:?}"),
    }
    let mut out = String::new();
    match state.variable("result", &fixture.programs).expect("result set") {
        value::Value::Null => out.push_str("null"),
        value::Value::Str(text) => out.push_str(text.as_str()),
        other => {
            out.push_str(other.type_name());
            out.push(':');
            other.write_display(&mut out);
        }
    }
    out
}

#[test]
fn user_members_come_from_the_owner_and_the_groups_table() {
    assert_eq!(read(&[Prop::User, Prop::Email], None), "ada@example.test");
    assert_eq!(read(&[Prop::User, Prop::Id], None), "ada");
    assert_eq!(read(&[Prop::User, Prop::FirstName], None), "Ada");
    assert_eq!(read(&[Prop::User, Prop::LastName], None), "Lovelace");
    assert_eq!(read(&[Prop::User, Prop::Note], None), "null");
    assert!(read(&[Prop::User, Prop::RegistrationDate], None).starts_with("DateTime:11/14/2023"));
    assert_eq!(read(&[Prop::User, Prop::Groups, Prop::Count], None), "Int32:2");
    assert_eq!(read(&[Prop::User, Prop::Groups, Prop::Name], Some(1)), "Partners");
    assert_eq!(read(&[Prop::User, Prop::Groups, Prop::Id], Some(0)), "developers");
    assert_eq!(read(&[Prop::User, Prop::Identities, Prop::Provider], Some(0)), "Basic");
    assert_eq!(read(&[Prop::User, Prop::Identities, Prop::Id], Some(0)), "ada@example.test");
}

#[test]
fn product_and_subscription_members() {
    assert_eq!(read(&[Prop::Product, Prop::Name], None), "Gold");
    assert_eq!(read(&[Prop::Product, Prop::State], None), "NotPublished");
    assert_eq!(read(&[Prop::Product, Prop::ApprovalRequired], None), "Boolean:True");
    assert_eq!(read(&[Prop::Product, Prop::SubscriptionLimit], None), "Int32:3");
    assert_eq!(read(&[Prop::Product, Prop::SubscriptionRequired], None), "Boolean:True");
    assert_eq!(read(&[Prop::Product, Prop::Groups, Prop::Id], Some(0)), "partners");
    assert_eq!(read(&[Prop::Subscription, Prop::Key], None), "sent-key");
    assert_eq!(read(&[Prop::Subscription, Prop::PrimaryKey], None), "p-key");
    assert_eq!(read(&[Prop::Subscription, Prop::SecondaryKey], None), "s-key");
    assert!(read(&[Prop::Subscription, Prop::StartDate], None).starts_with("DateTime:11/14/2023"));
    assert_eq!(read(&[Prop::Subscription, Prop::EndDate], None), "null");
}

#[test]
fn the_caller_s_debug_never_shows_the_keys() {
    let caller = Caller { user: None, primary_key: Some("p-secret"), secondary_key: Some("s-secret"), groups: &[] };
    let shown = format!("{caller:?}");
    assert!(!shown.contains("secret"), "{shown}");
}
