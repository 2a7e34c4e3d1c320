//! Users and workspaces: the directory file (`--directory`, JSON, argon2id
//! password hashes) that stands in for ENSPACE's user database, or the
//! built-in demo directory.

use std::collections::HashMap;
use std::path::Path;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use serde::{Deserialize, Serialize};

pub use enspace_core::SYSTEM_ACTOR;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Auditor,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Workspace {
    /// 1 to 64 ASCII letters, digits, `-` or `_` (the only workspace ids a
    /// token can be granted and a request record keeps).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectoryUser {
    pub id: String,
    pub name: String,
    /// argon2id PHC string, e.g. `$argon2id$v=19$m=19456,t=2,p=1$…`.
    #[schema(pattern = "^\\$argon2id\\$")]
    pub password_hash: String,
    pub role: Role,
    #[serde(default)]
    pub workspaces: Vec<String>,
    /// The workspaces this user administers: sees and revokes every token
    /// that can reach them, and sets their token policy.
    #[serde(default)]
    pub admin_of: Vec<String>,
}

/// The directory file given with `--directory`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectoryFile {
    pub workspaces: Vec<Workspace>,
    pub users: Vec<DirectoryUser>,
}

/// A user as the API shows it (`GET /v1/me`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub workspaces: Vec<Workspace>,
    /// The workspaces this user administers.
    pub admin_of: Vec<String>,
}

impl User {
    pub fn belongs_to(&self, workspace: &str) -> bool {
        self.workspaces.iter().any(|w| w.id == workspace)
    }

    pub fn administers(&self, workspace: &str) -> bool {
        self.admin_of.iter().any(|w| w == workspace)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("cannot read the directory file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the directory file {path} is not valid: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone)]
pub struct Directory {
    users: HashMap<String, (User, String)>,
}

// PHC strings of the demo passwords (`<user>-password`), made with
// `enspace hash-password`; plain passwords are never stored.
const DEMO_ALICE: &str = "$argon2id$v=19$m=19456,t=2,p=1$z2RejtLoHFamiP1NZ5a4QA$mf25r2ZslHe3Bx5qbdrd/NDmfNFwO8vzsjwaHHhGUeE";
const DEMO_BOB: &str = "$argon2id$v=19$m=19456,t=2,p=1$l8FXQMEdorjGfitIoo6miw$DAaGI4mY1vEF59vug32acdCWkcK0pvdp5muwYSUiLNY";
const DEMO_AUDRA: &str = "$argon2id$v=19$m=19456,t=2,p=1$8Fr0KRQ+KToPwzDrhMpc3w$IgoYDt5SrBc5fXjzCmf1WRLjYagoRw56TBgNOql5Eyo";
/// Verified against when the user does not exist, so that a wrong user name
/// takes as long as a wrong password.
const DUMMY_HASH: &str = DEMO_AUDRA;

impl Directory {
    /// The built-in demo directory.
    pub fn demo() -> Self {
        let ws = |id: &str, name: &str| Workspace {
            id: id.into(),
            name: name.into(),
        };
        let user = |id: &str, name: &str, hash: &str, role, workspaces: Vec<&str>| DirectoryUser {
            id: id.into(),
            name: name.into(),
            password_hash: hash.into(),
            role,
            workspaces: workspaces.into_iter().map(String::from).collect(),
            admin_of: Vec::new(),
        };
        let file = DirectoryFile {
            workspaces: vec![
                ws("acme", "Acme Corp"),
                ws("globex", "Globex"),
                ws("initech", "Initech"),
            ],
            users: vec![
                user(
                    "alice",
                    "Alice",
                    DEMO_ALICE,
                    Role::User,
                    vec!["acme", "globex"],
                ),
                DirectoryUser {
                    admin_of: vec!["acme".into()],
                    ..user("bob", "Bob", DEMO_BOB, Role::User, vec!["acme", "initech"])
                },
                user("audra", "Audra", DEMO_AUDRA, Role::Auditor, vec![]),
            ],
        };
        Self::from_file(file, "<demo>").unwrap_or(Directory {
            users: HashMap::new(),
        })
    }

    pub fn load(path: &Path) -> Result<Self, DirectoryError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| DirectoryError::Read {
            path: shown.clone(),
            source,
        })?;
        let file: DirectoryFile =
            serde_json::from_slice(&bytes).map_err(|e| DirectoryError::Invalid {
                path: shown.clone(),
                message: e.to_string(),
            })?;
        Self::from_file(file, &shown)
    }

    fn from_file(file: DirectoryFile, path: &str) -> Result<Self, DirectoryError> {
        let invalid = |message: String| DirectoryError::Invalid {
            path: path.to_owned(),
            message,
        };
        if let Some(w) = file
            .workspaces
            .iter()
            .find(|w| !enspace_core::workspace::is_valid_id(&w.id))
        {
            return Err(invalid(format!(
                "workspace id `{}` must be {}",
                w.id.chars().take(80).collect::<String>(),
                enspace_core::workspace::ID_RULE
            )));
        }
        let workspaces: HashMap<&str, &Workspace> =
            file.workspaces.iter().map(|w| (w.id.as_str(), w)).collect();
        let mut users = HashMap::new();
        for u in &file.users {
            if u.id.is_empty() || u.id.contains('\0') {
                return Err(invalid(format!("user id `{}` is empty or has a NUL", u.id)));
            }
            if u.id == SYSTEM_ACTOR {
                return Err(invalid(format!(
                    "user id `{}` is reserved for changes the service makes itself",
                    u.id
                )));
            }
            match PasswordHash::new(&u.password_hash) {
                Ok(hash) if hash.algorithm.as_str() == "argon2id" => {}
                _ => {
                    return Err(invalid(format!(
                        "user `{}`: password_hash must be an argon2id PHC string",
                        u.id
                    )));
                }
            }
            let mut own = Vec::new();
            for id in &u.workspaces {
                let ws = workspaces
                    .get(id.as_str())
                    .ok_or_else(|| invalid(format!("user `{}`: unknown workspace `{id}`", u.id)))?;
                own.push((*ws).clone());
            }
            if let Some(id) = u
                .admin_of
                .iter()
                .find(|id| !workspaces.contains_key(id.as_str()))
            {
                return Err(invalid(format!(
                    "user `{}`: admin_of names an unknown workspace `{id}`",
                    u.id
                )));
            }
            let user = User {
                id: u.id.clone(),
                name: u.name.clone(),
                role: u.role,
                workspaces: own,
                admin_of: u.admin_of.clone(),
            };
            if users
                .insert(u.id.clone(), (user, u.password_hash.clone()))
                .is_some()
            {
                return Err(invalid(format!("user `{}` appears twice", u.id)));
            }
        }
        Ok(Directory { users })
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id).map(|(user, _)| user)
    }

    /// Checks a password (slow on purpose: argon2id). Unknown users cost the
    /// same as a wrong password, and both answer `None`.
    pub fn authenticate(&self, username: &str, password: &str) -> Option<User> {
        let (user, hash) = match self.users.get(username) {
            Some((user, hash)) => (Some(user), hash.as_str()),
            None => (None, DUMMY_HASH),
        };
        let parsed = PasswordHash::new(hash).ok()?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        user.filter(|_| ok).cloned()
    }
}

/// An argon2id PHC string for a password, for writing directory files.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(admin_of: &[&str]) -> DirectoryFile {
        DirectoryFile {
            workspaces: vec![Workspace {
                id: "acme".into(),
                name: "Acme Corp".into(),
            }],
            users: vec![DirectoryUser {
                id: "bob".into(),
                name: "Bob".into(),
                password_hash: DEMO_BOB.into(),
                role: Role::User,
                workspaces: vec![],
                admin_of: admin_of.iter().map(|w| (*w).to_owned()).collect(),
            }],
        }
    }

    #[test]
    fn admin_of_must_name_known_workspaces_and_makes_an_admin() {
        let directory = Directory::from_file(file(&["acme"]), "test").expect("valid");
        let bob = directory.user("bob").expect("bob");
        assert!(bob.administers("acme") && !bob.belongs_to("acme"));
        let Err(DirectoryError::Invalid { message, .. }) =
            Directory::from_file(file(&["globex"]), "test")
        else {
            panic!("an unknown workspace in admin_of must be refused")
        };
        assert!(message.contains("globex"), "{message}");
        let demo = Directory::demo();
        assert_eq!(demo.user("bob").expect("bob").admin_of, ["acme"]);
        assert!(demo.user("alice").expect("alice").admin_of.is_empty());
    }

    #[test]
    fn a_workspace_id_outside_the_rule_is_refused_naming_it() {
        for bad in ["acme corp", "", "a.b", &"w".repeat(65)] {
            let mut bad_file = file(&[]);
            bad_file.workspaces[0].id = bad.to_owned();
            let Err(DirectoryError::Invalid { message, .. }) =
                Directory::from_file(bad_file, "test")
            else {
                panic!("workspace id {bad:?} must be refused")
            };
            assert!(message.contains("workspace id"), "{message}");
        }
    }
}
