//! Who may do what: OAuth scopes for partners and the publisher, roles for reviewers.

use std::fmt;

/// Scopes carried by gateway access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Manage one's own registration and keys; every organisation has it.
    OrganisationManage,
    /// Read address-book sync deltas (from an approved agreement).
    AddressBookRead,
    /// Read calendar free/busy (from an approved agreement).
    FreeBusyRead,
    /// Publish directory entries (the internal publisher).
    DirectoryWrite,
    /// Publish calendar busy blocks (the internal publisher).
    CalendarWrite,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Self::OrganisationManage,
        Self::AddressBookRead,
        Self::FreeBusyRead,
        Self::DirectoryWrite,
        Self::CalendarWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrganisationManage => "organisation:manage",
            Self::AddressBookRead => "address_book:read",
            Self::FreeBusyRead => "free_busy:read",
            Self::DirectoryWrite => "directory:write",
            Self::CalendarWrite => "calendar:write",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Parses a space-separated scope list (RFC 6749 section 3.3); the unknown names, if any.
    pub fn parse_list(raw: &str) -> Result<Vec<Scope>, Vec<String>> {
        let mut scopes = Vec::new();
        let mut unknown = Vec::new();
        for name in raw.split(' ').filter(|s| !s.is_empty()) {
            match Self::parse(name) {
                Some(scope) if !scopes.contains(&scope) => scopes.push(scope),
                Some(_) => {}
                None => unknown.push(name.to_owned()),
            }
        }
        if unknown.is_empty() {
            scopes.sort();
            Ok(scopes)
        } else {
            Err(unknown)
        }
    }

    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a national reviewer may do; from a configurable claim of the identity provider.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reviews evidence and agreements (the first of the two people on an approval).
    Reviewer,
    /// Approves, rejects, suspends, reinstates and revokes agreements.
    Approver,
    /// Reads and verifies the audit trail.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 3] = [Self::Reviewer, Self::Approver, Self::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reviewer => "reviewer",
            Self::Approver => "approver",
            Self::Auditor => "auditor",
        }
    }
}

/// A person or automation authenticated by the national identity provider.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReviewerIdentity {
    /// The provider's subject identifier.
    pub subject: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub roles: Vec<Role>,
    /// A person (signed in, or a token from the provider's authorization-code flow), not an
    /// automation client. Only people change state.
    #[serde(default)]
    pub person: bool,
}

impl ReviewerIdentity {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_parse_dedupe_and_name_unknowns() {
        assert_eq!(
            Scope::parse_list("free_busy:read  organisation:manage free_busy:read"),
            Ok(vec![Scope::OrganisationManage, Scope::FreeBusyRead])
        );
        assert_eq!(Scope::parse_list(""), Ok(vec![]));
        assert_eq!(
            Scope::parse_list("organisation:manage admin"),
            Err(vec!["admin".to_owned()])
        );
        assert_eq!(
            Scope::join(&[Scope::DirectoryWrite, Scope::CalendarWrite]),
            "directory:write calendar:write"
        );
    }
}
