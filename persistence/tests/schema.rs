//! Both backends' migrations build the same schema, and their down migrations undo them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use diesel::sql_types::{Integer, Text};
use diesel::{QueryableByName, RunQueryDsl};
use gateway_persistence::testing::TestDatabase;
use gateway_persistence::{Backend, Database, DbConnection};

#[derive(QueryableByName, Debug)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Integer)]
    nullable: i32,
}

/// (table, column, nullable) for every application table.
fn columns(db: &Database) -> BTreeSet<(String, String, bool)> {
    let mut conn = db.connection().unwrap();
    let rows: Vec<Column> = match &mut *conn {
        DbConnection::Sqlite(c) => diesel::sql_query(
            "SELECT m.name AS table_name, p.name AS column_name,
                    CASE WHEN p.\"notnull\" = 0 AND p.pk = 0 THEN 1 ELSE 0 END AS nullable
             FROM sqlite_master m JOIN pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'
               AND m.name <> '__diesel_schema_migrations'",
        )
        .load(c),
        DbConnection::Postgres(c) => diesel::sql_query(
            "SELECT table_name::text AS table_name, column_name::text AS column_name,
                    CASE WHEN is_nullable = 'YES' THEN 1 ELSE 0 END AS nullable
             FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
        )
        .load(c),
    }
    .unwrap();
    rows.into_iter()
        .map(|c| (c.table_name, c.column_name, c.nullable == 1))
        .collect()
}

#[test]
fn both_backends_have_the_same_tables_and_columns() {
    let sqlite = TestDatabase::new(Backend::Sqlite);
    let postgres = TestDatabase::new(Backend::Postgres);
    let sqlite_columns = columns(&sqlite.open());
    let postgres_columns = columns(&postgres.open());
    assert!(
        sqlite_columns.len() > 30,
        "expected the foundation tables: {sqlite_columns:?}"
    );
    let only_sqlite: Vec<_> = sqlite_columns.difference(&postgres_columns).collect();
    let only_postgres: Vec<_> = postgres_columns.difference(&sqlite_columns).collect();
    assert!(
        only_sqlite.is_empty() && only_postgres.is_empty(),
        "only in SQLite: {only_sqlite:?}\nonly in PostgreSQL: {only_postgres:?}"
    );
}

fn down_migrations_undo_up_migrations(backend: Backend) {
    let test = TestDatabase::new(backend);
    let db = test.open();
    assert!(!columns(&db).is_empty());
    let reverted = db.revert_all_migrations().unwrap();
    assert!(!reverted.is_empty());
    assert!(
        columns(&db).is_empty(),
        "tables left after reverting: {:?}",
        columns(&db)
    );
    let applied = db.migrate().unwrap();
    assert_eq!(applied.len(), reverted.len());
}

#[test]
fn down_migrations_undo_up_migrations_sqlite() {
    down_migrations_undo_up_migrations(Backend::Sqlite);
}

#[test]
fn down_migrations_undo_up_migrations_postgres() {
    down_migrations_undo_up_migrations(Backend::Postgres);
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn count(db: &Database, sql: &str) -> i64 {
    let mut conn = db.connection().unwrap();
    let rows: Vec<Count> = diesel::sql_query(sql).load(&mut *conn).unwrap();
    rows[0].n
}

fn execute(db: &Database, sql: &str) {
    let mut conn = db.connection().unwrap();
    diesel::sql_query(sql).execute(&mut *conn).unwrap();
}

/// Rows in the tables that reference organisations survive the onboarding migration, which
/// rebuilds organisations and organisation_domains on SQLite.
fn onboarding_migration_keeps_existing_rows(backend: Backend) {
    let test = TestDatabase::new(backend);
    let db = Database::connect(&test.url, &gateway_persistence::PoolOptions::default()).unwrap();
    let applied = db.migrate_through("2026-11-28-000002").unwrap();
    assert_eq!(applied.len(), 2, "{applied:?}");
    execute(
        &db,
        "INSERT INTO organisations (id, ods_code, name, category, exchange_version, ig_lead_name,
             ig_lead_email, technical_name, technical_email, business_need, version, created_at,
             updated_at)
         VALUES ('o1', 'AB123', 'Hospice', 'hospice', 'exchange_2019', 'Ada', 'ada@example.org',
             'Alan', 'alan@example.org', 'Our nurses need the address book.', 3,
             '2026-01-01 00:00:00', '2026-01-02 00:00:00')",
    );
    execute(&db, "INSERT INTO organisation_domains (domain, organisation_id, position) VALUES ('one.example.org', 'o1', 0), ('two.example.org', 'o1', 1)");
    execute(&db, "INSERT INTO registration_credentials (selector, organisation_id, secret_sha256, created_at) VALUES ('sel', 'o1', 'hash', '2026-01-01 00:00:00')");
    execute(&db, "INSERT INTO partner_keys (organisation_id, kid, kty, alg, jwk, added_at) VALUES ('o1', 'k1', 'OKP', 'EdDSA', '{}', '2026-01-01 00:00:00')");

    let applied = db.migrate().unwrap();
    assert!(
        applied.iter().any(|m| m.starts_with("2026112900000")),
        "{applied:?}"
    );
    assert_eq!(count(&db, "SELECT count(*) AS n FROM organisations WHERE status = 'active' AND status_reason IS NULL AND version = 3"), 1);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM organisation_domains WHERE organisation_id = 'o1' AND active"), 2);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM registration_credentials WHERE organisation_id = 'o1'"
        ),
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM partner_keys WHERE organisation_id = 'o1'"
        ),
        1
    );
    // The token an organisation held before tokens had a state is active, issued at
    // registration, never rotated.
    assert_eq!(count(&db, "SELECT count(*) AS n FROM registration_tokens WHERE organisation_id = 'o1' AND state = 'active' AND issued_by IS NULL AND rotations = 0 AND revoked_at IS NULL"), 1);

    // The foreign keys still hold afterwards, and still cascade.
    let mut conn = db.connection().unwrap();
    let orphan = diesel::sql_query("INSERT INTO partner_keys (organisation_id, kid, kty, jwk, added_at) VALUES ('ghost', 'k', 'OKP', '{}', '2026-01-01 00:00:00')").execute(&mut *conn);
    assert!(
        orphan.is_err(),
        "foreign keys are enforced after the migration"
    );
    drop(conn);
    execute(&db, "DELETE FROM organisations WHERE id = 'o1'");
    assert_eq!(count(&db, "SELECT count(*) AS n FROM partner_keys"), 0);
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM registration_tokens"),
        0
    );
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM organisation_domains"),
        0
    );
}

#[test]
fn onboarding_migration_keeps_existing_rows_sqlite() {
    onboarding_migration_keeps_existing_rows(Backend::Sqlite);
}

#[test]
fn onboarding_migration_keeps_existing_rows_postgres() {
    onboarding_migration_keeps_existing_rows(Backend::Postgres);
}

/// The SQLite rebuild checks foreign keys before it commits: a dangling reference (possible
/// in a file once written with foreign keys off) fails the migration, which changes nothing.
#[test]
fn a_failed_sqlite_rebuild_changes_nothing() {
    let test = TestDatabase::new(Backend::Sqlite);
    let db = Database::connect(&test.url, &gateway_persistence::PoolOptions::default()).unwrap();
    db.migrate_through("2026-11-28-000002").unwrap();
    {
        let mut conn = db.connection().unwrap();
        diesel::connection::SimpleConnection::batch_execute(
            &mut *conn,
            "PRAGMA foreign_keys = OFF;
             INSERT INTO partner_keys (organisation_id, kid, kty, jwk, added_at)
                 VALUES ('ghost', 'k', 'OKP', '{}', '2026-01-01 00:00:00');
             PRAGMA foreign_keys = ON;",
        )
        .unwrap();
    }
    assert!(db.migrate().is_err());
    assert!(
        !columns(&db)
            .iter()
            .any(|(t, c, _)| t == "evidence" || c == "status"),
        "nothing of the failed migration is left"
    );
    assert_eq!(count(&db, "SELECT count(*) AS n FROM partner_keys"), 1);
}
