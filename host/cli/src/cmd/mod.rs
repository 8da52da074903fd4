//! The subcommands of `devext`, one module each.

use anyhow::Result;
use devext_host::Runtime;

use crate::{GlobalArgs, runtime_config};

pub(crate) mod devices;
pub(crate) mod invoke;
pub(crate) mod jobs;
pub(crate) mod plugins;
pub(crate) mod plugins_lock;
pub(crate) mod schema;
pub(crate) mod serve;
pub(crate) mod store_maint;
pub(crate) mod users;
pub(crate) mod validate;

/// Loads the runtime for a one-shot command (`validate`, `schema`), warning on stderr about each
/// refused plugin file: the command goes on with the plugins that did load.
pub(crate) fn load_plugins(global: &GlobalArgs) -> Result<Runtime> {
    let runtime = Runtime::load(runtime_config(global))?;
    for n in runtime.notices() {
        eprintln!("devext: notice: {n}");
    }
    for r in runtime.refused() {
        eprintln!(
            "devext: warning: plugin refused: {}: {}",
            r.source, r.reason
        );
    }
    Ok(runtime)
}
