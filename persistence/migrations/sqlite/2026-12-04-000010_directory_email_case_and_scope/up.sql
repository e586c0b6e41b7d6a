-- Email addresses are compared without regard to case (as Exchange does: Jane.Doe@nhs.net and
-- jane.doe@nhs.net are one mailbox), so no two live entries may differ only in case.
DROP INDEX directory_entries_email;
CREATE UNIQUE INDEX directory_entries_email ON directory_entries (lower(email)) WHERE deleted_at IS NULL;

-- A partner whose view is a few organisations pages through its entries, and the changes that
-- concern them, without walking everyone else's.
CREATE INDEX directory_entries_scope ON directory_entries (ods_code, id);
CREATE INDEX directory_changes_after_scope ON directory_changes (after_ods, position);
CREATE INDEX directory_changes_before_scope ON directory_changes (before_ods, position);
