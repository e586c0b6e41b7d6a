//! Database URLs: the scheme picks the backend; passwords never reach logs.

use std::fmt;
use std::path::PathBuf;

use crate::connection::Backend;

/// A parsed database URL.
///
/// `sqlite://RELATIVE/PATH`, `sqlite:///ABSOLUTE/PATH` or `sqlite:PATH` open (and create) a
/// SQLite file; `postgres://...` and `postgresql://...` connect to PostgreSQL.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DatabaseUrlError {
    #[error("unsupported database URL scheme {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedScheme(String),
    #[error("the SQLite URL has no file path: use sqlite://PATH")]
    MissingPath,
    #[error("in-memory SQLite is not supported: each pooled connection would see its own empty database")]
    InMemory,
    #[error("invalid PostgreSQL URL: {0}")]
    InvalidPostgres(String),
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, DatabaseUrlError> {
        let raw = raw.trim();
        let (scheme, _) = raw
            .split_once(':')
            .ok_or_else(|| DatabaseUrlError::UnsupportedScheme(String::new()))?;
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                let rest = &raw[scheme.len() + 1..];
                let path = rest.strip_prefix("//").unwrap_or(rest);
                let path = path.split('?').next().unwrap_or_default();
                if path.is_empty() {
                    return Err(DatabaseUrlError::MissingPath);
                }
                if path == ":memory:" || path.starts_with("file::memory:") {
                    return Err(DatabaseUrlError::InMemory);
                }
                Ok(Self::Sqlite(PathBuf::from(path)))
            }
            "postgres" | "postgresql" => {
                url::Url::parse(raw)
                    .map_err(|e| DatabaseUrlError::InvalidPostgres(e.to_string()))?;
                Ok(Self::Postgres(raw.to_owned()))
            }
            other => Err(DatabaseUrlError::UnsupportedScheme(other.to_owned())),
        }
    }

    /// The full URL, password included, for handing to configuration. Never log it.
    pub fn expose(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Postgres(raw) => raw.clone(),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Shows the URL with any password replaced, so it can be logged.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(raw) => match url::Url::parse(raw) {
                Ok(mut parsed) => {
                    if parsed.password().is_some() {
                        let _ = parsed.set_password(Some("REDACTED"));
                    }
                    // Passwords can also hide in the query string.
                    let pairs: Vec<(String, String)> = parsed
                        .query_pairs()
                        .map(|(k, v)| {
                            let v = if k.eq_ignore_ascii_case("password") {
                                "REDACTED".into()
                            } else {
                                v.into_owned()
                            };
                            (k.into_owned(), v)
                        })
                        .collect();
                    if !pairs.is_empty() {
                        parsed.query_pairs_mut().clear().extend_pairs(pairs);
                    }
                    write!(f, "{parsed}")
                }
                Err(_) => f.write_str("postgres://(unparseable)"),
            },
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_forms() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://./data/gateway.db"),
            Ok(DatabaseUrl::Sqlite("./data/gateway.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/gw.db"),
            Ok(DatabaseUrl::Sqlite("/var/lib/gw.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:gw.db"),
            Ok(DatabaseUrl::Sqlite("gw.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://"),
            Err(DatabaseUrlError::MissingPath)
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite::memory:"),
            Err(DatabaseUrlError::InMemory)
        );
    }

    #[test]
    fn postgres_and_unknown_schemes() {
        let url = DatabaseUrl::parse("postgresql://u:pw@127.0.0.1/db").unwrap();
        assert_eq!(url.backend(), Backend::Postgres);
        assert_eq!(
            DatabaseUrl::parse("mysql://x/y"),
            Err(DatabaseUrlError::UnsupportedScheme("mysql".into()))
        );
        assert!(DatabaseUrl::parse("gateway.db").is_err());
    }

    #[test]
    fn display_never_shows_the_password() {
        let url = DatabaseUrl::parse(
            "postgres://gw:s3cret@127.0.0.1:5432/gw?password=other&sslmode=disable",
        )
        .unwrap();
        let shown = format!("{url} {url:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("other"), "{shown}");
        assert!(shown.contains("sslmode=disable"));
    }
}
