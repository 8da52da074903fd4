//! The `devext` binary's tests: each runs the real binary as a child process.

mod cli;
mod devices_cli;
mod plugins_new;
mod serve_cli;
mod util {
    pub(crate) use devext_test_support::{library, plugin_dir};
}
mod validate_cli;
