//! The embedded default: a small main.cf and table that let `proxymap
//! standalone` serve lookups with no Postfix installed and no configuration.

use super::MasterError;
use crate::config::settings::Settings;
use std::path::Path;

const MAIN_CF: &str = include_str!("../../examples/demo/main.cf");
const VIRTUAL: &str = include_str!("../../examples/demo/virtual");

/// Write the demo files under `dir` (keeping any the user edited) and return
/// settings that serve them from `dir/private/`.
pub(crate) fn settings(dir: &Path) -> Result<Settings, MasterError> {
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    let main_cf = dir.join("main.cf");
    if !main_cf.exists() {
        std::fs::write(&main_cf, MAIN_CF.replace("@DEMO_DIR@", &dir.display().to_string()))?;
    }
    let virtual_table = dir.join("virtual");
    if !virtual_table.exists() {
        std::fs::write(&virtual_table, VIRTUAL)?;
    }
    Ok(Settings { config_directory: Some(dir.clone()), socket_directory: dir.join("private"), ..Settings::default() })
}
