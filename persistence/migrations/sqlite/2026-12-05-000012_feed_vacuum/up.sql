-- PostgreSQL only (autovacuum settings of the change feed); SQLite has no counterpart.
SELECT 1;
