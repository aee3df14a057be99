//! A client of the management API of a gateway under test: the URL and token `up` leaves for
//! the CLI in its data directory, and JSON requests over [`crate::http::Connection`].

use std::net::SocketAddr;

use serde_json::Value;

use crate::Gateway;
use crate::http::{Connection, Response};

/// The management API of one running gateway.
#[derive(Debug, Clone)]
pub struct Management {
    pub addr: SocketAddr,
    pub token: String,
}

impl Management {
    /// The API of `gateway`, with the token `up` made for the CLI.
    pub fn of(gateway: &Gateway) -> Self {
        let text = std::fs::read_to_string(gateway.data().join("run/management.json")).expect("management.json");
        let access: Value = serde_json::from_str(&text).expect("management.json is JSON");
        let url = access["url"].as_str().expect("url");
        let addr = url.trim_start_matches("http://").parse().expect("a management address");
        Self { addr, token: access["token"].as_str().expect("token").to_owned() }
    }

    /// Sends `method path` with `body` (JSON) and extra headers; `Authorization` is added.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Response {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: management.test\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.token,
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        let mut connection = Connection::open(self.addr).expect("connect to the management API");
        connection.round_trip(request.as_bytes()).expect("a management API response")
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None, &[])
    }

    /// PUT `{"properties": properties}`; panics unless 200 or 201.
    pub fn put(&self, path: &str, properties: Value) -> Response {
        let response = self.request("PUT", path, Some(&serde_json::json!({ "properties": properties })), &[]);
        assert!(matches!(response.status, 200 | 201), "PUT {path}: {} {}", response.status, response.text());
        response
    }

    /// PATCH `{"properties": properties}` with `If-Match: *`.
    pub fn patch(&self, path: &str, properties: Value) -> Response {
        self.request("PATCH", path, Some(&serde_json::json!({ "properties": properties })), &[("If-Match", "*")])
    }

    pub fn post(&self, path: &str) -> Response {
        self.request("POST", path, None, &[])
    }
}
