//! Connections and the pool: one `MultiConnection` over SQLite and PostgreSQL, opened
//! explicitly by the URL's scheme so a failure reports the real cause.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ManageConnection, Pool, PooledConnection};
use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use gateway_domain::{HealthCheck, RepositoryError};

use crate::database_url::DatabaseUrl;
use crate::error::{into_repository_error, is_transient, unavailable, StoreError, TxError};

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

impl std::fmt::Debug for DbConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Postgres(_) => f.write_str("DbConnection::Postgres"),
            Self::Sqlite(_) => f.write_str("DbConnection::Sqlite"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }
}

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// How long a SQLite connection waits for another writer's lock before failing.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

/// How many times a write transaction runs when it meets transient contention (a
/// serialisation failure, a deadlock, a busy SQLite file) before reporting `Unavailable`.
const WRITE_ATTEMPTS: u32 = 3;
/// The pause before the second attempt; it doubles for each later one.
const WRITE_RETRY_BACKOFF: Duration = Duration::from_millis(20);

/// Opens connections for the pool, choosing the backend from the URL.
#[derive(Debug)]
pub struct ConnectionFactory {
    url: DatabaseUrl,
}

impl ConnectionFactory {
    fn open(&self) -> Result<DbConnection, StoreError> {
        let connect_error = |source| StoreError::Connect {
            backend: self.url.backend().name(),
            url: self.url.to_string(),
            source,
        };
        match &self.url {
            DatabaseUrl::Postgres(raw) => PgConnection::establish(raw)
                .map(DbConnection::Postgres)
                .map_err(connect_error),
            DatabaseUrl::Sqlite(path) => {
                let path_text = path.to_string_lossy();
                let mut conn = SqliteConnection::establish(&path_text).map_err(connect_error)?;
                // busy_timeout first, so that switching to WAL waits for other openers.
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};
                     PRAGMA journal_mode = WAL;
                     PRAGMA synchronous = NORMAL;
                     PRAGMA foreign_keys = ON;"
                ))
                .map_err(|e| {
                    connect_error(diesel::ConnectionError::CouldntSetupConfiguration(e))
                })?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

impl ManageConnection for ConnectionFactory {
    type Connection = DbConnection;
    type Error = StoreError;

    fn connect(&self) -> Result<DbConnection, StoreError> {
        self.open()
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), StoreError> {
        conn.batch_execute("SELECT 1").map_err(StoreError::Query)
    }

    fn has_broken(&self, _conn: &mut DbConnection) -> bool {
        false
    }
}

#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub connect_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The gateway's database: a connection pool plus what it takes to use it safely.
pub struct Database {
    pool: Pool<ConnectionFactory>,
    url: DatabaseUrl,
    backend: Backend,
    /// SQLite allows one writer at a time; taking turns in-process avoids lock-upgrade
    /// failures between deferred transactions. PostgreSQL needs no such lock.
    write_lock: Option<Mutex<()>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend)
            .field("state", &self.pool.state())
            .finish()
    }
}

impl Database {
    /// Connects (creating the SQLite file and its directory if missing) and checks that a
    /// first connection can be opened, so a bad URL fails here with its real cause.
    pub fn connect(url: &DatabaseUrl, options: &PoolOptions) -> Result<Self, StoreError> {
        if let DatabaseUrl::Sqlite(path) = url {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDirectory {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
        }
        let factory = ConnectionFactory { url: url.clone() };
        // Open one connection by hand first: r2d2 would only report a timeout.
        let first = factory.open()?;
        drop(first);
        let backend = url.backend();
        let pool = Pool::builder()
            .max_size(options.max_connections)
            .connection_timeout(options.connect_timeout)
            // A SQLite connection is a file handle that cannot drop like a socket: pinging it
            // at every checkout (r2d2's default) only costs a parse and a step per query.
            .test_on_check_out(backend == Backend::Postgres)
            .build(factory)?;
        Ok(Self {
            pool,
            url: url.clone(),
            backend,
            write_lock: (backend == Backend::Sqlite).then(|| Mutex::new(())),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A connection of its own for migrations, outside the pool: a SQLite migration that
    /// rebuilds a table switches foreign keys off around its own transaction, and if it
    /// fails half-way the connection is dropped (rolling back) instead of going back to the
    /// pool in that state.
    fn migration_connection(&self) -> Result<DbConnection, StoreError> {
        ConnectionFactory {
            url: self.url.clone(),
        }
        .open()
    }

    /// Applies pending migrations; returns the versions applied.
    pub fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.migration_connection()?;
        let applied = match &mut conn {
            DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS),
            DbConnection::Postgres(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS),
        }
        .map_err(StoreError::Migration)?;
        Ok(applied.iter().map(ToString::to_string).collect())
    }

    /// Applies pending migrations up to and including the one whose name starts with
    /// `last` (for tests that put data in an older schema, then migrate it).
    #[cfg(feature = "testing")]
    pub fn migrate_through(&self, last: &str) -> Result<Vec<String>, StoreError> {
        fn run<C, DB>(
            conn: &mut C,
            source: EmbeddedMigrations,
            last: &str,
        ) -> diesel::migration::Result<Vec<String>>
        where
            DB: diesel::backend::Backend,
            C: MigrationHarness<DB>,
            EmbeddedMigrations: diesel::migration::MigrationSource<DB>,
        {
            let mut applied = Vec::new();
            for migration in conn.pending_migrations(source)? {
                let name = migration.name().to_string();
                conn.run_migration(migration.as_ref())?;
                applied.push(name.clone());
                if name.starts_with(last) {
                    break;
                }
            }
            Ok(applied)
        }
        let mut conn = self.migration_connection()?;
        match &mut conn {
            DbConnection::Sqlite(c) => run(c, SQLITE_MIGRATIONS, last),
            DbConnection::Postgres(c) => run(c, POSTGRES_MIGRATIONS, last),
        }
        .map_err(StoreError::Migration)
    }

    /// Reverts every applied migration (for tests of the down migrations).
    pub fn revert_all_migrations(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.migration_connection()?;
        let reverted = match &mut conn {
            DbConnection::Sqlite(c) => c.revert_all_migrations(SQLITE_MIGRATIONS),
            DbConnection::Postgres(c) => c.revert_all_migrations(POSTGRES_MIGRATIONS),
        }
        .map_err(StoreError::Migration)?;
        Ok(reverted.iter().map(ToString::to_string).collect())
    }

    /// A pooled connection, for code in this crate and for tests that inspect the schema.
    pub fn connection(&self) -> Result<PooledConnection<ConnectionFactory>, StoreError> {
        Ok(self.pool.get()?)
    }

    fn write_guard(&self) -> Option<MutexGuard<'_, ()>> {
        self.write_lock
            .as_ref()
            .map(|lock| lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Runs `f` in a read transaction.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, TxError>,
    ) -> Result<T, RepositoryError> {
        let mut conn = self.pool.get().map_err(unavailable)?;
        DbConnection::transaction(&mut conn, f).map_err(into_repository_error)
    }

    /// Runs one statement outside an explicit transaction (a single read is atomic anyway),
    /// saving the BEGIN/COMMIT round trips on hot paths.
    pub(crate) fn single<T>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, TxError>,
    ) -> Result<T, RepositoryError> {
        let mut conn = self.pool.get().map_err(unavailable)?;
        f(&mut conn).map_err(into_repository_error)
    }

    /// Runs `f` in a write transaction: all of it commits, or none of it. Transient
    /// contention (serialisation failure, deadlock, busy SQLite file) rolls back and runs
    /// `f` again, a bounded number of times, then reports `Unavailable`.
    pub(crate) fn write<T>(
        &self,
        mut f: impl FnMut(&mut DbConnection) -> Result<T, TxError>,
    ) -> Result<T, RepositoryError> {
        let _turn = self.write_guard();
        let mut attempt = 1;
        loop {
            let result = {
                let mut conn = self.pool.get().map_err(unavailable)?;
                write_transaction(&mut conn, &mut f)
            };
            match result {
                Err(TxError::Diesel(error)) if is_transient(&error) && attempt < WRITE_ATTEMPTS => {
                    tracing::debug!(attempt, error = %error, "write transaction contended; retrying");
                    std::thread::sleep(WRITE_RETRY_BACKOFF * 2u32.pow(attempt - 1));
                    attempt += 1;
                }
                other => return other.map_err(into_repository_error),
            }
        }
    }
}

/// Runs `f` in a transaction that writes. On SQLite it begins with `BEGIN IMMEDIATE`, taking
/// the file's write lock up front (waiting up to the busy timeout for another process's
/// writer): a deferred transaction that reads first and then meets a writer from another
/// process (a command-line tool beside the server) fails at once with `SQLITE_BUSY`, which
/// no busy timeout can wait out. PostgreSQL uses its ordinary transaction.
fn write_transaction<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, TxError>,
) -> Result<T, TxError> {
    use diesel::connection::TransactionManager;
    type Manager = <DbConnection as Connection>::TransactionManager;
    match conn {
        DbConnection::Postgres(_) => Connection::transaction(conn, f),
        DbConnection::Sqlite(sqlite) => {
            // The multi-connection's transaction manager is the SQLite connection's own, so
            // what begins here is committed or rolled back through it like any transaction.
            diesel::connection::AnsiTransactionManager::begin_transaction_sql(
                sqlite,
                "BEGIN IMMEDIATE",
            )?;
            match f(conn) {
                Ok(value) => {
                    Manager::commit_transaction(conn)?;
                    Ok(value)
                }
                Err(error) => {
                    Manager::rollback_transaction(conn)?;
                    Err(error)
                }
            }
        }
    }
}

impl HealthCheck for Database {
    fn ping(&self) -> Result<(), RepositoryError> {
        self.single(|conn| {
            diesel::sql_query("SELECT 1").execute(conn)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorKind, Error as DieselError};

    use super::*;

    fn scratch() -> (Database, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("gw-conn-{}", uuid::Uuid::new_v4().simple()));
        let db = Database::connect(
            &DatabaseUrl::Sqlite(dir.join("gateway.db")),
            &PoolOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        (db, dir)
    }

    fn busy() -> TxError {
        TxError::Diesel(DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("database is locked".to_owned()),
        ))
    }

    #[test]
    fn contended_writes_are_retried_a_bounded_number_of_times() {
        let (db, dir) = scratch();
        let mut attempts = 0;
        let result = db.write(|_| {
            attempts += 1;
            if attempts < WRITE_ATTEMPTS {
                Err(busy())
            } else {
                Ok(attempts)
            }
        });
        assert!(matches!(result, Ok(n) if n == WRITE_ATTEMPTS), "{result:?}");

        let mut attempts = 0;
        let result: Result<(), _> = db.write(|_| {
            attempts += 1;
            Err(busy())
        });
        assert!(
            matches!(result, Err(RepositoryError::Unavailable(_))),
            "{result:?}"
        );
        assert_eq!(attempts, WRITE_ATTEMPTS);

        // Neither a domain outcome nor a bug is retried.
        let mut attempts = 0;
        let result: Result<(), _> = db.write(|_| {
            attempts += 1;
            Err(TxError::Diesel(DieselError::NotFound))
        });
        assert!(
            matches!(result, Err(RepositoryError::Internal(_))),
            "{result:?}"
        );
        let result: Result<(), _> = db.write(|_| {
            attempts += 1;
            Err(RepositoryError::NotFound.into())
        });
        assert!(
            matches!(result, Err(RepositoryError::NotFound)),
            "{result:?}"
        );
        assert_eq!(attempts, 2);
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }
}
