//! The management API served by axum on a real loopback socket, spoken to as raw HTTP/1.1: what
//! `portcullis up --listen-management` does, without the rest of `up`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::sync::Arc;

use portcullis_management::api::{ApiSettings, router};
use portcullis_management::service::{AcceptAll, Service};
use portcullis_management::store::SqliteStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends the request line and headers `head`, then `body`, on a fresh connection and returns the
/// whole response.
async fn send(address: std::net::SocketAddr, head: &str, body: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("{head}Host: mgmt.test\r\nConnection: close\r\n\r\n{body}");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

async fn exchange(address: std::net::SocketAddr, head: &str) -> String {
    send(address, head, "").await
}

#[tokio::test]
async fn the_api_answers_over_tcp_with_tokens_etags_and_head() {
    let mut service = Service::open(Box::new(SqliteStore::in_memory().unwrap()), Box::new(AcceptAll)).unwrap().0;
    portcullis_management::seed_builtins(&mut service).unwrap();
    let token = portcullis_management::tokens::create(service.store_mut(), "e2e", None, false).unwrap();
    let app = router(Arc::new(tokio::sync::Mutex::new(service)), ApiSettings::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let anonymous = exchange(address, "GET /groups HTTP/1.1\r\n").await;
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
    assert!(anonymous.contains("\"code\":\"Unauthorized\""), "{anonymous}");

    let auth = format!("Authorization: Bearer {token}\r\n");
    let groups = exchange(address, &format!("GET /groups?api-version=2024-05-01 HTTP/1.1\r\n{auth}")).await;
    assert!(groups.starts_with("HTTP/1.1 200"), "{groups}");
    assert!(groups.contains("\"count\":3"), "{groups}");

    let head = exchange(address, &format!("HEAD /users/1 HTTP/1.1\r\n{auth}")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("etag: \""), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");

    let body = r#"{"properties":{"displayName":"Echo","path":"echo"}}"#;
    let put = format!(
        "PUT /apis/echo HTTP/1.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    let created = send(address, &put, body).await;
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");

    let document = exchange(address, "GET /openapi.json HTTP/1.1\r\n").await;
    assert!(document.starts_with("HTTP/1.1 200") && document.contains("\"openapi\":\"3.0.3\""));
    server.abort();
}
