//! End-to-end tests: the real `Application` on port 0 against a fresh SQLite file or a fresh
//! PostgreSQL database per test, driven over HTTP. One module per resource.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod keys;
mod oidc_provider;
mod support;

mod abuse;
mod address_book;
mod audit;
mod bench_address_book;
mod bench_free_busy;
mod calendars;
mod credentials;
mod domains;
mod health;
mod identity;
mod onboarding;
mod registrations;
mod replicas;
mod reviewers;
mod schema;
mod sessions;
mod storage;
