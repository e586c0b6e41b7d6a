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
