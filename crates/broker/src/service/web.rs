//! What the web UI needs of the broker beyond the API: an OIDC ID token verified by the same
//! verifier (keys, issuer, audience, claims) as API bearer tokens, and a signed-in user's
//! groups worked out afresh on every page, so that an approval or an expiry shows at once.

use std::collections::BTreeSet;

use super::{now_ms, Authenticator, Broker, Refusal};
use crate::auth::{self, Caller};
use crate::error::AuthError;

impl Broker {
    /// Verify an ID token from the identity provider's token endpoint as an API bearer token
    /// is verified, and return the user and the groups the provider asserted with the
    /// token's `nonce` claim (checked by the caller against the one it sent). Only the
    /// `jwt` authentication mode has an issuer to sign in with.
    pub async fn verify_id_token(&self, token: &str) -> Result<(Caller, Option<String>), Refusal> {
        let Authenticator::Jwt { keys, rules } = &self.auth else {
            return Err(Refusal::new(
                500,
                "internal",
                "web sign-in needs [auth] mode = \"jwt\"",
            ));
        };
        keys.refresh_if_due();
        let now = now_ms() / 1000;
        let caller = match auth::verify_jwt(token, &keys.current(), rules, now) {
            Err(AuthError::UnknownKey) if keys.refetch_for_unknown_key().await => {
                auth::verify_jwt(token, &keys.current(), rules, now)?
            }
            verified => verified?,
        };
        // The signature is good, so the payload is the provider's: read its nonce.
        let nonce = token
            .split('.')
            .nth(1)
            .and_then(|p| credwarden_core::encoding::Base64::UrlNoPad.decode(p))
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok())
            .and_then(|c| c.get("nonce").and_then(|n| n.as_str()).map(str::to_owned));
        Ok((caller, nonce))
    }

    /// The caller a web session stands for: the user and the provider's groups from sign-in,
    /// with the directory's and the approved memberships' groups read now (a store that
    /// cannot be read refuses, as for API requests).
    pub async fn session_caller(
        &self,
        user: &str,
        idp_groups: &BTreeSet<String>,
    ) -> Result<Caller, Refusal> {
        let mut caller = Caller {
            user: user.to_owned(),
            groups: idp_groups.clone(),
            idp_groups: idp_groups.clone(),
        };
        caller.groups.extend(self.directory_groups(user));
        caller.groups.extend(self.granted_groups(user, "").await?);
        Ok(caller)
    }

    /// An account as people know it: "payments-prod (111122223333)" when the registry names
    /// it, else the id.
    pub fn account_label(&self, account: &str) -> String {
        match self.account_names.get(account) {
            Some(name) => format!("{name} ({account})"),
            None => account.to_owned(),
        }
    }

    /// The newest broker findings (the `findings` file's last `limit` lines, newest first),
    /// for the admins' page. Only the file's tail is read: it grows for as long as the
    /// broker runs. `None` without a findings file.
    pub fn recent_findings(&self, limit: usize) -> Option<Result<Vec<serde_json::Value>, Refusal>> {
        use std::io::{Read, Seek, SeekFrom};
        const TAIL: u64 = 1 << 20;
        let path = self.cfg.findings.as_ref()?;
        let read = || -> std::io::Result<String> {
            let mut f = std::fs::File::open(path)?;
            let len = f.metadata()?.len();
            f.seek(SeekFrom::Start(len.saturating_sub(TAIL)))?;
            let mut text = String::new();
            // A cut in the middle of a UTF-8 sequence or a line: lossy, and the first
            // (partial) line is dropped below.
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)?;
            text.push_str(&String::from_utf8_lossy(&bytes));
            if len > TAIL {
                text = text
                    .split_once('\n')
                    .map(|(_, rest)| rest.to_owned())
                    .unwrap_or_default();
            }
            Ok(text)
        };
        Some(match read() {
            Ok(text) => Ok(text
                .lines()
                .rev()
                .filter_map(|l| serde_json::from_str(l).ok())
                .take(limit)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => {
                eprintln!("broker: cannot read the findings file: {e}");
                Err(Refusal::new(
                    503,
                    "findings-unavailable",
                    "the findings cannot be read right now",
                ))
            }
        })
    }

    /// The issuer and audience of the `jwt` authentication mode, if that is the mode.
    pub fn jwt_issuer_audience(&self) -> Option<(String, String)> {
        match &self.auth {
            Authenticator::Jwt { rules, .. } => {
                Some((rules.issuer.clone(), rules.audience.clone()))
            }
            Authenticator::Header(_) => None,
        }
    }
}
