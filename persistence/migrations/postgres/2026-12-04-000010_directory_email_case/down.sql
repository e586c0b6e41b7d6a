DROP INDEX directory_entries_email;
CREATE UNIQUE INDEX directory_entries_email ON directory_entries (email) WHERE deleted_at IS NULL;
