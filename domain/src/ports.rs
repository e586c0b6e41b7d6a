//! Ports: what the domain needs from storage. `persistence` implements them; each method's
//! documentation is its contract, and the repository contract tests check it on every backend.

use chrono::{DateTime, Utc};

use crate::accreditation::SecureDomainPattern;
use crate::agreement::{Agreement, AgreementId, AgreementState};
use crate::audit::{AuditEvent, NewAuditEvent};
use crate::dns::{EmailDomain, Verification};
use crate::evidence::{Evidence, EvidenceId, Verdict};
use crate::keys::PartnerKey;
use crate::merkle::{Hash, NodeId, Sha256};
use crate::ods::OdsCode;
use crate::organisation::{NewOrganisation, Organisation, OrganisationId, Version};
use crate::registration_token::RegistrationTokenStatus;
use std::collections::HashMap;

/// A uniqueness rule that a write would break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// The name, or a name it is under, is verified by another active organisation.
    #[error("the domain {0} (or a domain it is under) is verified by another organisation")]
    DomainTaken(EmailDomain),
    /// Another organisation holds the ODS code: it has an approved (or suspended) agreement.
    #[error("the ODS code {0} is held by another organisation with an approved agreement")]
    OdsCodeTaken(OdsCode),
    /// Another directory entry (not deleted) has the email address.
    #[error("another directory entry has the email address {0}")]
    EmailTaken(String),
    /// A unique constraint of the store, by name, that no more specific rule explains.
    #[error("the write breaks the unique constraint {constraint}")]
    Unique { constraint: String },
}

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("not found")]
    NotFound,
    /// The record changed since the caller read it.
    #[error("version mismatch: the record is now at version {}", current.0)]
    VersionMismatch { current: Version },
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// The store could not be reached, or stayed busy after bounded retries (pool or
    /// connection failure, lock timeout, serialisation failure, deadlock): worth retrying
    /// later. The cause is for logs only.
    #[error("storage unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store refused the statement for a reason retrying will not fix (a bug).
    #[error("storage failed")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Stored data no longer passes the domain's rules: a bug or a manual edit.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

/// A registration access token as stored: a public selector to find it by, and the SHA-256
/// of its secret half (hex). The token itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialDigest {
    pub selector: String,
    pub secret_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential {
    pub organisation_id: OrganisationId,
    pub secret_sha256: String,
}

/// A verified claim of another active organisation that overlaps one of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainOverlap {
    /// Our claimed domain.
    pub ours: EmailDomain,
    /// The other organisation's verified domain: the same name, a parent or a subdomain.
    pub theirs: EmailDomain,
}

/// What other organisations' claims mean for one organisation (for reviewers and approval).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimOverlaps {
    pub domains: Vec<DomainOverlap>,
    /// Another organisation holds the ODS code (it has an approved or suspended agreement).
    pub ods_code_held_elsewhere: bool,
    /// How many other active organisations name the same ODS code.
    pub ods_code_registrations_elsewhere: usize,
}

/// A DNS-verified claim, for re-checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsVerifiedClaim {
    pub organisation_id: OrganisationId,
    pub domain: crate::organisation::ClaimedDomain,
    /// The tokens of other active organisations' (unverified) claims on the same name: a
    /// record showing one of them means the name has changed hands.
    pub rival_tokens: Vec<crate::dns::VerificationToken>,
}

/// What an approval read, re-checked by [`AgreementRepository::approve_agreements`] in the
/// transaction that writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalGuard {
    pub organisation: OrganisationId,
    /// The organisation's version the approval's checks (domains, ODS code, check) read.
    pub organisation_version: Version,
    pub ods_code: OdsCode,
}

pub trait OrganisationRepository: Send + Sync {
    /// Stores a new organisation with version 1, its registration credential and `event`,
    /// atomically. Every domain starts unverified with a fresh token.
    ///
    /// Unverified claims block nobody. MUST return `Conflict::DomainTaken(d)` naming a
    /// domain equal to or under a domain verified by another active organisation, and
    /// `Conflict::OdsCodeTaken` when another organisation holds the ODS code (has an
    /// approved or suspended agreement); then it stores nothing. Accreditation of the
    /// returned domains reflects the current list.
    fn create(
        &self,
        id: OrganisationId,
        organisation: &NewOrganisation,
        credential: &CredentialDigest,
        at: DateTime<Utc>,
        event: &NewAuditEvent,
    ) -> Result<Organisation, RepositoryError>;

    /// MUST return `Ok(None)` for an unknown id.
    fn get(&self, id: OrganisationId) -> Result<Option<Organisation>, RepositoryError>;

    /// Organisations in id order (oldest first), those after `after`, at most `limit`.
    fn list_organisations(
        &self,
        after: Option<OrganisationId>,
        limit: i64,
    ) -> Result<Vec<Organisation>, RepositoryError>;

    /// The credential with this selector, if any.
    fn find_credential(&self, selector: &str) -> Result<Option<StoredCredential>, RepositoryError>;

    /// Replaces the stored organisation by `next` (whose version is `expected.next()`) and
    /// appends `event`, atomically, only if the stored version is still `expected`.
    ///
    /// Domains keep the token and verification `next` carries for them.
    ///
    /// MUST return `NotFound` for an unknown id, `VersionMismatch` when the stored version is
    /// not `expected`, and `Conflict::DomainTaken` when a domain the organisation did not
    /// claim before is equal to or under a domain verified by another active organisation;
    /// then it changes nothing. A status other than active releases the organisation's
    /// domains (their claims and verifications stop counting).
    fn update(
        &self,
        expected: Version,
        next: &Organisation,
        event: &NewAuditEvent,
    ) -> Result<Organisation, RepositoryError>;

    /// Marks the organisation's claim on `domain` verified as `verification` says, clears
    /// any missing-record flag, increments the organisation's version and appends `event`,
    /// atomically, holding the domain-verification lock so that two organisations never
    /// verify overlapping names at once.
    ///
    /// MUST return `NotFound` when the organisation is unknown, not active or does not claim
    /// `domain`, and `Conflict::DomainTaken(domain)` when another active organisation holds
    /// a verified claim on `domain` or a parent of it (a verified subdomain elsewhere does
    /// not block); then it changes nothing. A claim that is already verified (say, by a
    /// concurrent request) keeps its first verification: nothing is written, no event is
    /// appended, and the organisation is returned as stored.
    fn verify_domain(
        &self,
        id: OrganisationId,
        domain: &EmailDomain,
        verification: &Verification,
        event: &NewAuditEvent,
    ) -> Result<Organisation, RepositoryError>;

    /// Records that the TXT record of a DNS-verified claim was missing since `since` (or,
    /// with `None`, that it is back), increments the organisation's version and appends
    /// `event`, atomically. MUST return `NotFound` when the organisation does not claim
    /// `domain`.
    fn set_record_missing(
        &self,
        id: OrganisationId,
        domain: &EmailDomain,
        since: Option<DateTime<Utc>>,
        event: &NewAuditEvent,
    ) -> Result<(), RepositoryError>;

    /// Withdraws the verification of the organisation's claim on `domain` (the claim and its
    /// token stay; it is unverified again), clears any missing-record flag, increments the
    /// organisation's version and appends `event`, atomically, only if the claim is still
    /// verified as of `verified_at` (so a verification made meanwhile is never undone).
    ///
    /// MUST return `NotFound` when the organisation is unknown or does not claim `domain`,
    /// and `VersionMismatch` (with the organisation's version) when the claim is not
    /// verified at `verified_at` any more; then it changes nothing.
    fn unverify_domain(
        &self,
        id: OrganisationId,
        domain: &EmailDomain,
        verified_at: DateTime<Utc>,
        event: &NewAuditEvent,
    ) -> Result<Organisation, RepositoryError>;

    /// Every DNS-verified claim of an active organisation, in organisation and domain order.
    fn dns_verified_claims(&self) -> Result<Vec<DnsVerifiedClaim>, RepositoryError>;

    /// How other active organisations' verified claims and ODS codes overlap `organisation`'s.
    fn claim_overlaps(&self, organisation: &Organisation)
        -> Result<ClaimOverlaps, RepositoryError>;

    /// The registration token's state of each of `ids` that has one (organisations
    /// registered before tokens had a state get one by migration).
    fn registration_tokens(
        &self,
        ids: &[OrganisationId],
    ) -> Result<HashMap<OrganisationId, RegistrationTokenStatus>, RepositoryError>;

    /// Rotation by the token's holder: removes the live credential `current_selector` of
    /// organisation `id`, stores `next` in its place, records the rotation at `at` (one more
    /// rotation, the version incremented) and appends `event`, atomically.
    ///
    /// MUST return `NotFound` and change nothing when `current_selector` is no longer a live
    /// credential of `id` (rotated or revoked meanwhile): of concurrent rotations with one
    /// token, exactly one succeeds, and the others' token no longer works.
    fn rotate_credential(
        &self,
        id: OrganisationId,
        current_selector: &str,
        next: &CredentialDigest,
        at: DateTime<Utc>,
        event: &NewAuditEvent,
    ) -> Result<RegistrationTokenStatus, RepositoryError>;

    /// A reviewer's change of the token's state (revocation, or a fresh token after one):
    /// removes every live credential of `next`'s organisation `id`, stores `credential` (when
    /// given) as its only live one, writes `next` (whose version is `expected.next()`) and
    /// appends `event`, atomically, only if the stored state is still at `expected`.
    ///
    /// MUST return `NotFound` when the organisation has no token state, and `VersionMismatch`
    /// (with the current version) when it is not at `expected` any more; then it changes
    /// nothing.
    fn replace_token_state(
        &self,
        id: OrganisationId,
        expected: Version,
        next: &RegistrationTokenStatus,
        credential: Option<&CredentialDigest>,
        event: &NewAuditEvent,
    ) -> Result<RegistrationTokenStatus, RepositoryError>;
}

pub trait SecureDomainRepository: Send + Sync {
    /// Replaces the whole accredited list by `patterns` and appends `event`, atomically.
    /// Returns how many entries are stored.
    fn replace_secure_domains(
        &self,
        patterns: &[SecureDomainPattern],
        event: &NewAuditEvent,
    ) -> Result<usize, RepositoryError>;
}

pub trait AuditRepository: Send + Sync {
    /// Appends one event outside any other change.
    fn append(&self, event: &NewAuditEvent) -> Result<AuditEvent, RepositoryError>;

    /// Appends `events` in one transaction: all of them, or none.
    fn append_all(&self, events: &[NewAuditEvent]) -> Result<(), RepositoryError>;

    /// Events with `seq > after`, oldest first, at most `limit`.
    fn list_events(&self, after: i64, limit: i64) -> Result<Vec<AuditEvent>, RepositoryError>;

    /// The events about one subject, oldest first, at most `limit`.
    fn events_about(
        &self,
        subject_type: &str,
        subject_id: &str,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, RepositoryError>;

    /// The sequencer: seals up to `limit` committed, unsealed records in commit order. Each
    /// gets the next position, its chain hash and its Merkle leaf (with the subtrees it
    /// completes), all in one transaction. MUST seal nothing and return `Ok(0)` while another
    /// process holds the sequencer lock, so positions never fork. Returns how many it sealed.
    fn seal(&self, hasher: &dyn Sha256, limit: i64) -> Result<usize, RepositoryError>;

    /// How many records are sealed, and the last one's chain hash.
    fn sealed_head(&self) -> Result<(i64, Option<String>), RepositoryError>;

    /// Sealed records matching `filter` with positions above `after`, by position, at most
    /// `limit`, each with its stored chain hash. Never an unsealed one.
    fn sealed_records(
        &self,
        filter: &AuditFilter,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<SealedRecord>, RepositoryError>;

    /// The stored complete subtrees among `ids` (missing ones are left out).
    fn tree_nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, RepositoryError>;

    /// Stores a signed checkpoint and remembers the public key that signed it, with `key_mac`
    /// (a MAC under a key derived from the key-encryption key, so that a database writer
    /// cannot slip in a key of their own).
    fn add_checkpoint(
        &self,
        checkpoint: &Checkpoint,
        public_jwk: &serde_json::Value,
        key_mac: &str,
    ) -> Result<(), RepositoryError>;

    /// Every stored checkpoint, by tree size.
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, RepositoryError>;

    /// Every public key that ever signed a checkpoint, with its MAC.
    fn audit_keys(&self) -> Result<Vec<AuditKey>, RepositoryError>;
}

/// What auditors filter the trail by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AuditFilter {
    pub organisation: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// A sealed record and the chain hash stored with it.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedRecord {
    pub event: AuditEvent,
    pub hash: String,
    /// The stored organisation index (for auditors' filters); verification checks it against
    /// the record it indexes.
    pub organisation_id: Option<String>,
}

/// A public key that signed checkpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditKey {
    pub kid: String,
    pub jwk: serde_json::Value,
    pub mac: String,
}

/// A signed tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub tree_size: i64,
    /// Hex SHA-256 Merkle root of the first `tree_size` records.
    pub root_hash: String,
    /// Hex chain hash of record `tree_size - 1`.
    pub chain_hash: String,
    pub signed_at: DateTime<Utc>,
    pub kid: String,
    /// The compact JWS (typ `gw-checkpoint+jws`) over the head.
    pub jws: String,
}

/// Information-governance evidence and its documents. Documents live in the store, so every
/// replica can serve them.
pub trait EvidenceRepository: Send + Sync {
    /// Stores `evidence` with its document bytes (when it has a document), marks each of
    /// `supersede` that is still unjudged (and unsuperseded) when the write commits as
    /// superseded by it, and appends `event`, atomically. MUST return
    /// `NotFound` for an unknown organisation.
    fn add_evidence(
        &self,
        evidence: &Evidence,
        document: Option<&[u8]>,
        supersede: &[EvidenceId],
        event: &NewAuditEvent,
    ) -> Result<Evidence, RepositoryError>;

    /// The organisation's evidence, newest first.
    fn list_evidence(&self, organisation: OrganisationId)
        -> Result<Vec<Evidence>, RepositoryError>;

    fn get_evidence(&self, id: EvidenceId) -> Result<Option<Evidence>, RepositoryError>;

    /// Records `verdict` on `id`, marks each of `supersede` superseded by it, and appends
    /// `event`, atomically. A judged item is immutable: MUST return `VersionMismatch` (and
    /// change nothing) when `id` already has a verdict, `NotFound` when it does not exist.
    fn judge_evidence(
        &self,
        id: EvidenceId,
        verdict: &Verdict,
        supersede: &[EvidenceId],
        event: &NewAuditEvent,
    ) -> Result<Evidence, RepositoryError>;

    /// The document's bytes, if the item has one.
    fn document(&self, id: EvidenceId) -> Result<Option<Vec<u8>>, RepositoryError>;
}

pub trait AgreementRepository: Send + Sync {
    /// Stores a new agreement and appends `event`, atomically. MUST return `NotFound` for
    /// an unknown organisation.
    fn create_agreement(
        &self,
        agreement: &Agreement,
        event: &NewAuditEvent,
    ) -> Result<Agreement, RepositoryError>;

    fn get_agreement(&self, id: AgreementId) -> Result<Option<Agreement>, RepositoryError>;

    /// The organisation's agreements, newest first.
    fn list_agreements(
        &self,
        organisation: OrganisationId,
    ) -> Result<Vec<Agreement>, RepositoryError>;

    /// Agreements in `state` (any state when `None`), oldest first, those after `after`, at
    /// most `limit`.
    fn list_agreements_by_state(
        &self,
        state: Option<AgreementState>,
        after: Option<AgreementId>,
        limit: i64,
    ) -> Result<Vec<Agreement>, RepositoryError>;

    /// Replaces each `(expected, next)` agreement by `next` if its stored version is still
    /// `expected`, and appends `events`, all or nothing. The order of `changes` does not
    /// matter: changes that take an agreement out of force are applied first. MUST return `VersionMismatch` (and
    /// change nothing) when any stored version differs, `NotFound` for an unknown id, and a
    /// `Conflict` when a second agreement of one organisation would be in force.
    fn save_agreements(
        &self,
        changes: &[(Version, Agreement)],
        events: &[NewAuditEvent],
    ) -> Result<(), RepositoryError>;

    /// `save_agreements` for an approval: in the same transaction, holding the lock that
    /// registrations, registration changes and domain verifications take, it first re-checks
    /// what the approval read. MUST return `VersionMismatch` (with the organisation's current
    /// version) when `guard.organisation` is no longer at `guard.organisation_version` (its
    /// registration, domains or status changed), `NotFound` when it is gone, and
    /// `Conflict::OdsCodeTaken` when another organisation holds `guard.ods_code` (has an
    /// agreement approved or suspended); then it changes nothing. So of two concurrent
    /// approvals of organisations naming one ODS code, at most one commits.
    fn approve_agreements(
        &self,
        changes: &[(Version, Agreement)],
        events: &[NewAuditEvent],
        guard: &ApprovalGuard,
    ) -> Result<(), RepositoryError>;
}

pub trait HealthCheck: Send + Sync {
    /// MUST fail when the store cannot answer a trivial query.
    fn ping(&self) -> Result<(), RepositoryError>;
}

pub trait PartnerKeyRepository: Send + Sync {
    /// Replaces the organisation's whole key set by `keys` and appends `event`, atomically.
    /// A key whose `kid` and JWK are unchanged keeps its `added_at` and `last_used_at`.
    /// Returns the stored set. MUST return `NotFound` for an unknown organisation.
    fn replace_keys(
        &self,
        organisation: OrganisationId,
        keys: &[PartnerKey],
        event: &NewAuditEvent,
    ) -> Result<Vec<PartnerKey>, RepositoryError>;

    /// The organisation's keys, in `kid` order.
    fn list_keys(&self, organisation: OrganisationId) -> Result<Vec<PartnerKey>, RepositoryError>;

    fn find_key(
        &self,
        organisation: OrganisationId,
        kid: &str,
    ) -> Result<Option<PartnerKey>, RepositoryError>;

    /// Every organisation's keys (for maintenance).
    fn all_keys(&self) -> Result<Vec<(OrganisationId, PartnerKey)>, RepositoryError>;

    /// Removes those of `keys` that are still idle since `idle_before` (last used, or if never
    /// used added, at or before it), and appends `event(organisation, removed kids)` for each
    /// organisation that lost keys, atomically. Whether a key is still idle MUST be decided by
    /// the statement that deletes it, so a key used after the caller read it is kept (and not
    /// named in any event). Returns the keys removed.
    fn remove_idle_keys(
        &self,
        keys: &[(OrganisationId, String)],
        idle_before: DateTime<Utc>,
        event: &dyn Fn(OrganisationId, &[String]) -> NewAuditEvent,
    ) -> Result<Vec<(OrganisationId, String)>, RepositoryError>;
}

/// Client-assertion `jti`s seen, shared by every replica through the database.
pub trait ReplayCache: Send + Sync {
    /// Records `(client, jti)` until `expires_at`. MUST return `Ok(false)`, recording nothing,
    /// when the pair is already recorded and unexpired at `now` (a replay), also when two
    /// replicas race with the same pair.
    fn remember(
        &self,
        client: &str,
        jti: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, RepositoryError>;

    /// Forgets at most `limit` entries expired at `now`, in one short write; returns how
    /// many. Callers purge in batches until fewer than `limit` come back, so a large backlog
    /// never holds the store's write lock for long.
    fn purge_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<usize, RepositoryError>;

    /// Everything issuing one token writes, in one transaction: remembers `(client, jti)` as
    /// [`ReplayCache::remember`] does, marks `key` used at `now`, and appends `event`.
    /// MUST return `Ok(false)` and change nothing when the jti is a replay.
    fn record_issuance(
        &self,
        client: &str,
        jti: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
        key: Option<(OrganisationId, &str)>,
        event: &NewAuditEvent,
    ) -> Result<bool, RepositoryError> {
        let issuance = Issuance {
            client: client.to_owned(),
            jti: jti.to_owned(),
            expires_at,
            key: key.map(|(organisation, kid)| (organisation, kid.to_owned())),
            event: event.clone(),
        };
        Ok(self
            .record_issuances(std::slice::from_ref(&issuance), now)?
            .first()
            .copied()
            .unwrap_or(false))
    }

    /// [`ReplayCache::record_issuance`] for many tokens in ONE transaction (group commit):
    /// all of it commits, or none of it. Returns one flag per issuance, in order: `true` when
    /// it was recorded, `false` for a replay, whose jti, key use and event are not written. A
    /// replay is a pair recorded and unexpired at `now` (also when another replica records it
    /// concurrently: MUST NOT fail the batch), or one that an earlier issuance of the same
    /// batch names.
    fn record_issuances(
        &self,
        issuances: &[Issuance],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, RepositoryError>;
}

/// What issuing one token writes: its client's `jti` for the replay cache (until
/// `expires_at`), the key that signed the assertion (an organisation's; `None` for the
/// publisher), and the `token.issued` record.
#[derive(Debug, Clone)]
pub struct Issuance {
    pub client: String,
    pub jti: String,
    pub expires_at: DateTime<Utc>,
    pub key: Option<(OrganisationId, String)>,
    pub event: NewAuditEvent,
}

/// One of the gateway's own token-signing keys, its private half sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSigningKey {
    pub kid: String,
    pub alg: String,
    /// The private key, encrypted with the key-encryption key (opaque to storage).
    pub sealed_private_key: String,
    pub public_jwk: serde_json::Value,
    pub created_at: DateTime<Utc>,
    /// Set when a newer key replaced this one: published until then, then removed.
    pub retire_after: Option<DateTime<Utc>>,
}

pub trait SigningKeyRepository: Send + Sync {
    /// All stored keys, newest first. The newest is the active one.
    fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, RepositoryError>;

    /// Adds `key` as the active key; every other key without a retirement time gets
    /// `retire_others_after`. Appends `event`. Atomic.
    fn add_signing_key(
        &self,
        key: &StoredSigningKey,
        retire_others_after: DateTime<Utc>,
        event: &NewAuditEvent,
    ) -> Result<(), RepositoryError>;

    /// Removes keys whose retirement time has passed; returns how many.
    fn prune_signing_keys(&self, now: DateTime<Utc>) -> Result<usize, RepositoryError>;
}

/// One fixed-window counter: how often `key` hit the limit `limit` in the minute that starts
/// at `window_start` (seconds since the Unix epoch), with the last hit's short note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowCount {
    pub limit: String,
    pub key: String,
    pub window_start: i64,
    pub hits: i64,
    pub note: Option<String>,
}

/// Fixed-window counters shared by every replica through the database: the rate limits that
/// must hold across replicas, and the counts behind aggregated failure audit records.
pub trait RateLimitStore: Send + Sync {
    /// Adds one hit to `(limit, key, window_start)` in one statement, creating the counter
    /// with one hit, and keeps `note` as its last note; returns the count after this hit.
    /// MUST count every hit exactly once when replicas race.
    fn hit(
        &self,
        limit: &str,
        key: &str,
        window_start: i64,
        note: Option<&str>,
    ) -> Result<i64, RepositoryError>;

    /// The count of `(limit, key, window_start)`; 0 when there is no counter.
    fn hits(&self, limit: &str, key: &str, window_start: i64) -> Result<i64, RepositoryError>;

    /// Removes every counter whose window started before `before`, and in the same
    /// transaction appends the audit events `audit` makes of them (`None`: no record). MUST
    /// hand each counter to `audit` once only, also when replicas flush at once. Returns how
    /// many counters were removed.
    fn flush_windows(
        &self,
        before: i64,
        audit: &dyn Fn(&WindowCount) -> Option<NewAuditEvent>,
    ) -> Result<usize, RepositoryError>;
}

/// A stored answer to a request made with an `Idempotency-Key`: a retry with the same key gets
/// it again, and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentAnswer {
    /// Who may replay it and for what (e.g. `directory.changes:<client>`), and the key.
    pub scope: String,
    pub key: String,
    /// Hex SHA-256 of the request body: the same key with another body is refused.
    pub request_sha256: String,
    /// The answer, as JSON.
    pub answer: serde_json::Value,
}

/// Where the change feed stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedHead {
    /// The highest position handed out (0 before the first change).
    pub head: i64,
    /// Changes at or below this position may have been purged: a reader whose cursor is
    /// below it must resync from scratch.
    pub purged_through: i64,
}

/// One page of the change feed after a position, for one view's organisations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangesPage {
    /// The changes that touch the view, by position, each with its entry as it is now (`None`
    /// when it is absent now).
    pub changes: Vec<(
        crate::directory::FeedChange,
        Option<crate::directory::DirectoryEntry>,
    )>,
    /// The feed's head as this page read it: a reader that got fewer changes than it asked for
    /// may continue from here (nothing between touches the view).
    pub head: FeedHead,
}

/// The national directory and its change feed.
///
/// Positions are handed out by a sequencer, exactly as for the audit trail (see
/// `persistence/src/audit.rs`): publishers insert their change rows without a position and
/// never wait for one another; one sequencer at a time (the holder of a PostgreSQL advisory
/// lock, or the in-process write lock on SQLite) gives the committed rows it can see the next
/// positions in one transaction. A publisher that commits late simply gets later positions, so
/// a reader paging by position never skips a committed change.
pub trait DirectoryRepository: Send + Sync {
    /// Applies `operations` (at most one per entry) at `at`, all or nothing: each upsert that
    /// changes its entry, or brings a deleted one back, and each delete of a present entry
    /// writes the entry and one unpositioned change row recording the entry's state before and
    /// after; operations that change nothing write nothing. In the same transaction it
    /// appends the event and stores the answer (when there is one) that `record` makes of
    /// what the batch did.
    ///
    /// MUST return `Conflict::EmailTaken(email)` when an upserted entry's email is held by
    /// another entry that is not deleted (and that this batch does not delete or re-address),
    /// and a `Conflict::Unique` when the answer's scope and key are already stored (a concurrent
    /// retry); then it changes nothing. Concurrent batches touching one entry are serialised,
    /// so each change's before-state is the state the previous change left.
    fn apply_changes(
        &self,
        operations: &[crate::directory::DirectoryOperation],
        at: DateTime<Utc>,
        record: &dyn Fn(
            &crate::directory::BatchOutcome,
        ) -> (NewAuditEvent, Option<IdempotentAnswer>),
    ) -> Result<crate::directory::BatchOutcome, RepositoryError>;

    /// The stored answer for `(scope, key)`, if any.
    fn idempotent_answer(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<IdempotentAnswer>, RepositoryError>;

    /// The sequencer: positions up to `limit` committed change rows in commit order. MUST
    /// position nothing and return `Ok(0)` while another process holds the sequencer lock.
    /// Returns how many it positioned.
    fn sequence_changes(&self, limit: i64) -> Result<usize, RepositoryError>;

    fn feed_head(&self) -> Result<FeedHead, RepositoryError>;

    /// Present, unhidden entries of `organisations` with ids above `after` (and at most
    /// `through`, when given), in id order, at most `limit`, read in one transaction.
    fn entries_page(
        &self,
        organisations: &crate::agreement::OdsSelection,
        after: Option<crate::directory::EntryId>,
        through: Option<crate::directory::EntryId>,
        limit: i64,
    ) -> Result<Vec<crate::directory::DirectoryEntry>, RepositoryError>;

    /// The id of the `window`-th entry (of any state) above `after`, in id order; `None` when
    /// fewer remain. A page of a narrow view scans no further than this.
    fn entry_scan_bound(
        &self,
        after: Option<crate::directory::EntryId>,
        window: i64,
    ) -> Result<Option<crate::directory::EntryId>, RepositoryError>;

    /// Positioned changes above `after` and at most `through` (and the head) whose before- or
    /// after-state is a present, unhidden entry of `organisations`, by position, at most
    /// `limit`. The head is read before the changes (every position up to it is visible), and
    /// `purged_through` after them (a purge that ran meanwhile shows).
    fn changes_after(
        &self,
        organisations: &crate::agreement::OdsSelection,
        after: i64,
        through: i64,
        limit: i64,
    ) -> Result<ChangesPage, RepositoryError>;

    /// Purges at most `limit` positioned change rows made before `before` (oldest first) and
    /// the tombstones of entries deleted before it, raising `purged_through` to the highest
    /// position purged, in one short transaction; returns how many change rows it purged.
    fn purge_changes(&self, before: DateTime<Utc>, limit: i64) -> Result<usize, RepositoryError>;

    /// Forgets idempotent answers stored before `before`; returns how many.
    fn purge_answers(&self, before: DateTime<Utc>) -> Result<usize, RepositoryError>;

    /// The entry with this id, if it is present (not deleted).
    fn get_entry(
        &self,
        id: crate::directory::EntryId,
    ) -> Result<Option<crate::directory::DirectoryEntry>, RepositoryError>;
}

/// What one replace of a mailbox's blocks did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replaced {
    /// Blocks that started in the range before.
    pub removed: usize,
    /// Blocks the range holds now.
    pub stored: usize,
}

/// One mailbox's calendar as a free/busy answer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxCalendar {
    /// The entry's email, lower-cased (the key asked addresses are matched on).
    pub email_key: String,
    /// The blocks overlapping the window asked, by start.
    pub blocks: Vec<crate::calendar::BusyBlock>,
    pub working_hours: Option<crate::calendar::WorkingHours>,
}

/// Busy blocks and working hours, per mailbox: a present directory entry's email, compared
/// without regard to case.
pub trait CalendarRepository: Send + Sync {
    /// Replaces the blocks of `mailbox` whose start lies in `range` with `blocks`, in one
    /// transaction; concurrent replaces of one mailbox take turns. MUST answer `NotFound`,
    /// changing nothing, when no present entry has the address.
    fn replace_blocks(
        &self,
        mailbox: &crate::contact::EmailAddress,
        range: &crate::calendar::ReplaceRange,
        blocks: &[crate::calendar::BusyBlock],
    ) -> Result<Replaced, RepositoryError>;

    /// Sets the working hours of `mailbox`; `NotFound` as for `replace_blocks`.
    fn set_working_hours(
        &self,
        mailbox: &crate::contact::EmailAddress,
        hours: &crate::calendar::WorkingHours,
        at: DateTime<Utc>,
    ) -> Result<(), RepositoryError>;

    /// The calendars of those of `mailboxes` that are present, unhidden entries of
    /// `organisations`, with their blocks overlapping `[from, to)`, read in one transaction;
    /// the others are simply absent from the answer.
    fn calendars(
        &self,
        mailboxes: &[crate::contact::EmailAddress],
        organisations: &crate::agreement::OdsSelection,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<MailboxCalendar>, RepositoryError>;
}
