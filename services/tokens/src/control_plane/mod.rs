//! One control plane, assembled one way: `enspace serve`, `enspace tokens`,
//! the test suite's `TestApp` and the benchmarks all start it through
//! [`ControlPlane::start`] from a [`ControlPlaneConfig`], and stop it
//! through [`ControlPlane::shutdown`].

mod config;
mod start;
mod tasks;

pub use config::{ControlPlaneConfig, NatsConfig, NotifyConfig};
pub use start::ControlPlane;
pub use tasks::Tasks;
