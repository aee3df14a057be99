//! What `up` decides before starting any process: data and config directories, the data plane
//! binary, the config check, the first generation; and the demo lines printed once it runs.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use portcullis_contract::key_index::KeySlot;
use portcullis_contract::layout::DataDir;
use portcullis_contract::model::{Config, SubscriptionScope, SubscriptionState};
use portcullis_contract::snapshot::{self, HEADER_LEN};

use super::{DATAPLANE_BIN, DATAPLANE_ENV, Plan, UpOptions};
use crate::admin::server as admin_server;
use crate::config::{self, check_values};
use crate::{data_dir, quickstart};

/// Resolves directories and binaries and checks the config; starts nothing.
pub(super) fn plan(options: UpOptions) -> anyhow::Result<Plan> {
    let root = data_dir::resolve(options.data_dir.as_deref())?;
    let data_dir = data_dir::prepare(&root)?;
    admin_server::claim(&data_dir.admin_socket(), &root)?;
    let config_dir = match &options.config {
        Some(dir) => std::path::absolute(dir).unwrap_or_else(|_| dir.clone()),
        None => {
            let (dir, created) = quickstart::materialise(&root)?;
            if created {
                tracing::info!(
                    "wrote the demo config to {} with fresh keys; edit it and run `portcullis ctl reload`",
                    dir.display()
                );
            }
            dir
        }
    };
    tracing::info!("using config {}", config_dir.display());
    let exe = std::env::current_exe().context("cannot find the portcullis binary's own path")?;
    let dataplane_bin = dataplane_binary(options.dataplane_bin.as_deref(), &exe)?;
    config::load(&config_dir, &check_values(!options.no_echo_backend))?;
    Ok(Plan { options, data_dir, config_dir, dataplane_bin, exe })
}

fn dataplane_binary(explicit: Option<&Path>, exe: &Path) -> anyhow::Result<PathBuf> {
    let chosen = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(DATAPLANE_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| exe.with_file_name(DATAPLANE_BIN));
    if !chosen.is_file() {
        anyhow::bail!(
            "the data plane binary {} does not exist (build it with `cargo build --bin {DATAPLANE_BIN}`, \
             or pass --dataplane-bin / set {DATAPLANE_ENV})",
            chosen.display()
        );
    }
    Ok(chosen)
}

/// One more than the generation of the last-good snapshot on disk, or 1.
pub fn next_generation(data_dir: &DataDir) -> u64 {
    let mut header = [0u8; HEADER_LEN];
    let read = std::fs::File::open(data_dir.last_good_snapshot())
        .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut header));
    match read.ok().and_then(|()| snapshot::decode_header(&header).ok()) {
        Some(header) => header.generation.saturating_add(1),
        None => 1,
    }
}

/// The demo key and a curl command, when the config has an active subscription "demo".
pub fn demo_lines(config: &Config, listen: &str) -> Vec<String> {
    let Some((index, demo)) = config
        .subscriptions
        .iter()
        .enumerate()
        .find(|(_, s)| s.id == quickstart::DEMO_SUBSCRIPTION && s.state == SubscriptionState::Active)
    else {
        return Vec::new();
    };
    let key = config
        .key_index
        .entries()
        .iter()
        .find(|entry| entry.subscription as usize == index && entry.slot == KeySlot::Primary);
    let Some(key) = key else { return Vec::new() };
    let api = match demo.scope {
        SubscriptionScope::Api(api) => config.apis.get(api as usize),
        SubscriptionScope::AllApis => config.apis.first(),
        SubscriptionScope::Product(product) => config
            .products
            .get(product as usize)
            .and_then(|product| product.apis.first())
            .and_then(|&api| config.apis.get(api as usize)),
    };
    let mut lines = vec![format!("demo subscription key: {}", key.key)];
    if let Some(api) = api {
        let prefix = if api.path.is_empty() { String::new() } else { format!("/{}", api.path) };
        lines
            .push(format!("try: curl -H '{}: {}' http://{listen}{prefix}/hello", api.subscription_key_header, key.key));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_lines_for_the_quickstart_and_without_a_demo() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
        let mut config = config::load(&dir, &check_values(true)).unwrap();
        let lines = demo_lines(&config, "127.0.0.1:8080");
        assert_eq!(
            lines,
            [
                "demo subscription key: 0123456789abcdef0123456789abcdef",
                "try: curl -H 'Ocp-Apim-Subscription-Key: 0123456789abcdef0123456789abcdef' http://127.0.0.1:8080/echo/hello",
            ]
        );
        config.subscriptions[0].state = SubscriptionState::Suspended;
        assert!(demo_lines(&config, "x").is_empty());
    }

    #[test]
    fn generations_continue_from_the_last_good_snapshot() {
        let root = std::env::temp_dir().join(format!("portcullis-generation-{}", std::process::id()));
        let data_dir = data_dir::prepare(&root).unwrap();
        assert_eq!(next_generation(&data_dir), 1);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
        let config = config::load(&dir, &check_values(true)).unwrap();
        std::fs::write(data_dir.last_good_snapshot(), snapshot::encode(41, &config).unwrap()).unwrap();
        assert_eq!(next_generation(&data_dir), 42);
        std::fs::write(data_dir.last_good_snapshot(), b"garbage").unwrap();
        assert_eq!(next_generation(&data_dir), 1);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_missing_dataplane_binary_says_how_to_fix_it() {
        let error = dataplane_binary(Some(Path::new("/nonexistent/dp")), Path::new("/x/portcullis")).unwrap_err();
        assert!(error.to_string().contains("--dataplane-bin"), "{error}");
    }
}
