//! The developer portal end to end, over real HTTP against `portcullis up` with the quick start:
//! sign-up, the confirmation mail (the outbox), sign-in, subscribing to Starter, the key through
//! the gateway, regenerating it; and what must be refused: forged CSRF tokens, another
//! developer's subscriptions, blocked users, password guessing, used reset links.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step fails the test")]

use portcullis_tests::management::Management;
use portcullis_tests::portal::{Visitor, attribute_after, link_in, mails_to, quickstart_with_smtp};
use portcullis_tests::smtp::SmtpSink;
use portcullis_tests::{Gateway, GatewayOptions, eventually, http};
use serde_json::json;

const PASSWORD: &str = "correct horse battery staple";

fn gateway() -> Gateway {
    let gateway = Gateway::start(GatewayOptions::new("epoll"));
    assert!(gateway.portal_url.starts_with("http://127.0.0.1:"), "{:?}", gateway.stdout_lines);
    gateway
}

/// The status of `GET /echo/hello` through the gateway with `key`.
fn echo_with(gateway: &Gateway, key: &str) -> u16 {
    http::get(gateway.addr, "/echo/hello", &[("Ocp-Apim-Subscription-Key", key)]).unwrap().status
}

/// The primary key shown on "My subscriptions" (the first subscription listed).
fn primary_key(page: &str) -> String {
    let marker = "data-key=\"primary\">";
    let Some(at) = page.find(marker) else { return String::new() };
    let rest = &page[at + marker.len()..];
    rest[..rest.find('<').unwrap_or(0)].to_owned()
}

/// An active developer made through the management API (password in clear: the API hashes it).
fn developer(management: &Management, id: &str, email: &str) {
    management.put(
        &format!("/users/{id}"),
        json!({"email": email, "firstName": id, "lastName": "Test", "state": "active", "password": PASSWORD}),
    );
    management.put(&format!("/groups/developers/users/{id}"), json!({}));
}

#[test]
fn a_developer_signs_up_confirms_subscribes_and_rotates_a_key() {
    let gateway = gateway();
    let mut alice = Visitor::new(&gateway.portal_url);

    // A guest sees the quick start's Starter product and the Echo API's page.
    let home = alice.get("/");
    assert_eq!(home.status, 200);
    assert!(home.body.contains("Starter") && home.body.contains("href=\"/apis/echo\""), "{}", home.body);
    assert!(home.body.contains("<main id=\"main\"") && home.body.contains("<nav aria-label=\"Main\">"));
    let api = alice.get("/apis/echo");
    assert_eq!(api.status, 200);
    assert!(
        api.body.contains("Echo API") && api.body.contains(&format!("http://{}/echo", gateway.addr)),
        "{}",
        api.body
    );

    // Sign-up: pending until the mail's link is followed.
    alice.get("/signup");
    let signed_up = alice.post(
        "/signup",
        &[("email", "alice@example.com"), ("firstName", "Alice"), ("lastName", "Liddell"), ("password", PASSWORD)],
    );
    assert_eq!(signed_up.status, 200, "{}", signed_up.body);
    alice.get("/signin");
    let early = alice.post("/signin", &[("email", "alice@example.com"), ("password", PASSWORD)]);
    assert_eq!(early.status, 403, "a pending user cannot sign in yet");
    let mails = mails_to(&gateway.data(), "alice@example.com");
    assert_eq!(mails.len(), 1, "one confirmation mail in the outbox");
    let link = link_in(&mails[0], "/confirm?ticket=").expect("a confirmation link");
    assert!(link.starts_with(&gateway.portal_url), "{link}");
    assert!(gateway.log().contains(&link), "the quick start logs the link (no SMTP server)");
    let confirmed = alice.get(&link);
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    assert_eq!(alice.get(&link).status, 400, "a confirmation link works once");

    // Sign-in: an HttpOnly, SameSite=Lax session cookie.
    let signed_in = alice.sign_in("alice@example.com", PASSWORD);
    let cookie = signed_in.set_cookies.iter().find(|c| c.starts_with("portcullis_session=")).expect("a session");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");

    // Subscribe to Starter: active at once; the key opens the Echo API through the gateway.
    alice.get("/products/starter");
    let subscribed = alice.post("/products/starter/subscribe", &[("name", "my app")]);
    assert_eq!((subscribed.status, subscribed.location.as_deref()), (303, Some("/subscriptions?notice=active")));
    let mine = alice.get("/subscriptions");
    assert!(mine.body.contains("my app") && mine.body.contains("state-active"), "{}", mine.body);
    let key = primary_key(&mine.body);
    assert_eq!(key.len(), 32, "{}", mine.body);
    eventually("the new key opens the Echo API", || echo_with(&gateway, &key) == 200);

    // Starter allows one subscription per developer.
    alice.get("/products/starter");
    let second = alice.post("/products/starter/subscribe", &[("name", "another")]);
    assert_eq!(second.status, 409, "{}", second.body);

    // Regenerate the primary key: the old one stops working, the new one works.
    alice.get("/subscriptions");
    let regenerated =
        alice.post(&format!("/subscriptions/{}/regenerate", subscription_id(&mine.body)), &[("key", "primary")]);
    assert_eq!(regenerated.status, 303, "{}", regenerated.body);
    let new_key = primary_key(&alice.get("/subscriptions").body);
    assert_ne!(new_key, key);
    eventually("the old key is refused", || echo_with(&gateway, &key) == 401);
    assert_eq!(echo_with(&gateway, &new_key), 200);

    // Sign-out ends the session on the server: the old cookie opens nothing.
    alice.get("/subscriptions");
    assert_eq!(alice.post("/signout", &[]).status, 303);
    let after = alice.get("/subscriptions");
    assert_eq!((after.status, after.location.as_deref()), (303, Some("/signin")));
}

fn subscription_id(page: &str) -> String {
    attribute_after(page, "data-subscription=\"").expect("a subscription on the page")
}

#[test]
fn forgeries_other_developers_blocked_users_and_guessers_are_refused() {
    let gateway = gateway();
    let management = Management::of(&gateway);
    developer(&management, "alice", "alice@example.com");
    developer(&management, "bob", "bob@example.com");
    developer(&management, "carol", "carol@example.com");

    let mut alice = Visitor::new(&gateway.portal_url);
    alice.sign_in("alice@example.com", PASSWORD);
    alice.get("/products/starter");
    let token = alice.csrf.clone().unwrap();

    // CSRF: no token, a forged one, or another visitor's are all refused, and nothing is written.
    assert_eq!(alice.post_raw("/products/starter/subscribe", &[("name", "x")]).status, 403);
    assert_eq!(alice.post_raw("/products/starter/subscribe", &[("csrf", "00ff"), ("name", "x")]).status, 403);
    let mut bob = Visitor::new(&gateway.portal_url);
    bob.sign_in("bob@example.com", PASSWORD);
    bob.get("/");
    let bobs_token = bob.csrf.clone().unwrap();
    assert_ne!(bobs_token, token);
    assert_eq!(alice.post_raw("/products/starter/subscribe", &[("csrf", &bobs_token), ("name", "x")]).status, 403);
    let mut stranger = Visitor::new(&gateway.portal_url);
    let forged =
        stranger.post_raw("/signin", &[("csrf", &token), ("email", "alice@example.com"), ("password", PASSWORD)]);
    assert_eq!(forged.status, 403, "a cross-site sign-in without the CSRF cookie");
    assert!(!alice.get("/subscriptions").body.contains("data-subscription="), "no forged subscription was made");

    // Alice subscribes; Bob sees nothing of it and can change nothing of it.
    alice.get("/products/starter");
    assert_eq!(alice.post("/products/starter/subscribe", &[("name", "alice app")]).status, 303);
    let alices = alice.get("/subscriptions");
    let (sid, key) = (subscription_id(&alices.body), primary_key(&alices.body));
    let bobs = bob.get("/subscriptions");
    assert!(!bobs.body.contains(&sid) && !bobs.body.contains(&key), "{}", bobs.body);
    assert_eq!(bob.post(&format!("/subscriptions/{sid}/regenerate"), &[("key", "primary")]).status, 404);
    assert_eq!(bob.post(&format!("/subscriptions/{sid}/cancel"), &[]).status, 404);
    let secrets = management.post(&format!("/subscriptions/{sid}/listSecrets")).json();
    assert_eq!(secrets["primaryKey"], key.as_str(), "Bob changed nothing");
    let owned = management.get(&format!("/subscriptions/{sid}")).json();
    assert_eq!(owned["properties"]["state"], "active");
    assert_eq!(owned["properties"]["ownerId"], "/users/alice");

    // A blocked user's session ends and they cannot sign in again.
    assert_eq!(management.patch("/users/bob", json!({"state": "blocked"})).status, 200);
    let after_block = bob.get("/subscriptions");
    assert_eq!((after_block.status, after_block.location.as_deref()), (303, Some("/signin")));
    bob.get("/signin");
    let blocked = bob.post("/signin", &[("email", "bob@example.com"), ("password", PASSWORD)]);
    assert_eq!(blocked.status, 403, "{}", blocked.body);
    assert!(!blocked.set_cookies.iter().any(|c| c.starts_with("portcullis_session=")));

    // Guessing Carol's password: after five failures even the right one waits (429, Retry-After).
    let mut guesser = Visitor::new(&gateway.portal_url);
    guesser.get("/signin");
    for n in 0..5 {
        let wrong = format!("wrong password {n}");
        assert_eq!(guesser.post("/signin", &[("email", "carol@example.com"), ("password", &wrong)]).status, 401);
    }
    let throttled = guesser.post("/signin", &[("email", "carol@example.com"), ("password", PASSWORD)]);
    assert_eq!(throttled.status, 429, "{}", throttled.body);

    // Cancel: Alice's key stops working.
    alice.get("/subscriptions");
    assert_eq!(alice.post(&format!("/subscriptions/{sid}/cancel"), &[]).status, 303);
    eventually("a cancelled subscription's key is refused", || echo_with(&gateway, &key) == 401);
}

#[test]
fn a_subscription_waits_for_approval_and_a_reset_link_works_once() {
    let gateway = gateway();
    let management = Management::of(&gateway);
    developer(&management, "dave", "dave@example.com");

    // A product that needs approval: submitted, no key shown, none working, until approved.
    management.put(
        "/products/gold",
        json!({"displayName": "Gold", "state": "published", "approvalRequired": true, "terms": "Be nice."}),
    );
    management.put("/products/gold/apis/echo", json!({}));
    management.put("/products/gold/groups/developers", json!({}));
    let mut dave = Visitor::new(&gateway.portal_url);
    assert_eq!(dave.get("/products/gold").status, 404, "Gold is not shown to guests");
    dave.sign_in("dave@example.com", PASSWORD);
    let gold = dave.get("/products/gold");
    assert!(gold.body.contains("Be nice.") && gold.body.contains("<label for=\"acceptTerms\">"), "{}", gold.body);
    assert_eq!(dave.post("/products/gold/subscribe", &[]).status, 400, "the terms must be accepted");
    dave.get("/products/gold");
    let submitted = dave.post("/products/gold/subscribe", &[("acceptTerms", "on")]);
    assert_eq!(submitted.location.as_deref(), Some("/subscriptions?notice=submitted"));
    let waiting = dave.get("/subscriptions");
    assert!(waiting.body.contains("state-submitted") && !waiting.body.contains("data-key="), "{}", waiting.body);
    let sid = subscription_id(&waiting.body);
    let key =
        management.post(&format!("/subscriptions/{sid}/listSecrets")).json()["primaryKey"].as_str().unwrap().to_owned();
    assert_eq!(echo_with(&gateway, &key), 401, "a submitted key opens nothing");
    assert_eq!(management.patch(&format!("/subscriptions/{sid}"), json!({"state": "active"})).status, 200);
    assert_eq!(primary_key(&dave.get("/subscriptions").body), key);
    eventually("the approved key opens the Echo API", || echo_with(&gateway, &key) == 200);

    // Password reset: one link, used once; the old password stops working.
    dave.get("/subscriptions");
    dave.post("/signout", &[]);
    dave.get("/reset");
    assert_eq!(dave.post("/reset", &[("email", "dave@example.com")]).status, 200);
    assert_eq!(
        dave.post("/reset", &[("email", "nobody@example.com")]).status,
        200,
        "the same answer for unknown addresses"
    );
    let mails = mails_to(&gateway.data(), "dave@example.com");
    let link = link_in(&mails[0], "/reset/password?ticket=").expect("a reset link");
    let form = dave.get(&link);
    assert_eq!(form.status, 200, "{}", form.body);
    let ticket = attribute_after(&form.body, "name=\"ticket\" value=\"").unwrap();
    let new_password = "a brand new passphrase";
    assert_eq!(dave.post("/reset/password", &[("ticket", &ticket), ("password", new_password)]).status, 200);
    dave.get("/reset");
    assert_eq!(
        dave.post("/reset/password", &[("ticket", &ticket), ("password", "yet another one!")]).status,
        400,
        "used once"
    );
    dave.get("/signin");
    assert_eq!(dave.post("/signin", &[("email", "dave@example.com"), ("password", PASSWORD)]).status, 401);
    dave.sign_in("dave@example.com", new_password);
    assert_eq!(dave.get(&format!("{link}x")).status, 400, "a tampered link");

    // Reset requests are limited per address asked for: the sixth within the window waits.
    dave.get("/reset");
    for _ in 1..5 {
        assert_eq!(dave.post("/reset", &[("email", "dave@example.com")]).status, 200);
    }
    assert_eq!(dave.post("/reset", &[("email", "dave@example.com")]).status, 429);
}

#[test]
fn confirmation_mail_goes_through_a_real_smtp_server() {
    let smtp = SmtpSink::start();
    let config = quickstart_with_smtp(&smtp);
    let gateway = Gateway::start(GatewayOptions::new("epoll").config(config.path()));
    let mut erin = Visitor::new(&gateway.portal_url);
    erin.get("/signup");
    let fields = [("email", "erin@example.com"), ("firstName", "Érin"), ("lastName", "Doe"), ("password", PASSWORD)];
    assert_eq!(erin.post("/signup", &fields).status, 200);
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "one message through SMTP");
    let mail = &messages[0];
    assert!(mail.contains("<apis@example.com>") && mail.contains("To: erin@example.com"), "{mail}");
    assert!(mail.contains("Hello Érin"), "8bit text arrives as written: {mail}");
    assert!(mails_to(&gateway.data(), "erin@example.com").is_empty(), "nothing in the outbox");
    let link = link_in(mail, "/confirm?ticket=").expect("a confirmation link");
    assert!(!gateway.log().contains(&link), "with an SMTP server, links are not logged");
    assert_eq!(erin.get(&link).status, 200);
    erin.sign_in("erin@example.com", PASSWORD);
}
