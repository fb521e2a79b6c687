//! `credwarden accounts sync / list`: the account registry in the state file. Findings of
//! runs using that state file carry each account's name and owner; `detect --accounts` takes
//! names as well as ids.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use credwarden_core::account::is_account_id;
use store::{Account, Store};

use crate::inventory::AwsArgs;

#[derive(Clone, Debug, clap::Args)]
pub struct SyncArgs {
    /// The state file holding the registry (the one `detect --state` uses).
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Read AWS Organizations (ListAccounts, OUs, tags): the management account or a
    /// delegated administrator.
    #[arg(long, conflicts_with = "file")]
    pub live: bool,
    /// Read `aws organizations list-accounts` JSON instead (each account may carry `Tags`).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The tag naming an account's owner.
    #[arg(long, value_name = "KEY", default_value = "owner")]
    pub owner_tag: String,
    /// The tag naming an account's environment.
    #[arg(long, value_name = "KEY", default_value = "environment")]
    pub environment_tag: String,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Clone, Debug, clap::Args)]
pub struct ListArgs {
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn tag(tags: &BTreeMap<String, String>, key: &str) -> Option<String> {
    tags.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.clone())
}

pub fn sync(args: &SyncArgs, out: &mut dyn Write) -> Result<()> {
    let found = match (&args.file, args.live) {
        (Some(file), false) => aws::accounts_from_file(file)?,
        (None, true) => args
            .aws
            .connect()?
            .organization_accounts()
            .context("reading AWS Organizations")?,
        _ => bail!("give --live or --file FILE"),
    };
    let accounts: Vec<Account> = found
        .iter()
        .map(|a| Account {
            id: a.id.clone(),
            name: a.name.clone(),
            email: a.email.clone(),
            status: a.status.clone(),
            ou: a.ou.clone(),
            owner: tag(&a.tags, &args.owner_tag),
            environment: tag(&a.tags, &args.environment_tag),
            tags: serde_json::to_string(&a.tags).expect("tags serialise"),
        })
        .collect();
    let _lock = run::lock_state(&args.state)?;
    let mut store = Store::open(&args.state)?;
    store.accounts_replace(&accounts)?;
    let owned = accounts.iter().filter(|a| a.owner.is_some()).count();
    writeln!(
        out,
        "{} account(s) in the registry of {} ({owned} with an owner tag {:?})",
        accounts.len(),
        args.state.display(),
        args.owner_tag
    )?;
    Ok(())
}

/// Account ids for `requested` (ids, or names in the registry held by `registry`, read only
/// when a name is given). `flag` and `registry_flag` name the options in errors.
pub fn resolve_ids(
    requested: &[String],
    registry: Option<&Path>,
    flag: &str,
    registry_flag: &str,
) -> Result<Vec<String>> {
    let names = match registry {
        Some(r) if !requested.iter().all(|a| is_account_id(a)) => {
            Some(run::AccountNames::load(&Store::open(r)?)?)
        }
        _ => None,
    };
    resolve_names(requested, names.as_ref(), flag, registry_flag)
}

/// Account ids for `requested` with the registry's names, when there is a registry: one
/// resolution for every command that takes accounts.
pub fn resolve_names(
    requested: &[String],
    names: Option<&run::AccountNames>,
    flag: &str,
    registry_flag: &str,
) -> Result<Vec<String>> {
    requested
        .iter()
        .map(|a| match names {
            _ if is_account_id(a) => Ok(a.clone()),
            Some(names) => names.resolve(a).with_context(|| {
                format!("{flag}: {a:?} is neither an account id nor a name in the registry")
            }),
            None => bail!(
                "{flag} by name needs the account registry: give {registry_flag} FILE (after \
                 `credwarden accounts sync --state FILE`)"
            ),
        })
        .collect()
}

/// The ids of the active accounts among a registry's rows: what "every account" means.
pub fn active_accounts(accounts: &[Account], registry: &Path) -> Result<Vec<String>> {
    if accounts.is_empty() {
        bail!(
            "the registry in {} holds no accounts: run `credwarden accounts sync --state {}` first",
            registry.display(),
            registry.display()
        );
    }
    Ok(accounts
        .iter()
        .filter(|a| {
            a.status
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case("ACTIVE"))
        })
        .map(|a| a.id.clone())
        .collect())
}

pub fn list(args: &ListArgs, out: &mut dyn Write) -> Result<()> {
    let store = Store::open(&args.state)?;
    let accounts = store.accounts()?;
    if args.json {
        for a in &accounts {
            writeln!(out, "{}", serde_json::to_string(a)?)?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<14}{:<28}{:<22}{:<14}OU",
        "ACCOUNT", "NAME", "OWNER", "ENVIRONMENT"
    )?;
    for a in &accounts {
        writeln!(
            out,
            "{:<14}{:<28}{:<22}{:<14}{}",
            a.id,
            a.name,
            a.owner.as_deref().unwrap_or("-"),
            a.environment.as_deref().unwrap_or("-"),
            a.ou.as_deref().unwrap_or("-")
        )?;
    }
    Ok(())
}
