//! Storage for the Federation Gateway: diesel over SQLite (the embedded default) and
//! PostgreSQL, behind one `MultiConnection`; migrations per backend; the domain's repository
//! ports implemented on [`Database`].

mod agreements;
mod audit;
mod calendars;
mod connection;
mod database_url;
mod dialect;
mod directory;
mod error;
mod evidence;
mod keys;
mod models;
mod organisations;
mod rate_limits;
mod registration_tokens;
pub mod schema;
mod secure_domains;
mod sessions;
#[cfg(feature = "testing")]
pub mod testing;

pub use audit::Sha256Hasher;
pub use connection::{Backend, ConnectionFactory, Database, DbConnection, PoolOptions};
pub use database_url::{DatabaseUrl, DatabaseUrlError};
pub use error::StoreError;
