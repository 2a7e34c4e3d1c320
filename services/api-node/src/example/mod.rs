//! The example resource an API node serves behind the auth layer, standing
//! in for the SaaS API's own routes.

pub mod records;
