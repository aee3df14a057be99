//! CLI verbs over the management plane: `portcullis api`, `portcullis subscription` (through the
//! running management API), `portcullis ctl token` (straight into the store file), and
//! `portcullis import apiops` (through the admin socket, one change).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use portcullis_contract::layout::DataDir;
use portcullis_management::tokens;
use serde_json::{Value, json};

use super::STORE_FILE;
use super::client::Client;
use crate::admin::Request;
use crate::ctl;

/// `portcullis api ...`
#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// List the APIs (current revisions).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Import an OpenAPI definition (2.0, 3.0 or 3.1; JSON or YAML) as an API, or re-import it
    /// over the API of that id (operations the definition no longer has are removed).
    Import {
        file: PathBuf,
        /// The API's path prefix on the gateway.
        #[arg(long)]
        path: String,
        /// The API's id (default: the file's name, normalised).
        #[arg(long)]
        id: Option<String>,
        /// The backend URL, instead of the definition's first HTTPS server.
        #[arg(long)]
        service_url: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print an API as an OpenAPI definition, with the gateway's URL as its server.
    Export {
        id: String,
        /// openapi+json, openapi (YAML) or swagger.
        #[arg(long, default_value = "openapi+json")]
        format: String,
    },
}

/// `portcullis subscription ...`
#[derive(Debug, Subcommand)]
pub enum SubscriptionCommand {
    /// List the subscriptions (without their keys).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Create a subscription; its keys are generated.
    Create {
        /// `/apis`, `/apis/{id}` or `/products/{id}`.
        #[arg(long)]
        scope: String,
        /// The owner's user id.
        #[arg(long)]
        owner: Option<String>,
        /// The subscription's id (default: generated).
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// active, or submitted (awaiting approval).
        #[arg(long, default_value = "active")]
        state: String,
        #[arg(long)]
        json: bool,
    },
    /// Show a subscription's two keys.
    Keys {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

/// `portcullis ctl token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a management API token; its secret is shown once.
    Create {
        #[arg(long)]
        name: String,
        /// How long it is valid (`90s`, `30m`, `12h`, `30d`); default: until deleted.
        #[arg(long)]
        expires: Option<String>,
        /// The token may read, never write or read secrets.
        #[arg(long)]
        read_only: bool,
        #[arg(long)]
        json: bool,
    },
    /// List the tokens (names, never secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a token: requests with it get 401 from then on.
    Delete {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn api(data_dir: &DataDir, command: ApiCommand) -> anyhow::Result<String> {
    let client = Client::new(data_dir)?;
    match command {
        ApiCommand::List { json } => {
            let list = client.call("GET", "/apis", None)?;
            Ok(listing(&list, json, |api| {
                let p = &api["properties"];
                format!(
                    "{}\t/{}\t{}",
                    api["name"].as_str().unwrap_or(""),
                    p["path"].as_str().unwrap_or(""),
                    p["displayName"].as_str().unwrap_or("")
                )
            }))
        }
        ApiCommand::Import { file, path, id, service_url, json } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", file.display()))?;
            let id = id.unwrap_or_else(|| id_from_file(&file));
            let format = if text.trim_start().starts_with('{') { "openapi+json" } else { "openapi" };
            let mut properties = json!({"format": format, "value": text, "path": path});
            if let Some(url) = service_url {
                properties["serviceUrl"] = json!(url);
            }
            let api = client.call("PUT", &format!("/apis/{id}"), Some(&json!({"properties": properties})))?;
            if json {
                return Ok(serde_json::to_string_pretty(&api)?);
            }
            let operations = client.call("GET", &format!("/apis/{id}/operations"), None)?;
            let mut lines = vec![format!("imported /apis/{id} ({} operations)", operations["count"])];
            for warning in api["properties"]["importWarnings"].as_array().into_iter().flatten() {
                lines.push(format!("warning: {}", warning.as_str().unwrap_or_default()));
            }
            Ok(lines.join("\n"))
        }
        ApiCommand::Export { id, format } => {
            let exported =
                client.call("GET", &format!("/apis/{id}?export=true&format={}", format.replace('+', "%2B")), None)?;
            Ok(match &exported["value"] {
                Value::String(text) => text.clone(),
                value => serde_json::to_string_pretty(value)?,
            })
        }
    }
}

pub fn subscription(data_dir: &DataDir, command: SubscriptionCommand) -> anyhow::Result<String> {
    let client = Client::new(data_dir)?;
    match command {
        SubscriptionCommand::List { json } => {
            let list = client.call("GET", "/subscriptions", None)?;
            Ok(listing(&list, json, |s| {
                let p = &s["properties"];
                format!(
                    "{}\t{}\t{}",
                    s["name"].as_str().unwrap_or(""),
                    p["state"].as_str().unwrap_or(""),
                    p["scope"].as_str().unwrap_or("")
                )
            }))
        }
        SubscriptionCommand::Create { scope, owner, id, name, state, json } => {
            let id = id.unwrap_or_else(random_id);
            let mut properties =
                json!({"scope": scope, "state": state, "displayName": name.unwrap_or_else(|| id.clone())});
            if let Some(owner) = owner {
                properties["ownerId"] = json!(format!("/users/{owner}"));
            }
            let created =
                client.call("PUT", &format!("/subscriptions/{id}"), Some(&json!({"properties": properties})))?;
            if json {
                return Ok(serde_json::to_string_pretty(&created)?);
            }
            Ok(format!("created /subscriptions/{id} ({state}); its keys: portcullis subscription keys {id}"))
        }
        SubscriptionCommand::Keys { id, json } => {
            let keys = client.call("POST", &format!("/subscriptions/{id}/listSecrets"), None)?;
            if json {
                return Ok(serde_json::to_string_pretty(&keys)?);
            }
            Ok(format!(
                "primary:   {}\nsecondary: {}",
                keys["primaryKey"].as_str().unwrap_or(""),
                keys["secondaryKey"].as_str().unwrap_or("")
            ))
        }
    }
}

pub fn token(data_dir: &DataDir, command: TokenCommand) -> anyhow::Result<String> {
    let path = data_dir.root().join(STORE_FILE);
    if !path.is_file() {
        anyhow::bail!("no management store at {} (start the gateway once, or pass --data-dir)", path.display());
    }
    let mut store = portcullis_management::store::open(&path)?;
    match command {
        TokenCommand::Create { name, expires, read_only, json } => {
            let expires = expires.as_deref().map(tokens::parse_duration).transpose()?;
            let secret = tokens::create(&mut store, &name, expires, read_only)?;
            if json {
                return Ok(serde_json::to_string_pretty(
                    &json!({"name": name, "readOnly": read_only, "token": secret}),
                )?);
            }
            Ok(format!(
                "token {name:?} created{}; it is shown only now:\n{secret}\nsend it as: Authorization: Bearer {secret}",
                if read_only { " (read-only)" } else { "" }
            ))
        }
        TokenCommand::List { json } => {
            use portcullis_management::store::Store as _;
            let list = store.tokens()?;
            if json {
                return Ok(serde_json::to_string_pretty(&list)?);
            }
            let lines: Vec<String> = list
                .iter()
                .map(|t| {
                    let expiry = t.expires_at.as_deref().unwrap_or("never");
                    format!(
                        "{}\t{}\tcreated {}\texpires {expiry}",
                        t.name,
                        if t.read_only { "read-only" } else { "read-write" },
                        t.created_at
                    )
                })
                .collect();
            Ok(if lines.is_empty() { "no tokens".to_owned() } else { lines.join("\n") })
        }
        TokenCommand::Delete { name, json } => {
            use portcullis_management::store::Store as _;
            let deleted = store.delete_token(&name)?;
            if json {
                return Ok(serde_json::to_string(&json!({"name": name, "deleted": deleted}))?);
            }
            if !deleted {
                anyhow::bail!("no token named {name:?} (see `portcullis ctl token list`)");
            }
            Ok(format!("token {name:?} deleted"))
        }
    }
}

/// `portcullis import apiops DIR`: through the running gateway, as one change.
pub fn import_apiops(data_dir: &DataDir, dir: &Path, json: bool) -> anyhow::Result<String> {
    let dir = std::path::absolute(dir)?;
    let response = ctl::succeeded(ctl::request(data_dir, &Request::ImportApiops { dir: dir.display().to_string() })?)?;
    let report = response.plan.unwrap_or(Value::Null);
    if json {
        return Ok(serde_json::to_string_pretty(&report)?);
    }
    let lines: Vec<String> =
        report.as_array().into_iter().flatten().filter_map(|line| line.as_str().map(str::to_owned)).collect();
    Ok(lines.join("\n"))
}

fn listing(list: &Value, json: bool, line: impl Fn(&Value) -> String) -> String {
    if json {
        return serde_json::to_string_pretty(list).unwrap_or_default();
    }
    let lines: Vec<String> = list["value"].as_array().into_iter().flatten().map(line).collect();
    if lines.is_empty() { "none".to_owned() } else { lines.join("\n") }
}

/// An API id from a file name: lower case, runs of other characters as one `-`.
fn id_from_file(file: &Path) -> String {
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("api").to_ascii_lowercase();
    let mut id = String::new();
    for c in stem.chars() {
        if c.is_ascii_alphanumeric() {
            id.push(c);
        } else if !id.ends_with('-') && !id.is_empty() {
            id.push('-');
        }
    }
    let id = id.trim_end_matches('-');
    if id.is_empty() { "api".to_owned() } else { id.chars().take(80).collect() }
}

/// 24 hex digits, as APIM's generated ids.
fn random_id() -> String {
    let bytes: [u8; 12] = std::array::from_fn(|_| getrandom::u32().unwrap_or_default() as u8);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
