//! Who may sign in to the control plane: the directory of users and
//! workspaces, the limits on sign-ins, sessions and tokens, and the
//! credentials check every sign-in goes through (password hashing on a
//! bounded pool, the throttle, device cookies).

pub mod credentials;
pub mod directory;
pub mod limits;
