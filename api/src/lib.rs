//! The Federation Gateway HTTP service: routes, wire types, authentication extractors,
//! problem+json errors, configuration and start-up.

pub mod abuse;
pub mod audit_log;
pub mod auth;
pub mod body_deadline;
pub mod client_address;
pub mod commands;
pub mod config;
pub mod credentials;
pub mod directory_import;
pub mod dns;
pub mod dto;
pub mod error;
pub mod extract;
pub mod group_commit;
pub mod housekeeping;
pub mod icalendar;
pub mod openapi;
pub mod page_token;
pub mod rate_limit;
pub mod routes;
pub mod security_headers;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod templates;

pub use config::Settings;
pub use startup::Application;
