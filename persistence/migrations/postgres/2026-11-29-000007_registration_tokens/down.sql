-- Revoked organisations stay without a live credential.
DROP TABLE registration_tokens;
