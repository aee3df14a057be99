//! The developer portal in a real browser: Debian's Chromium, headless, driven through WebDriver
//! (chromedriver on a loopback port, the fantoccini crate), against `portcullis up` with mail
//! going to an SMTP sink on loopback and an API imported from OpenAPI.
//!
//! A visitor signs up, follows the confirmation mail, signs in, subscribes, sees the key, calls an
//! operation in the try-it console (200 from the backend), regenerates the key (the old one gets
//! 401 through the gateway) and downloads the OpenAPI document (it parses). axe-core (vendored
//! from npm under tests/fixtures/portal/axe) checks every page type: no serious or critical
//! violation. With `PORTCULLIS_SCREENSHOTS=DIR` the test saves the main pages there as PNG.
//!
//! Ignored, with the reason, where chromium or chromedriver is not installed (see build.rs).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step fails the test")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use portcullis_tests::backend::{ScriptedBackend, echo};
use portcullis_tests::management::Management;
use portcullis_tests::portal::{link_in, publish_pet_store, quickstart_with_smtp};
use portcullis_tests::smtp::SmtpSink;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, eventually, http};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";
/// How long the browser may take for one page or element.
const BROWSER_WAIT: Duration = Duration::from_secs(20);
/// The flags of the issue: no sandbox (root in CI), no GPU, nothing from the network.
const CHROMIUM_FLAGS: [&str; 7] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// chromedriver on a free loopback port; killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("chromedriver")
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".to_owned()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Self { child, url: format!("http://127.0.0.1:{port}") };
        eventually("chromedriver listens", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, profile: &Path, downloads: &Path) -> Client {
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|flag| (*flag).to_owned()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.push("--window-size=1100,900".to_owned());
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": args,
            "prefs": {
                "download.default_directory": downloads.display().to_string(),
                "download.prompt_for_download": false,
            },
        },
    });
    let Value::Object(capabilities) = capabilities else { unreachable!("an object literal") };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector).capabilities(capabilities).connect(&driver.url).await.expect("a WebDriver session")
}

/// Fills the input `selector` with `text`.
async fn fill(client: &Client, selector: &str, text: &str) {
    let input = client.wait().at_most(BROWSER_WAIT).for_element(Locator::Css(selector)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
}

async fn click(client: &Client, selector: &str) {
    let element = client.wait().at_most(BROWSER_WAIT).for_element(Locator::Css(selector)).await.unwrap();
    element.click().await.unwrap();
}

/// The text of the element `selector`, retried while the page is still changing (an element
/// found on the page before a navigation is stale after it).
async fn text_of(client: &Client, selector: &str) -> String {
    let deadline = Instant::now() + BROWSER_WAIT;
    loop {
        let element = client.wait().at_most(BROWSER_WAIT).for_element(Locator::Css(selector)).await;
        match element {
            Ok(element) => match element.text().await {
                Ok(text) => return text,
                Err(error) if Instant::now() > deadline => panic!("{selector}: {error}"),
                Err(_) => {}
            },
            Err(error) => panic!("{selector}: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the page's heading is `expected` (a form's answer may take a moment to load).
async fn expect_heading(client: &Client, expected: &str) {
    let deadline = Instant::now() + BROWSER_WAIT;
    loop {
        let heading = text_of(client, "main h1").await;
        if heading == expected {
            return;
        }
        if Instant::now() > deadline {
            let main = text_of(client, "main").await;
            panic!("expected the page {expected:?}, got {heading:?}: {main}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The serious and critical axe-core violations of the current page.
async fn accessibility_violations(client: &Client, axe: &str) -> Vec<String> {
    client.execute(axe, vec![]).await.expect("axe-core loads");
    let script = "const done = arguments[arguments.length - 1];
        axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations
            .filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' at ' + v.nodes.map(n => n.target.join(' ')).join(', '))));";
    let found = client.execute_async(script, vec![]).await.expect("axe-core runs");
    found
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Saves a screenshot of the current page as `DIR/name.png` when `PORTCULLIS_SCREENSHOTS=DIR`.
async fn screenshot(client: &Client, name: &str) {
    let Some(dir) = std::env::var_os("PORTCULLIS_SCREENSHOTS").map(PathBuf::from) else { return };
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// The first file that appears in `dir` (a finished download: no `.crdownload`).
fn downloaded(dir: &Path) -> PathBuf {
    let deadline = Instant::now() + BROWSER_WAIT;
    loop {
        let done = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .find(|path| path.extension().is_some_and(|e| e == "json"));
        if let Some(path) = done {
            return path;
        }
        assert!(Instant::now() < deadline, "no download in {}", dir.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[cfg_attr(
    no_chromium,
    ignore = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver); see build.rs"
)]
fn a_visitor_signs_up_subscribes_tries_an_operation_and_rotates_the_key_in_chromium() {
    let smtp = SmtpSink::start();
    let config = quickstart_with_smtp(&smtp);
    let gateway = Gateway::start(GatewayOptions::new("epoll").config(config.path()));
    let management = Management::of(&gateway);
    let backend = ScriptedBackend::start(echo);
    publish_pet_store(&management, &format!("http://{}/api", backend.addr));
    let axe = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/portal/axe/axe.min.js"))
        .expect("the vendored axe-core");
    let (profile, downloads) = (TempDir::new("chromium-profile"), TempDir::new("chromium-downloads"));
    let driver = Driver::start();
    let portal = gateway.portal_url.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = browser(&driver, profile.path(), downloads.path()).await;
        let mut violations = Vec::new();
        let mut check = async |client: &Client, page: &str| {
            for violation in accessibility_violations(client, &axe).await {
                violations.push(format!("{page}: {violation}"));
            }
        };

        // The catalogue and the API's page and reference, as a guest.
        client.goto(&portal).await.unwrap();
        expect_heading(&client, "APIs and products").await;
        check(&client, "catalogue").await;
        screenshot(&client, "catalogue").await;
        fill(&client, "#search", "pet").await;
        click(&client, "form[role=search] button").await;
        assert_eq!(text_of(&client, "[data-api=pets] a").await, "Pet store");
        check(&client, "search results").await;
        client.goto(&format!("{portal}/products/pets")).await.unwrap();
        check(&client, "product").await;
        client.goto(&format!("{portal}/apis/pets/reference")).await.unwrap();
        text_of(&client, "#reference .opblock-summary-path").await;
        check(&client, "reference").await;
        screenshot(&client, "reference").await;

        // Sign up; the mail arrives at the SMTP sink; its link confirms the account.
        client.goto(&format!("{portal}/signup")).await.unwrap();
        check(&client, "sign-up").await;
        fill(&client, "#email", "vera@example.com").await;
        fill(&client, "#firstName", "Vera").await;
        fill(&client, "#lastName", "Rubin").await;
        fill(&client, "#password", PASSWORD).await;
        click(&client, "main form button[type=submit]").await;
        expect_heading(&client, "Check your mailbox").await;
        let mails = smtp.messages();
        let mail = mails.iter().find(|m| m.contains("To: vera@example.com")).expect("the confirmation mail");
        let link = link_in(mail, "/confirm?ticket=").expect("a confirmation link");
        client.goto(&link).await.unwrap();
        expect_heading(&client, "Account confirmed").await;

        // Sign in; subscribe to the pet plan; the key is on "My subscriptions".
        client.goto(&format!("{portal}/signin")).await.unwrap();
        check(&client, "sign-in").await;
        fill(&client, "#email", "vera@example.com").await;
        fill(&client, "#password", PASSWORD).await;
        click(&client, "main form button[type=submit]").await;
        expect_heading(&client, "My subscriptions").await;
        client.goto(&format!("{portal}/products/pets")).await.unwrap();
        fill(&client, "#name", "my pets app").await;
        click(&client, "main form button[type=submit]").await;
        expect_heading(&client, "My subscriptions").await;
        click(&client, ".subscription .key summary").await;
        let key = text_of(&client, "code[data-key=primary]").await;
        assert_eq!(key.len(), 32, "{key}");
        check(&client, "subscriptions").await;
        screenshot(&client, "subscriptions").await;

        // The try-it console: the portal sends through the gateway with the key; 200 from the backend.
        let mut answered = String::new();
        for _ in 0..50 {
            client.goto(&format!("{portal}/apis/pets")).await.unwrap();
            click(&client, "[data-operation=get-pet] details.try summary").await;
            fill(&client, "[data-operation=get-pet] input[name='path:petId']", "rex").await;
            click(&client, "[data-operation=get-pet] form[data-try] button[type=submit]").await;
            answered = text_of(&client, "[data-operation=get-pet] .try-status").await;
            if answered == "200 OK" {
                break;
            }
            // The new key reaches the gateway with the next snapshot.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(answered, "200 OK");
        let body = text_of(&client, "[data-operation=get-pet] .try-body").await;
        assert!(body.contains("target=/api/pets/rex") && body.contains(&format!("key={key}")), "{body}");
        assert!(text_of(&client, "[data-operation=get-pet] .try-time").await.ends_with(" ms"));
        click(&client, "[data-operation=get-pet] details.samples summary").await;
        check(&client, "API page with the console").await;
        screenshot(&client, "api-try-it").await;

        // Regenerate the primary key: the old one gets 401 through the gateway, the new one 200.
        client.goto(&format!("{portal}/subscriptions")).await.unwrap();
        click(&client, "form[action$='/regenerate'] button").await;
        expect_heading(&client, "My subscriptions").await;
        click(&client, ".subscription .key summary").await;
        let new_key = text_of(&client, "code[data-key=primary]").await;
        assert_ne!(new_key, key);
        let status =
            |key: &str| http::get(gateway.addr, "/pets/pets/1", &[("Ocp-Apim-Subscription-Key", key)]).unwrap().status;
        eventually("the old key is refused", || status(&key) == 401);
        assert_eq!(status(&new_key), 200);

        // Download the OpenAPI document: it parses and names the gateway.
        client.goto(&format!("{portal}/apis/pets")).await.unwrap();
        click(&client, "a[href='/apis/pets/openapi.json']").await;
        let file = downloaded(downloads.path());
        let document: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).expect("it parses");
        assert_eq!(document["servers"][0]["url"], format!("http://{}/pets", gateway.addr));
        assert_eq!(document["paths"]["/pets/{petId}"]["get"]["operationId"], "get-pet");

        // The profile page.
        client.goto(&format!("{portal}/profile")).await.unwrap();
        expect_heading(&client, "Your profile").await;
        check(&client, "profile").await;

        client.close().await.unwrap();
        assert!(violations.is_empty(), "axe-core, serious or critical:\n{}", violations.join("\n"));
    });
    assert!(!gateway.log().contains(&link_in(&smtp.messages()[0], "/confirm").unwrap()), "links are not logged");
}
