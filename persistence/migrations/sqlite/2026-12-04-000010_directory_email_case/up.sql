-- Email addresses are compared without regard to case (as Exchange does: Jane.Doe@nhs.net and
-- jane.doe@nhs.net are one mailbox), so no two live entries may differ only in case.
DROP INDEX directory_entries_email;
CREATE UNIQUE INDEX directory_entries_email ON directory_entries (lower(email)) WHERE deleted_at IS NULL;

