use serde_json::json;

use super::*;

#[test]
fn unknown_properties_round_trip() {
    let written =
        json!({"displayName": "Echo", "path": "echo", "serviceUrl": "http://b", "provisioningState": "Succeeded"});
    let properties = Properties::from_json(Kind::Api, written.clone()).unwrap();
    let Properties::Api(api) = &properties else { panic!("not an API") };
    assert_eq!(api.extra.get("provisioningState"), Some(&json!("Succeeded")));
    let back = properties.to_json();
    for (key, value) in written.as_object().unwrap() {
        assert_eq!(back.get(key), Some(value), "{key}");
    }
}

#[test]
fn a_subscription_without_state_is_submitted() {
    let properties = Properties::from_json(Kind::Subscription, json!({"scope": "/apis"})).unwrap();
    let Properties::Subscription(subscription) = properties else { panic!("not a subscription") };
    assert_eq!(subscription.state, SubscriptionState::Submitted);
}

#[test]
fn arm_ids_are_read_relative_to_the_service() {
    let subscription = SubscriptionProperties {
        scope: "/subscriptions/s/resourceGroups/r/providers/Microsoft.ApiManagement/service/apim/products/starter"
            .into(),
        owner_id: Some(
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.ApiManagement/service/apim/users/1".into(),
        ),
        ..Default::default()
    };
    assert_eq!(subscription.relative_scope(), "/products/starter");
    assert_eq!(subscription.owner(), Some("1"));
}

#[test]
fn wrong_types_are_refused_with_the_field() {
    let error = Properties::from_json(Kind::Product, json!({"displayName": 3})).unwrap_err();
    assert!(error.to_string().contains("invalid type"), "{error}");
}

#[test]
fn subscription_transitions_follow_apim() {
    use SubscriptionState::*;
    assert!(Submitted.can_become(Active));
    assert!(Active.can_become(Suspended));
    assert!(!Cancelled.can_become(Active));
    assert!(!Rejected.can_become(Active));
}
