//! `devext schema export|check|diff`: the plugins' schemas as files for everyone else, and
//! the CI gates around them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use devext_host::schema_export::{self, Breaking};
use serde_json::{Value, json};

use super::load_plugins;
use crate::GlobalArgs;

#[derive(Args)]
pub(crate) struct SchemaArgs {
    #[command(flatten)]
    pub(crate) global: crate::GlobalArgs,
    #[command(subcommand)]
    command: SchemaCommand,
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Write each plugin's org-config, device-config and operation schemas, and the combined
    /// device-extensions.schema.json, into DIR (files of removed plugins are deleted); without
    /// --out, print one of them (the combined one unless --file says which)
    Export {
        /// The directory (created if needed)
        #[arg(long, value_name = "DIR", conflicts_with = "file")]
        out: Option<PathBuf>,
        /// Without --out: the schema file to print, e.g. jasper.device-config.schema.json
        #[arg(long, value_name = "NAME")]
        file: Option<String>,
    },
    /// Exit 1, naming the files, if the schemas in DIR no longer match the plugins
    Check {
        /// The directory of committed schemas
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// List the breaking changes from OLD to NEW (two versions of a schema, or two directories
    /// of them) and exit 1 if there is one
    Diff {
        /// The old schema file or directory
        old: PathBuf,
        /// The new schema file or directory
        new: PathBuf,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn schema(global: &GlobalArgs, args: &SchemaArgs) -> Result<ExitCode> {
    match &args.command {
        SchemaCommand::Export { out: None, file } => {
            let files = schema_export::export(&load_plugins(global)?);
            // By default the combined schema of a device's whole extension configuration.
            let name = file.as_deref().unwrap_or(schema_export::COMBINED);
            match files.get(name) {
                Some(text) => {
                    print!("{text}");
                    Ok(ExitCode::SUCCESS)
                }
                None => Err(anyhow::anyhow!(
                    "no schema file {name:?}; the plugins give: {}",
                    files
                        .keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        SchemaCommand::Export {
            out: Some(out),
            file: _,
        } => {
            let files = schema_export::export(&load_plugins(global)?);
            let w = schema_export::write(out, &files)
                .with_context(|| format!("cannot write the schemas to {}", out.display()))?;
            for p in &w.written {
                println!("wrote {}", p.display());
            }
            for p in &w.removed {
                println!("removed {}", p.display());
            }
            println!(
                "{} schema files in {} ({} written, {} unchanged, {} removed)",
                files.len(),
                out.display(),
                w.written.len(),
                w.unchanged,
                w.removed.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        SchemaCommand::Check { dir } => {
            let files = schema_export::export(&load_plugins(global)?);
            let drift = schema_export::check(dir, &files)
                .with_context(|| format!("cannot check {}", dir.display()))?;
            if drift.is_empty() {
                println!(
                    "{} schema files in {} are up to date",
                    files.len(),
                    dir.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            for d in &drift {
                println!("{d}");
            }
            println!(
                "{} of the schema files in {} are out of date; run: devext schema export --out {}",
                drift.len(),
                dir.display(),
                dir.display()
            );
            Ok(ExitCode::from(1))
        }
        SchemaCommand::Diff { old, new, json } => diff(old, new, *json),
    }
}

/// Exit codes: 0 no breaking change, 1 breaking changes, 3 an input could not be read or is
/// not JSON.
fn diff(old: &Path, new: &Path, as_json: bool) -> Result<ExitCode> {
    let pairs = match pairs(old, new) {
        Ok(pairs) => pairs,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(3));
        }
    };
    let mut found: Vec<(String, Breaking)> = Vec::new();
    for (label, old_path, new_path) in &pairs {
        let Some(new_path) = new_path else {
            found.push((
                label.clone(),
                Breaking {
                    pointer: String::new(),
                    kind: "schema_removed",
                    message: format!(
                        "{} has no counterpart in {}",
                        old_path.display(),
                        new.display()
                    ),
                },
            ));
            continue;
        };
        let (o, n) = match (read_json(old_path), read_json(new_path)) {
            (Ok(o), Ok(n)) => (o, n),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("error: {e:#}");
                return Ok(ExitCode::from(3));
            }
        };
        found.extend(
            schema_export::diff(&o, &n)
                .into_iter()
                .map(|b| (label.clone(), b)),
        );
    }
    if as_json {
        let out = json!({
            "breaking": found.iter().map(|(file, b)| json!({
                "file": file, "pointer": b.pointer, "kind": b.kind, "message": b.message,
            })).collect::<Vec<_>>(),
        });
        println!("{out}");
    } else {
        for (file, b) in &found {
            println!("{file}: {b}");
        }
        match found.len() {
            0 => println!("no breaking changes"),
            1 => println!("1 breaking change"),
            n => println!("{n} breaking changes"),
        }
    }
    Ok(ExitCode::from(u8::from(!found.is_empty())))
}

/// The schemas to compare: a pair of files, or each `*.json` of the old directory with the
/// same name in the new one (`None` when it is gone). Labels name the new file.
fn pairs(old: &Path, new: &Path) -> Result<Vec<(String, PathBuf, Option<PathBuf>)>> {
    if !(old.is_dir() && new.is_dir()) {
        for p in [old, new] {
            if p.is_dir() {
                anyhow::bail!(
                    "{}: compare a file with a file, or a directory with a directory",
                    p.display()
                );
            }
        }
        return Ok(vec![(
            new.display().to_string(),
            old.to_owned(),
            Some(new.to_owned()),
        )]);
    }
    let mut names: Vec<_> = std::fs::read_dir(old)
        .with_context(|| format!("cannot read {}", old.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .filter(|n| n.to_str().is_some_and(|n| n.ends_with(".json")))
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| {
            let n = new.join(&name);
            let label = n.display().to_string();
            let exists = n.is_file();
            (label, old.join(&name), exists.then_some(n))
        })
        .collect())
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: not JSON: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })
}
