//! Inventory options shared by every command that needs an account's inventory (the DESIGN
//! contract: `--inventory FILE…` with AWS CLI JSON outputs, or `--live` through the AWS SDK
//! with `--endpoint-url` and the usual AWS environment), and the role ownership `detect`
//! derives from owner tags.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use aws::{Inventory, LiveOptions, Session};

/// Where an account's inventory comes from.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct InventoryArgs {
    /// AWS CLI JSON outputs: describe-nat-gateways, describe-vpcs, describe-vpc-endpoints, get-account-authorization-details.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub inventory: Vec<PathBuf>,
    /// Read the inventory from the account through the AWS SDK (credentials and region from the usual AWS environment).
    #[arg(long)]
    pub live: bool,
    /// With --live: read the network of these regions only (comma-separated) [default: every
    /// region enabled for the account].
    #[arg(long = "regions", value_name = "REGION", value_delimiter = ',')]
    pub regions: Vec<String>,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub members: MemberArgs,
}

/// Member accounts, each read through a role assumed in it.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct MemberArgs {
    /// Work in these member accounts (ids, or names from --registry; comma-separated), each
    /// through --assume-role-name [default: every active account of --registry].
    #[arg(
        long = "accounts",
        value_name = "ACCOUNT",
        value_delimiter = ',',
        requires = "assume_role_name"
    )]
    pub accounts: Vec<String>,
    /// The role assumed in each member account (session name "credwarden"). Without it:
    /// the credentials' own account only.
    #[arg(long, value_name = "NAME")]
    pub assume_role_name: Option<String>,
    /// The state file holding the account registry (`credwarden accounts sync`): names for
    /// --accounts, and every active account when --accounts is not given.
    #[arg(long, value_name = "FILE")]
    pub registry: Option<PathBuf>,
}

/// One account a command works in.
pub struct Target {
    /// `None`: the credentials' own account (no role assumed).
    pub account: Option<String>,
    /// How messages name it: "111122223333 (payments-prod)".
    pub label: String,
    pub session: Session,
    /// The credentials' own account id, asked of STS once when first needed.
    own_id: std::sync::OnceLock<String>,
}

impl Target {
    /// The account this target is in: the member account, or the credentials' own
    /// (`sts:GetCallerIdentity`, once per target however often it is asked).
    pub fn account_id(&self) -> Result<String> {
        if let Some(id) = &self.account {
            return Ok(id.clone());
        }
        if let Some(id) = self.own_id.get() {
            return Ok(id.clone());
        }
        let id = self.session.account_id()?;
        Ok(self.own_id.get_or_init(|| id).clone())
    }
}

/// The accounts reached, and those that could not be (label, why).
pub struct Reach {
    pub targets: Vec<Target>,
    pub failed: Vec<(String, String)>,
}

impl MemberArgs {
    pub fn is_set(&self) -> bool {
        self.assume_role_name.is_some()
    }

    /// The member accounts (id, label) these options name.
    fn accounts(&self) -> Result<Vec<(String, String)>> {
        // The registry is read once: names for --accounts, every active account, labels.
        let rows = match &self.registry {
            Some(r) => Some(store::Store::open(r)?.accounts()?),
            None => None,
        };
        let names = rows.as_deref().map(run::AccountNames::from_accounts);
        let ids: Vec<String> = match (self.accounts.is_empty(), &rows, &self.registry) {
            (false, _, _) => crate::accounts_cmd::resolve_names(
                &self.accounts,
                names.as_ref(),
                "--accounts",
                "--registry",
            )?,
            (true, Some(rows), Some(r)) => crate::accounts_cmd::active_accounts(rows, r)?,
            _ => bail!(
                "--assume-role-name needs the accounts to work in: --accounts ID,… or \
                 --registry FILE (every active account of the registry)"
            ),
        };
        let names = names.unwrap_or_default();
        let mut out: Vec<(String, String)> = Vec::new();
        for id in ids {
            if out.iter().any(|(seen, _)| *seen == id) {
                continue;
            }
            let label = match names.name_of(&id) {
                Some(name) => format!("{id} ({name})"),
                None => id.clone(),
            };
            out.push((id, label));
        }
        Ok(out)
    }

    /// Connect: the credentials' own account, or each member account through its role. An
    /// account whose role cannot be assumed is in `failed`, the others are reached.
    pub fn reach(&self, aws: &AwsArgs, regions: &[String]) -> Result<Reach> {
        let base = Session::connect(&LiveOptions {
            endpoint_url: aws.endpoint_url.clone(),
            region: aws.region.clone(),
            regions: regions.to_vec(),
        })?;
        let Some(role) = &self.assume_role_name else {
            return Ok(Reach {
                targets: vec![Target {
                    account: None,
                    label: "the credentials' account".into(),
                    session: base,
                    own_id: Default::default(),
                }],
                failed: Vec::new(),
            });
        };
        let mut reach = Reach {
            targets: Vec::new(),
            failed: Vec::new(),
        };
        for (id, label) in self.accounts()? {
            match base.assume_member(&id, role) {
                Ok(session) => reach.targets.push(Target {
                    account: Some(id),
                    label,
                    session,
                    own_id: Default::default(),
                }),
                Err(e) => reach.failed.push((label, e.to_string())),
            }
        }
        Ok(reach)
    }
}

impl Reach {
    /// Where a role named on the command line lives: an ARN names its account (and must be
    /// one reached); a bare name means every reached account whose inventory holds a role of
    /// that name — or, without member accounts, the credentials' own account. Returns the
    /// targets with the role's name in each.
    pub fn role_targets<'a>(
        &'a self,
        inv: &Inventory,
        role: &str,
    ) -> Result<Vec<(&'a Target, String)>> {
        if role.starts_with("arn:") {
            let parts = iam::wildcard::arn_parts(role);
            let Some((account, name)) = parts.and_then(|p| {
                let path = p[5].strip_prefix("role/")?;
                Some((p[4], path.rsplit('/').next().unwrap_or(path)))
            }) else {
                bail!("{role}: not a role ARN");
            };
            for t in &self.targets {
                if t.account_id()? == *account {
                    return Ok(vec![(t, name.to_owned())]);
                }
            }
            bail!("{role}: account {account} is not one this command reached");
        }
        if self.targets.len() == 1 && self.targets[0].account.is_none() {
            return Ok(vec![(&self.targets[0], role.to_owned())]);
        }
        let found: Vec<(&Target, String)> = self
            .targets
            .iter()
            .filter(|t| {
                inv.roles.iter().any(|r| {
                    r.name == role
                        && t.account.as_deref().is_some_and(|a| {
                            credwarden_core::account::arn_account(&r.arn) == Some(a)
                        })
                })
            })
            .map(|t| (t, role.to_owned()))
            .collect();
        if found.is_empty() {
            bail!("{role}: no reached account has a role of that name");
        }
        Ok(found)
    }
}

/// How to reach AWS.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AwsArgs {
    /// Send every AWS call to this endpoint (a VPC endpoint, an emulator).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS region (default: AWS_REGION / the profile's region).
    #[arg(long)]
    pub region: Option<String>,
}

impl AwsArgs {
    pub fn connect(&self) -> Result<Session> {
        Ok(Session::connect(&LiveOptions {
            endpoint_url: self.endpoint_url.clone(),
            region: self.region.clone(),
            regions: Vec::new(),
        })?)
    }
}

impl InventoryArgs {
    /// Load the inventory; problems (truncated files, unreadable documents) go to `warn`.
    pub fn load(&self, warn: &mut dyn std::io::Write) -> Result<Inventory> {
        Ok(self.load_reached(warn)?.0)
    }

    /// The inventory, and with `--live` the accounts it was read from (for writing back).
    /// With member accounts every account's inventory is merged (a lock covers the
    /// organisation's network); an account that cannot be reached or read is in
    /// `unread_accounts`, the rest is still read.
    pub fn load_reached(
        &self,
        warn: &mut dyn std::io::Write,
    ) -> Result<(Inventory, Option<Reach>)> {
        if self.inventory.is_empty() && !self.live {
            bail!("this command needs an inventory: --inventory FILE… (AWS CLI JSON) or --live");
        }
        if self.members.is_set() && !self.live {
            bail!("--assume-role-name reads member accounts live: add --live");
        }
        let mut inv = Inventory::from_files(&self.inventory)?;
        let mut reached = None;
        if self.live {
            let reach = self.members.reach(&self.aws, &self.regions)?;
            for (label, why) in &reach.failed {
                inv.problems
                    .push(format!("account {label} could not be reached: {why}"));
                inv.unread_accounts.push(label.clone());
            }
            for t in &reach.targets {
                match t.session.inventory() {
                    Ok(mut live) => {
                        writeln!(
                            warn,
                            "inventory: {}: network read in {} region(s): {}",
                            t.label,
                            live.network_regions.len(),
                            live.network_regions.join(", ")
                        )?;
                        if t.account.is_some() {
                            for p in &mut live.problems {
                                *p = format!("account {}: {p}", t.label);
                            }
                            for r in &mut live.unread_regions {
                                *r = format!("{}/{r}", t.label);
                            }
                        }
                        inv.merge(live);
                    }
                    Err(e) if t.account.is_some() => {
                        inv.problems
                            .push(format!("account {} could not be read: {e}", t.label));
                        inv.unread_accounts.push(t.label.clone());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            reached = Some(reach);
        }
        for p in &inv.problems {
            writeln!(warn, "warning: inventory: {p}")?;
        }
        Ok((inv, reached))
    }
}

/// Ownership learned from tags: (role and instance-profile ARN → application,
/// principal ARN → application). A role's own principal acts for its application.
pub type TagOwnership = (Vec<(String, String)>, Vec<(String, String)>);

pub fn ownership_from_tags(paths: &[impl AsRef<Path>], tag_key: &str) -> Result<TagOwnership> {
    let inv = Inventory::from_files(paths)?;
    let (mut roles, mut principals) = (Vec::new(), Vec::new());
    for r in &inv.roles {
        if let Some(app) = r.tags.get(tag_key) {
            for ip in &r.instance_profiles {
                roles.push((ip.clone(), app.clone()));
            }
            roles.push((r.arn.clone(), app.clone()));
            principals.push((r.arn.clone(), app.clone()));
        }
    }
    for u in &inv.users {
        if let Some(app) = u.tags.get(tag_key) {
            principals.push((u.arn.clone(), app.clone()));
        }
    }
    Ok((roles, principals))
}
