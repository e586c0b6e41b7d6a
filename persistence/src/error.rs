//! Storage errors: what went wrong opening, migrating or querying the database, with the
//! real cause kept for the logs; and the one place where a diesel error is sorted into the
//! domain's `RepositoryError`.

use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error as DieselError};
use gateway_domain::{Conflict, RepositoryError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Url(#[from] crate::database_url::DatabaseUrlError),
    #[error("could not create the directory for the SQLite file {path}")]
    CreateDirectory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not connect to the {backend} database at {url}")]
    Connect {
        backend: &'static str,
        url: String,
        #[source]
        source: diesel::ConnectionError,
    },
    #[error("could not build the connection pool")]
    Pool(#[source] diesel::r2d2::PoolError),
    #[error("migrations failed")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("query failed")]
    Query(#[from] diesel::result::Error),
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        Self::Pool(error)
    }
}

/// The store could not be reached or stayed busy: worth retrying later.
pub(crate) fn unavailable(
    error: impl std::error::Error + Send + Sync + 'static,
) -> RepositoryError {
    RepositoryError::Unavailable(Box::new(error))
}

impl From<StoreError> for RepositoryError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Query(error) => classify(error),
            // Opening, pooling and connecting all fail because the store is out of reach.
            other => unavailable(other),
        }
    }
}

/// Errors inside a repository transaction: a domain outcome, or a storage failure that is
/// classified (and maybe retried) when the transaction ends.
#[derive(Debug)]
pub(crate) enum TxError {
    Domain(RepositoryError),
    Diesel(DieselError),
}

impl From<DieselError> for TxError {
    fn from(error: DieselError) -> Self {
        Self::Diesel(error)
    }
}

impl From<RepositoryError> for TxError {
    fn from(error: RepositoryError) -> Self {
        Self::Domain(error)
    }
}

impl From<Conflict> for TxError {
    fn from(conflict: Conflict) -> Self {
        Self::Domain(RepositoryError::Conflict(conflict))
    }
}

/// Contention that goes away on its own: the whole transaction is worth running again.
pub(crate) fn is_transient(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        DieselError::DatabaseError(_, info) => {
            let message = info.message();
            // PostgreSQL: deadlock_detected (40P01) and lock_not_available (55P03) have no
            // diesel kind of their own; SQLite: SQLITE_BUSY and SQLITE_LOCKED.
            message.contains("deadlock detected")
                || message.contains("could not obtain lock")
                || message.contains("due to lock timeout")
                || message.contains("database is locked")
                || message.contains("database is busy")
                || message.contains("database table is locked")
                || message.contains("database schema is locked")
        }
        _ => false,
    }
}

/// Failures of the connection or the machine under it, rather than of the statement.
fn is_connection_failure(kind: &DatabaseErrorKind, info: &dyn DatabaseErrorInformation) -> bool {
    if matches!(
        kind,
        DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand
    ) {
        return true;
    }
    let message = info.message();
    // SQLite: SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN; PostgreSQL: the server going away
    // between the status check and the next statement, or shutting down.
    message.contains("disk I/O error")
        || message.contains("database or disk is full")
        || message.contains("unable to open database file")
        || message.contains("server closed the connection")
        || message.contains("terminating connection")
        || message.contains("the database system is shutting down")
}

/// The name of the unique constraint a violation broke: PostgreSQL names it; SQLite only
/// says `UNIQUE constraint failed: table.column, ...` (or `index 'name'` for an index on
/// expressions), so the column list stands for the name.
pub(crate) fn unique_constraint(info: &dyn DatabaseErrorInformation) -> String {
    if let Some(name) = info.constraint_name() {
        return name.to_owned();
    }
    let message = info.message();
    let listed = message
        .split_once("constraint failed: ")
        .map_or(message, |(_, rest)| rest)
        .trim();
    listed
        .strip_prefix("index '")
        .and_then(|rest| rest.strip_suffix('\''))
        .unwrap_or(listed)
        .to_owned()
}

/// Sorts a storage failure once, where it arises: a broken uniqueness rule is a `Conflict`,
/// an unreachable or contended store is `Unavailable`, anything else is `Internal` (a bug:
/// retrying will not help).
pub(crate) fn classify(error: DieselError) -> RepositoryError {
    match &error {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            RepositoryError::Conflict(Conflict::Unique {
                constraint: unique_constraint(info.as_ref()),
            })
        }
        DieselError::DatabaseError(kind, info) if is_connection_failure(kind, info.as_ref()) => {
            unavailable(error)
        }
        DieselError::BrokenTransactionManager => unavailable(error),
        _ if is_transient(&error) => unavailable(error),
        _ => RepositoryError::Internal(Box::new(error)),
    }
}

pub(crate) fn into_repository_error(error: TxError) -> RepositoryError {
    match error {
        TxError::Domain(error) => error,
        TxError::Diesel(error) => classify(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Info {
        message: &'static str,
        constraint: Option<&'static str>,
    }

    impl DatabaseErrorInformation for Info {
        fn message(&self) -> &str {
            self.message
        }
        fn details(&self) -> Option<&str> {
            None
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            self.constraint
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    fn db_error(kind: DatabaseErrorKind, message: &'static str) -> DieselError {
        DieselError::DatabaseError(
            kind,
            Box::new(Info {
                message,
                constraint: None,
            }),
        )
    }

    fn constraint_of(error: RepositoryError) -> String {
        match error {
            RepositoryError::Conflict(Conflict::Unique { constraint }) => constraint,
            other => panic!("expected Conflict::Unique, got {other:?}"),
        }
    }

    #[test]
    fn unique_violations_are_conflicts_named_by_their_constraint() {
        let postgres = DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new(Info {
                message: "duplicate key value violates unique constraint \"organisations_ods_code_active\"",
                constraint: Some("organisations_ods_code_active"),
            }),
        );
        assert_eq!(
            constraint_of(classify(postgres)),
            "organisations_ods_code_active"
        );
        let sqlite = db_error(
            DatabaseErrorKind::UniqueViolation,
            "UNIQUE constraint failed: organisations.ods_code",
        );
        assert_eq!(constraint_of(classify(sqlite)), "organisations.ods_code");
        let composite = db_error(
            DatabaseErrorKind::UniqueViolation,
            "UNIQUE constraint failed: partner_keys.organisation_id, partner_keys.kid",
        );
        assert_eq!(
            constraint_of(classify(composite)),
            "partner_keys.organisation_id, partner_keys.kid"
        );
        let expression = db_error(
            DatabaseErrorKind::UniqueViolation,
            "UNIQUE constraint failed: index 'lower_name'",
        );
        assert_eq!(constraint_of(classify(expression)), "lower_name");
    }

    #[test]
    fn contention_is_transient_and_ends_unavailable() {
        for error in [
            db_error(
                DatabaseErrorKind::SerializationFailure,
                "could not serialize access",
            ),
            db_error(DatabaseErrorKind::Unknown, "deadlock detected"),
            db_error(DatabaseErrorKind::Unknown, "database is locked"),
            db_error(DatabaseErrorKind::Unknown, "database is busy"),
            db_error(
                DatabaseErrorKind::Unknown,
                "canceling statement due to lock timeout",
            ),
        ] {
            assert!(is_transient(&error), "{error:?}");
            assert!(matches!(classify(error), RepositoryError::Unavailable(_)));
        }
    }

    #[test]
    fn connection_failures_are_unavailable_and_not_retried() {
        for error in [
            db_error(
                DatabaseErrorKind::ClosedConnection,
                "server closed the connection unexpectedly",
            ),
            db_error(
                DatabaseErrorKind::UnableToSendCommand,
                "no connection to the server",
            ),
            db_error(DatabaseErrorKind::Unknown, "disk I/O error"),
            DieselError::BrokenTransactionManager,
        ] {
            assert!(!is_transient(&error), "{error:?}");
            assert!(matches!(classify(error), RepositoryError::Unavailable(_)));
        }
    }

    #[test]
    fn everything_else_is_internal() {
        for error in [
            db_error(
                DatabaseErrorKind::ForeignKeyViolation,
                "FOREIGN KEY constraint failed",
            ),
            db_error(
                DatabaseErrorKind::NotNullViolation,
                "NOT NULL constraint failed: t.c",
            ),
            db_error(
                DatabaseErrorKind::Unknown,
                "syntax error at or near \"SELEC\"",
            ),
            DieselError::NotFound,
        ] {
            assert!(!is_transient(&error), "{error:?}");
            assert!(matches!(classify(error), RepositoryError::Internal(_)));
        }
    }

    #[test]
    fn store_errors_outside_queries_are_unavailable_and_queries_are_classified() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let error: RepositoryError = StoreError::CreateDirectory {
            path: "/x".into(),
            source: io,
        }
        .into();
        assert!(matches!(error, RepositoryError::Unavailable(_)));
        let query = StoreError::Query(db_error(
            DatabaseErrorKind::UniqueViolation,
            "UNIQUE constraint failed: evidence.id",
        ));
        assert_eq!(constraint_of(query.into()), "evidence.id");
    }
}
