//! The subcommands of `devext`, one module each.

pub(crate) mod invoke;
pub(crate) mod plugins;
pub(crate) mod schema;
pub(crate) mod serve;
pub(crate) mod validate;
