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

/// A column's type as a kind both backends share. Only types the migrations use are
/// mapped; anything else keeps its own name, so a new type shows up as a difference.
fn kind_of(declared: &str, sqlite_rowid_alias: bool) -> String {
    let declared = declared.trim().to_ascii_lowercase();
    let kind = match declared.as_str() {
        // SQLite's `INTEGER PRIMARY KEY` is the 64-bit rowid, PostgreSQL's BIGSERIAL's twin.
        "integer" if sqlite_rowid_alias => "int64",
        "integer" | "int" | "int4" => "int32",
        "bigint" | "int8" => "int64",
        "smallint" | "int2" => "int16",
        "text" | "character varying" | "varchar" => "text",
        "boolean" | "bool" => "bool",
        "timestamp" | "timestamp without time zone" => "timestamp",
        "timestamptz" | "timestamp with time zone" => "timestamptz",
        "date" => "date",
        "blob" | "bytea" => "bytes",
        "double precision" | "real" | "float8" => "float64",
        other => return format!("unmapped:{other}"),
    };
    kind.to_owned()
}

#[derive(QueryableByName, Debug)]
struct TypedColumn {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    declared: String,
    /// SQLite: this column alone is the primary key (a rowid alias when declared INTEGER).
    #[diesel(sql_type = Integer)]
    sole_key: i32,
    /// The column's place in the primary key (1-based), 0 when not part of it.
    #[diesel(sql_type = Integer)]
    key_position: i32,
}

#[derive(QueryableByName, Debug)]
struct IndexColumn {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    index_name: String,
    #[diesel(sql_type = Integer)]
    is_unique: i32,
    #[diesel(sql_type = Integer)]
    is_primary: i32,
    #[diesel(sql_type = Integer)]
    is_partial: i32,
    #[diesel(sql_type = Integer)]
    seqno: i32,
    #[diesel(sql_type = Text)]
    column_name: String,
}

/// An index as both backends can describe it: its table, its key columns in order (an
/// expression as `(expression)`), whether it is unique and whether it is partial. Names are
/// left out: a unique constraint is an automatic index on SQLite and a named constraint on
/// PostgreSQL, and either one keeps the same race guarantee.
type IndexShape = (String, Vec<String>, bool, bool);

/// An index's (unique, partial, (position, column) list), by (table, index name).
type IndexColumns = (bool, bool, Vec<(i32, String)>);

#[derive(Debug, Default)]
struct Shape {
    /// (table, column, kind)
    types: BTreeSet<(String, String, String)>,
    /// (table, key columns in order)
    primary_keys: BTreeSet<(String, Vec<String>)>,
    /// Every index other than the primary key's, sorted (duplicates kept).
    indexes: Vec<IndexShape>,
}

fn shape(db: &Database) -> Shape {
    let mut conn = db.connection().unwrap();
    let (columns, index_columns): (Vec<TypedColumn>, Vec<IndexColumn>) = match &mut *conn {
        DbConnection::Sqlite(c) => (
            diesel::sql_query(
                "SELECT m.name AS table_name, p.name AS column_name, p.type AS declared,
                        CASE WHEN p.pk = 1 AND (SELECT count(*) FROM pragma_table_info(m.name) q
                                                WHERE q.pk > 0) = 1 THEN 1 ELSE 0 END AS sole_key,
                        p.pk AS key_position
                 FROM sqlite_master m JOIN pragma_table_info(m.name) p
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'
                   AND m.name <> '__diesel_schema_migrations'",
            )
            .load(c)
            .unwrap(),
            diesel::sql_query(
                "SELECT m.name AS table_name, il.name AS index_name, il.\"unique\" AS is_unique,
                        CASE WHEN il.origin = 'pk' THEN 1 ELSE 0 END AS is_primary,
                        il.partial AS is_partial, x.seqno AS seqno,
                        COALESCE(x.name, '(expression)') AS column_name
                 FROM sqlite_master m JOIN pragma_index_list(m.name) il
                      JOIN pragma_index_xinfo(il.name) x
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'
                   AND m.name <> '__diesel_schema_migrations' AND x.key = 1",
            )
            .load(c)
            .unwrap(),
        ),
        DbConnection::Postgres(c) => (
            diesel::sql_query(
                "SELECT c.table_name::text AS table_name, c.column_name::text AS column_name,
                        c.data_type::text AS declared, 0 AS sole_key,
                        COALESCE((SELECT k.ordinal_position::int
                                  FROM information_schema.table_constraints t
                                  JOIN information_schema.key_column_usage k
                                    ON k.constraint_name = t.constraint_name
                                   AND k.table_schema = t.table_schema
                                   AND k.table_name = t.table_name
                                  WHERE t.constraint_type = 'PRIMARY KEY'
                                    AND t.table_schema = c.table_schema
                                    AND t.table_name = c.table_name
                                    AND k.column_name = c.column_name), 0) AS key_position
                 FROM information_schema.columns c
                 WHERE c.table_schema = 'public' AND c.table_name <> '__diesel_schema_migrations'",
            )
            .load(c)
            .unwrap(),
            diesel::sql_query(
                "SELECT t.relname::text AS table_name, i.relname::text AS index_name,
                        ix.indisunique::int AS is_unique, ix.indisprimary::int AS is_primary,
                        (ix.indpred IS NOT NULL)::int AS is_partial, k.ord::int AS seqno,
                        COALESCE(a.attname::text, '(expression)') AS column_name
                 FROM pg_index ix
                 JOIN pg_class t ON t.oid = ix.indrelid
                 JOIN pg_class i ON i.oid = ix.indexrelid
                 JOIN pg_namespace n ON n.oid = t.relnamespace
                 CROSS JOIN LATERAL unnest(ix.indkey::smallint[]) WITH ORDINALITY AS k(attnum, ord)
                 LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum AND k.attnum <> 0
                 WHERE n.nspname = 'public' AND t.relname <> '__diesel_schema_migrations'
                   AND k.ord <= ix.indnkeyatts",
            )
            .load(c)
            .unwrap(),
        ),
    };
    let mut shape = Shape::default();
    let mut keys: std::collections::BTreeMap<String, Vec<(i32, String)>> = Default::default();
    for c in columns {
        let rowid_alias = c.sole_key == 1;
        shape.types.insert((
            c.table_name.clone(),
            c.column_name.clone(),
            kind_of(&c.declared, rowid_alias),
        ));
        if c.key_position > 0 {
            keys.entry(c.table_name)
                .or_default()
                .push((c.key_position, c.column_name));
        }
    }
    for (table, mut columns) in keys {
        columns.sort();
        shape
            .primary_keys
            .insert((table, columns.into_iter().map(|(_, c)| c).collect()));
    }
    let mut indexes: std::collections::BTreeMap<(String, String), IndexColumns> =
        Default::default();
    for c in index_columns.into_iter().filter(|c| c.is_primary == 0) {
        indexes
            .entry((c.table_name, c.index_name))
            .or_insert_with(|| (c.is_unique == 1, c.is_partial == 1, Vec::new()))
            .2
            .push((c.seqno, c.column_name));
    }
    shape.indexes = indexes
        .into_iter()
        .map(|((table, _), (unique, partial, mut columns))| {
            columns.sort();
            (
                table,
                columns.into_iter().map(|(_, c)| c).collect(),
                unique,
                partial,
            )
        })
        .collect();
    shape.indexes.sort();
    shape
}

fn differences<T: Ord + Clone + std::fmt::Debug>(sqlite: &[T], postgres: &[T]) -> String {
    let count = |items: &[T]| {
        let mut counts = std::collections::BTreeMap::<T, usize>::new();
        for item in items {
            *counts.entry(item.clone()).or_default() += 1;
        }
        counts
    };
    let (s, p) = (count(sqlite), count(postgres));
    let mut out = String::new();
    for (item, n) in &s {
        let m = p.get(item).copied().unwrap_or(0);
        if *n != m {
            out.push_str(&format!("  {item:?}: {n} in SQLite, {m} in PostgreSQL\n"));
        }
    }
    for (item, m) in &p {
        if !s.contains_key(item) {
            out.push_str(&format!("  {item:?}: 0 in SQLite, {m} in PostgreSQL\n"));
        }
    }
    out
}

/// What differs between the two shapes, as a report; empty when they match.
fn compare(s: &Shape, p: &Shape) -> String {
    let unmapped: Vec<_> = s
        .types
        .iter()
        .chain(&p.types)
        .filter(|t| t.2.starts_with("unmapped:"))
        .collect();
    assert!(
        unmapped.is_empty(),
        "map these types to a kind in kind_of: {unmapped:?}"
    );
    let listed = |set: &BTreeSet<_>| set.iter().cloned().collect::<Vec<_>>();
    let types = differences(&listed(&s.types), &listed(&p.types));
    let keys = differences(
        &s.primary_keys.iter().cloned().collect::<Vec<_>>(),
        &p.primary_keys.iter().cloned().collect::<Vec<_>>(),
    );
    let indexes = differences(&s.indexes, &p.indexes);
    if types.is_empty() && keys.is_empty() && indexes.is_empty() {
        return String::new();
    }
    format!("column types:\n{types}primary keys:\n{keys}indexes (table, columns, unique, partial):\n{indexes}")
}

/// Types (as common kinds), primary keys, unique constraints and indexes match too: the race
/// guarantees (one winner per jti, per verified domain, per approved agreement...) rest on
/// the unique indexes being the same on both backends. Generic over whatever tables the
/// migrations create.
#[test]
fn both_backends_have_the_same_types_keys_and_indexes() {
    let sqlite = TestDatabase::new(Backend::Sqlite);
    let postgres = TestDatabase::new(Backend::Postgres);
    let (s, p) = (shape(&sqlite.open()), shape(&postgres.open()));
    assert!(
        s.indexes.iter().any(|i| i.2),
        "expected unique indexes: {:?}",
        s.indexes
    );
    assert!(
        s.primary_keys.len() > 10,
        "expected primary keys: {:?}",
        s.primary_keys
    );
    let report = compare(&s, &p);
    assert!(report.is_empty(), "{report}");
}

/// The comparison itself sees a type, a primary key and a unique index that differ.
#[test]
fn the_parity_check_sees_types_keys_and_unique_indexes_that_differ() {
    let sqlite = TestDatabase::new(Backend::Sqlite);
    let postgres = TestDatabase::new(Backend::Postgres);
    let (sqlite_db, postgres_db) = (sqlite.open(), postgres.open());
    execute(
        &sqlite_db,
        "CREATE TABLE parity_probe (a TEXT NOT NULL, b BIGINT NOT NULL, PRIMARY KEY (a, b))",
    );
    execute(
        &postgres_db,
        "CREATE TABLE parity_probe (a TEXT NOT NULL, b INTEGER NOT NULL, PRIMARY KEY (a))",
    );
    execute(
        &sqlite_db,
        "CREATE UNIQUE INDEX parity_probe_b ON parity_probe (b)",
    );
    execute(
        &postgres_db,
        "CREATE INDEX parity_probe_b ON parity_probe (b)",
    );
    let report = compare(&shape(&sqlite_db), &shape(&postgres_db));
    assert!(
        report.contains(r#"("parity_probe", "b", "int64")"#),
        "{report}"
    );
    assert!(
        report.contains(r#"("parity_probe", ["a", "b"])"#),
        "{report}"
    );
    assert!(
        report.contains(r#"("parity_probe", ["b"], true, false)"#),
        "{report}"
    );
    assert!(
        !report.contains("partner_keys"),
        "only the probe differs: {report}"
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
