//! The registration access token's life, as reviewers see it: issued at registration (or by an
//! approver after a revocation), rotated by its holder, revoked by an approver. The token
//! itself is never part of this: only when, how and by whom.

use chrono::{DateTime, Utc};

use crate::organisation::Version;
use crate::text::Reason;

/// Whether the organisation holds a working registration token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationTokenState {
    Active,
    /// An approver revoked it; no token of the organisation works until an approver issues a
    /// fresh one.
    Revoked,
}

impl RegistrationTokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(Self::Active),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// Who started the line of tokens in force: the organisation by registering, or an approver
/// who issued a fresh token after a revocation (handed over out of band).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenIssuer {
    Registration,
    Approver(String),
}

/// The state of an organisation's registration token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationTokenStatus {
    pub state: RegistrationTokenState,
    /// When the line of tokens began (registration, or an approver's fresh token).
    pub issued_at: DateTime<Utc>,
    pub issued_by: TokenIssuer,
    /// The organisation's latest rotation since then, and how many there were.
    pub rotated_at: Option<DateTime<Utc>>,
    pub rotations: i64,
    /// The latest revocation (kept after a fresh token is issued), by a reviewer's subject.
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
    pub revocation_reason: Option<Reason>,
    /// Increases with every change, so concurrent reviewers cannot both act on one state.
    pub version: Version,
}

impl RegistrationTokenStatus {
    /// The state of a token issued at registration.
    pub fn registered(at: DateTime<Utc>) -> Self {
        Self {
            state: RegistrationTokenState::Active,
            issued_at: at,
            issued_by: TokenIssuer::Registration,
            rotated_at: None,
            rotations: 0,
            revoked_at: None,
            revoked_by: None,
            revocation_reason: None,
            version: Version::FIRST,
        }
    }
}
