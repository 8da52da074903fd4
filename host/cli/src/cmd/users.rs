//! `devext users create | list | disable | enable | reset-password`: the people who sign in to
//! the dashboard. Passwords are read from the terminal without echo, or from the first line of
//! standard input when it is not a terminal: never from a flag (flags end up in shell history
//! and process lists).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand};
use devext_service::store::{AnyStore, Org, Role, Store, User};
use devext_service::users;

use super::serve::{audit_cli, open_store, tokio};

#[derive(Subcommand)]
pub(crate) enum UsersCommand {
    /// Create a user of an organisation (password from a prompt or stdin)
    Create(CreateArgs),
    /// List the users of an organisation
    List(ListArgs),
    /// Disable a user (their sessions end at once)
    Disable(EmailArgs),
    /// Enable a disabled user
    Enable(EmailArgs),
    /// Set a new password for a user (from a prompt or stdin); their sessions end
    ResetPassword(EmailArgs),
}

#[derive(Args)]
pub(crate) struct CreateArgs {
    /// The organisation's name
    #[arg(long)]
    org: String,
    /// The user's email (unique in the store)
    #[arg(long)]
    email: String,
    /// admin, operator or viewer
    #[arg(long)]
    role: String,
    /// SQLite database
    #[arg(long, env = "DEVEXT_DB", default_value = "devext.db")]
    db: PathBuf,
}

#[derive(Args)]
pub(crate) struct ListArgs {
    /// The organisation's name
    #[arg(long)]
    org: String,
    /// SQLite database
    #[arg(long, env = "DEVEXT_DB", default_value = "devext.db")]
    db: PathBuf,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct EmailArgs {
    /// The user's email
    #[arg(long)]
    email: String,
    /// SQLite database
    #[arg(long, env = "DEVEXT_DB", default_value = "devext.db")]
    db: PathBuf,
}

/// A password from the terminal (asked twice, not echoed) or the first line of stdin.
pub(crate) fn read_password(what: &str) -> Result<String> {
    let password = if std::io::stdin().is_terminal() {
        let first =
            rpassword::prompt_password(format!("{what}: ")).context("cannot read the password")?;
        let again = rpassword::prompt_password(format!("{what} (again): "))
            .context("cannot read the password")?;
        if first != again {
            return Err(anyhow!("the two passwords differ"));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    users::check_password(&password)?;
    Ok(password)
}

async fn org_named(store: &AnyStore, name: &str) -> Result<Org> {
    store
        .org_by_name(name)
        .await?
        .ok_or_else(|| anyhow!("no organisation named {name:?}"))
}

async fn user_by_email(store: &AnyStore, email: &str) -> Result<User> {
    Ok(store
        .user_credentials(email)
        .await?
        .ok_or_else(|| anyhow!("no user with the email {email:?}"))?
        .user)
}

pub(crate) fn run(command: &UsersCommand) -> Result<ExitCode> {
    match command {
        UsersCommand::Create(args) => {
            let role: Role = args.role.parse()?;
            users::check_email(&args.email)?;
            let password = read_password("Password")?;
            tokio()?.block_on(async {
                let store = open_store(&args.db).await?;
                let org = org_named(&store, &args.org).await?;
                let user = users::create_user(&store, org.id, &args.email, role, &password).await?;
                audit_cli(
                    &store,
                    org.id,
                    "user",
                    &user.email,
                    &format!("{} user created", role.as_str()),
                )
                .await?;
                println!(
                    "created {} user {} in {}",
                    role.as_str(),
                    user.email,
                    org.name
                );
                Ok(ExitCode::SUCCESS)
            })
        }
        UsersCommand::List(args) => tokio()?.block_on(async {
            let store = open_store(&args.db).await?;
            let org = org_named(&store, &args.org).await?;
            let list = store.users(org.id).await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"items": list}))?
                );
            } else {
                for u in &list {
                    let state = if u.disabled { "disabled" } else { "active" };
                    println!(
                        "{}  {}  {state}  (created {})",
                        u.email,
                        u.role.as_str(),
                        u.created_at
                    );
                }
                if list.is_empty() {
                    println!("no users in {} (devext users create)", org.name);
                }
            }
            Ok(ExitCode::SUCCESS)
        }),
        UsersCommand::Disable(args) | UsersCommand::Enable(args) => {
            let disable = matches!(command, UsersCommand::Disable(_));
            tokio()?.block_on(async {
                let store = open_store(&args.db).await?;
                let user = user_by_email(&store, &args.email).await?;
                store
                    .set_user_disabled(user.org_id, &user.id, disable)
                    .await?;
                let what = if disable {
                    "disabled; their sessions ended"
                } else {
                    "enabled"
                };
                audit_cli(&store, user.org_id, "user", &user.email, what).await?;
                println!("{} {what}", user.email);
                Ok(ExitCode::SUCCESS)
            })
        }
        UsersCommand::ResetPassword(args) => {
            let password = read_password("New password")?;
            tokio()?.block_on(async {
                let store = open_store(&args.db).await?;
                let user = user_by_email(&store, &args.email).await?;
                let hash = users::hash_password(&password)?;
                store
                    .set_password(user.org_id, &user.id, &hash, None)
                    .await?;
                audit_cli(&store, user.org_id, "user", &user.email, "password reset").await?;
                println!("password of {} reset; their sessions ended", user.email);
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}
