//! Wire types: what the API reads and writes as JSON, documented for OpenAPI. Joined to the
//! domain with `From`; never stored. One module per resource.

mod agreements;
mod audit;
mod calendars;
mod credentials;
mod directory;
mod evidence;
mod keys;
mod oauth;
mod operations;
mod registration;
mod reviewers;
pub mod values;

pub use agreements::*;
pub use audit::*;
pub use calendars::*;
pub use credentials::*;
pub use directory::*;
pub use evidence::*;
pub use keys::*;
pub use oauth::*;
pub use operations::*;
pub use registration::*;
pub use reviewers::*;
