//! `portcullis apply DIR` and `portcullis export DIR`: the config directory into the management
//! store and back, through the running gateway when there is one.

use std::path::Path;

use portcullis_contract::layout::DataDir;
use portcullis_management::service::{AcceptAll, Service};

use super::{Plan, STORE_FILE, StoreCompiler};
use crate::admin::Request;
use crate::config::{self, resources};
use crate::ctl::{self, CtlError};

/// `apply`: through the running gateway (which publishes the result), or straight into the
/// store file when none runs. Returns what to print.
pub fn apply(data_dir: &DataDir, dir: &Path, dry_run: bool, json: bool) -> anyhow::Result<String> {
    let dir = std::path::absolute(dir)?;
    let request = Request::Apply { dir: dir.display().to_string(), dry_run };
    let plan = match ctl::request(data_dir, &request) {
        Ok(response) => {
            let response = ctl::succeeded(response)?;
            let plan = response.plan.ok_or_else(|| anyhow::anyhow!("the gateway answered without a plan"))?;
            serde_json::from_value::<PlanJson>(plan)?.into()
        }
        Err(CtlError::NotRunning { .. }) => apply_offline(data_dir, &dir, dry_run)?,
        Err(error) => return Err(error.into()),
    };
    if json {
        return Ok(serde_json::to_string_pretty(&plan)?);
    }
    let mut lines = plan.lines();
    if dry_run {
        lines.push("dry run: nothing was changed".to_owned());
    }
    Ok(lines.join("\n"))
}

fn apply_offline(data_dir: &DataDir, dir: &Path, dry_run: bool) -> anyhow::Result<Plan> {
    std::fs::create_dir_all(data_dir.root())?;
    let compiler = StoreCompiler::new(dir.to_path_buf(), config::check_values(true), None);
    let mut service = super::open(data_dir.root(), compiler)?;
    Ok(super::apply(&mut service, dir, &config::check_values(true), dry_run)?)
}

/// `export`: writes the store's resources as a config directory `apply` accepts unchanged.
/// `dir` must not exist or be empty (nothing is overwritten).
pub fn export(data_dir: &DataDir, dir: &Path, format: &str, json: bool) -> anyhow::Result<String> {
    if !matches!(format, "dir" | "apiops") {
        anyhow::bail!("unknown export format {format:?}: use dir (a config directory) or apiops (an APIOps extract)");
    }
    let store_path = data_dir.root().join(STORE_FILE);
    if !store_path.is_file() {
        anyhow::bail!("no management store at {} (start the gateway once, or pass --data-dir)", store_path.display());
    }
    if dir.read_dir().is_ok_and(|mut entries| entries.next().is_some()) {
        anyhow::bail!("{} is not empty: export into a new directory", dir.display());
    }
    let store = portcullis_management::store::open(&store_path)?;
    let (service, _) = Service::open(Box::new(store), Box::new(AcceptAll))?;
    if format == "apiops" {
        let report = portcullis_management::apiops::export(service.state(), dir)?;
        let lines: Vec<String> = report.iter().map(ToString::to_string).collect();
        if json {
            return Ok(serde_json::to_string_pretty(&lines)?);
        }
        return Ok(format!("{}\nexported an APIOps extract into {}", lines.join("\n"), dir.display()));
    }
    let files = resources::files(service.state());
    for (file, rendered) in &files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &rendered.text)?;
    }
    let written: Vec<&String> = files.keys().collect();
    if json {
        return Ok(serde_json::to_string_pretty(&serde_json::json!({"directory": dir, "files": written}))?);
    }
    Ok(format!("exported {} resources into {} files under {}", service.state().len(), files.len(), dir.display()))
}

/// A plan as the admin socket sends it.
#[derive(serde::Deserialize)]
struct PlanJson {
    create: Vec<super::Planned>,
    update: Vec<super::Planned>,
    delete: Vec<super::Planned>,
}

impl From<PlanJson> for Plan {
    fn from(plan: PlanJson) -> Self {
        Plan { create: plan.create, update: plan.update, delete: plan.delete }
    }
}
