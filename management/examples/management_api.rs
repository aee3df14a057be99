//! The management API on an in-memory store with a compiler that accepts everything: what
//! `tests/management_schemathesis.sh` fuzzes. Not a way to run Portcullis (`portcullis up` is).
//!
//! `cargo run -p portcullis-management --example management_api -- 127.0.0.1:0 TOKEN_FILE`
//! prints `listening on ADDR` and writes a fresh read-write token to TOKEN_FILE.

use std::sync::Arc;

use portcullis_management::api::{ApiSettings, router};
use portcullis_management::service::{AcceptAll, Service};
use portcullis_management::store::SqliteStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let token_file = args.next().ok_or_else(|| anyhow::anyhow!("usage: management_api ADDR TOKEN_FILE"))?;
    let mut service = Service::open(Box::new(SqliteStore::in_memory()?), Box::new(AcceptAll))?.0;
    portcullis_management::seed_builtins(&mut service)?;
    let secret = portcullis_management::tokens::create(service.store_mut(), "schemathesis", None, false)?;
    std::fs::write(&token_file, secret)?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let app = router(Arc::new(tokio::sync::Mutex::new(service)), ApiSettings::default());
    axum::serve(listener, app).await?;
    Ok(())
}
