//! A workspace's token policy, set by its admins: the longest expiration a
//! token reaching the workspace may have, and whether it must expire at all.

use serde::{Deserialize, Serialize};

use crate::token::{Expiration, TokenView};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspacePolicy {
    /// The longest expiration allowed (`1m` … `2y`), or null for any;
    /// never `never`. A limit implies that tokens must expire.
    #[schema(value_type = Option<Expiration>, required = true)]
    pub max_lifetime: Option<Expiration>,
    /// Whether tokens must expire (no `never`).
    pub require_expiration: bool,
}

impl WorkspacePolicy {
    /// Whether a token with `expiration` may be made for the workspace;
    /// `Err` says why not.
    pub fn allows(&self, expiration: Expiration) -> Result<(), String> {
        let months = expiration.months();
        match (self.max_lifetime.and_then(Expiration::months), months) {
            (Some(_), None) => Err(self.limit_text()),
            (Some(max), Some(m)) if m > max => Err(self.limit_text()),
            (None, None) if self.require_expiration => {
                Err("tokens must expire: `never` is not allowed".into())
            }
            _ => Ok(()),
        }
    }

    fn limit_text(&self) -> String {
        let max = self.max_lifetime.map_or("", Expiration::as_str);
        format!("tokens may live at most {max}")
    }

    /// The expirations this policy allows, in the order of the presets.
    pub fn allowed(&self) -> Vec<Expiration> {
        Expiration::ALL
            .into_iter()
            .filter(|e| self.allows(*e).is_ok())
            .collect()
    }

    /// Whether an existing token obeys the policy (a policy set after a
    /// token was made does not change the token, but lists it).
    pub fn complies(&self, token: &TokenView) -> bool {
        self.allows(token.expiration).is_ok()
    }

    /// Whether the policy is a valid one to set.
    pub fn is_valid(&self) -> bool {
        self.max_lifetime != Some(Expiration::Never)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_three_month_limit_allows_up_to_three_months_and_never_not() {
        let policy = WorkspacePolicy {
            max_lifetime: Some(Expiration::ThreeMonths),
            require_expiration: false,
        };
        assert_eq!(
            policy.allowed(),
            [
                Expiration::OneMonth,
                Expiration::TwoMonths,
                Expiration::ThreeMonths
            ]
        );
        assert_eq!(
            policy.allows(Expiration::SixMonths),
            Err("tokens may live at most 3m".into())
        );
    }

    #[test]
    fn requiring_expiration_forbids_only_never_and_no_policy_allows_all() {
        let policy = WorkspacePolicy {
            max_lifetime: None,
            require_expiration: true,
        };
        assert_eq!(policy.allowed().len(), 6);
        assert!(policy.allows(Expiration::Never).is_err());
        assert_eq!(WorkspacePolicy::default().allowed(), Expiration::ALL);
        assert!(
            !WorkspacePolicy {
                max_lifetime: Some(Expiration::Never),
                require_expiration: false
            }
            .is_valid()
        );
    }
}
