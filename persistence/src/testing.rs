//! Per-test databases: a fresh SQLite file, or a fresh PostgreSQL database that is dropped
//! when the test ends. A PostgreSQL test never passes silently without a server: it panics
//! with how to start one.

use diesel::{Connection, PgConnection, RunQueryDsl};

use crate::database_url::DatabaseUrl;
use crate::{Backend, Database, PoolOptions};

/// Where tests find PostgreSQL: a URL to a database from which new ones can be created.
pub const POSTGRES_ADMIN_URL_VAR: &str = "GATEWAY_TEST_POSTGRES_URL";
const DEFAULT_POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: DatabaseUrl,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    SqliteDir(#[allow(dead_code)] tempfile::TempDir),
    PostgresDatabase { admin_url: String, name: String },
}

impl TestDatabase {
    pub fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres(),
        }
    }

    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let url = DatabaseUrl::Sqlite(dir.path().join("gateway.db"));
        Self {
            url,
            cleanup: Cleanup::SqliteDir(dir),
        }
    }

    pub fn postgres() -> Self {
        let admin_url = std::env::var(POSTGRES_ADMIN_URL_VAR)
            .unwrap_or_else(|_| DEFAULT_POSTGRES_ADMIN_URL.to_owned());
        let mut admin = PgConnection::establish(&admin_url).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL tests need a server at {} ({POSTGRES_ADMIN_URL_VAR}): {e}. \
                 Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
                DatabaseUrl::Postgres(admin_url.clone())
            )
        });
        let name = format!("gw_test_{}", uuid::Uuid::new_v4().simple());
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let mut parsed = url::Url::parse(&admin_url)
            .unwrap_or_else(|e| panic!("{POSTGRES_ADMIN_URL_VAR} is not a URL: {e}"));
        parsed.set_path(&name);
        Self {
            url: DatabaseUrl::Postgres(parsed.to_string()),
            cleanup: Cleanup::PostgresDatabase { admin_url, name },
        }
    }

    /// Connects and migrates.
    pub fn open(&self) -> Database {
        let db = Database::connect(
            &self.url,
            &PoolOptions {
                max_connections: 4,
                ..PoolOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("cannot open test database {}: {e:?}", self.url));
        db.migrate()
            .unwrap_or_else(|e| panic!("cannot migrate test database: {e:?}"));
        db
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Cleanup::PostgresDatabase { admin_url, name } = &self.cleanup {
            if let Ok(mut admin) = PgConnection::establish(admin_url) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin);
            }
        }
    }
}

/// Declares one test per backend: `backend_tests!(fn name(backend) { ... })` expands to
/// `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! backend_tests {
    ($(fn $name:ident($backend:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                fn run($backend: $crate::Backend) $body

                #[test]
                fn sqlite() {
                    run($crate::Backend::Sqlite)
                }

                #[test]
                fn postgres() {
                    run($crate::Backend::Postgres)
                }
            }
        )*
    };
}
