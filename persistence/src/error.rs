//! Storage errors: what went wrong opening, migrating or querying the database, with the
//! real cause kept for the logs.

use gateway_domain::RepositoryError;

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

/// Anything the store could not do becomes `Unavailable`, carrying the cause for the logs.
pub(crate) fn unavailable(
    error: impl std::error::Error + Send + Sync + 'static,
) -> RepositoryError {
    RepositoryError::Unavailable(Box::new(error))
}

impl From<StoreError> for RepositoryError {
    fn from(error: StoreError) -> Self {
        unavailable(error)
    }
}

/// Errors inside a repository transaction: a domain outcome, or a storage failure.
#[derive(Debug)]
pub(crate) enum TxError {
    Domain(RepositoryError),
    Diesel(diesel::result::Error),
}

impl From<diesel::result::Error> for TxError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Diesel(error)
    }
}

impl From<RepositoryError> for TxError {
    fn from(error: RepositoryError) -> Self {
        Self::Domain(error)
    }
}

impl From<gateway_domain::Conflict> for TxError {
    fn from(conflict: gateway_domain::Conflict) -> Self {
        Self::Domain(RepositoryError::Conflict(conflict))
    }
}
