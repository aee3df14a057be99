//! The named values the running gateway provides to a config (a config value of the same name
//! wins), and the stand-ins used to check a config before they are known.

use portcullis_policy::named_values::{NamedValue, NamedValues};

/// The value `portcullis up` provides when it runs the echo backend: `http://<addr>`.
pub const ECHO_BACKEND_URL: &str = "echo-backend-url";

/// Stands in for the echo backend's URL while checking the config before the echo backend
/// runs (its port is not known yet); any valid http URL works, this one is never contacted.
pub const ECHO_BACKEND_URL_PLACEHOLDER: &str = "http://127.0.0.1:9";

/// The values `up` will provide, for checking a config before they are known.
pub fn check_values(echo_backend: bool) -> NamedValues {
    let mut values = NamedValues::default();
    if echo_backend {
        let value = NamedValue { value: ECHO_BACKEND_URL_PLACEHOLDER.to_owned(), secret: false };
        values.insert(ECHO_BACKEND_URL, value);
    }
    values
}
