//! Diesel table definitions, shared by both backends (the migrations keep them identical).

diesel::table! {
    organisations (id) {
        id -> Text,
        ods_code -> Text,
        name -> Text,
        category -> Text,
        exchange_version -> Text,
        ig_lead_name -> Text,
        ig_lead_email -> Text,
        technical_name -> Text,
        technical_email -> Text,
        business_need -> Text,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        status -> Text,
        status_reason -> Nullable<Text>,
    }
}

diesel::table! {
    organisation_domains (organisation_id, domain) {
        organisation_id -> Text,
        domain -> Text,
        position -> Integer,
        active -> Bool,
        verification_token -> Text,
        verified_at -> Nullable<Timestamp>,
        verification_method -> Nullable<Text>,
        verified_by -> Nullable<Text>,
        verification_reason -> Nullable<Text>,
        record_missing_since -> Nullable<Timestamp>,
    }
}

diesel::table! {
    registration_credentials (selector) {
        selector -> Text,
        organisation_id -> Text,
        secret_sha256 -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    secure_email_domains (pattern) {
        pattern -> Text,
        imported_at -> Timestamp,
    }
}

diesel::table! {
    audit_events (seq) {
        seq -> BigInt,
        id -> Text,
        occurred_at -> Timestamp,
        actor_type -> Text,
        actor_id -> Nullable<Text>,
        action -> Text,
        subject_type -> Text,
        subject_id -> Nullable<Text>,
        request_id -> Nullable<Text>,
        details -> Text,
        prev_hash -> Nullable<Text>,
        hash -> Nullable<Text>,
        log_position -> Nullable<BigInt>,
        organisation_id -> Nullable<Text>,
    }
}

diesel::table! {
    audit_tree (level, idx) {
        level -> Integer,
        idx -> BigInt,
        hash -> Text,
    }
}

diesel::table! {
    audit_checkpoints (tree_size) {
        tree_size -> BigInt,
        root_hash -> Text,
        chain_hash -> Text,
        signed_at -> Timestamp,
        kid -> Text,
        jws -> Text,
    }
}

diesel::table! {
    audit_keys (kid) {
        kid -> Text,
        public_jwk -> Text,
        mac -> Text,
        first_used_at -> Timestamp,
    }
}

diesel::joinable!(organisation_domains -> organisations (organisation_id));
diesel::joinable!(registration_credentials -> organisations (organisation_id));

diesel::allow_tables_to_appear_in_same_query!(
    organisations,
    organisation_domains,
    registration_credentials,
    secure_email_domains,
    audit_events,
);

diesel::table! {
    partner_keys (organisation_id, kid) {
        organisation_id -> Text,
        kid -> Text,
        kty -> Text,
        alg -> Nullable<Text>,
        jwk -> Text,
        added_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    assertion_jtis (client_id, jti) {
        client_id -> Text,
        jti -> Text,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        alg -> Text,
        sealed_private_key -> Text,
        public_jwk -> Text,
        created_at -> Timestamp,
        retire_after -> Nullable<Timestamp>,
    }
}

diesel::joinable!(partner_keys -> organisations (organisation_id));
diesel::allow_tables_to_appear_in_same_query!(
    partner_keys,
    organisations,
    assertion_jtis,
    signing_keys
);

diesel::table! {
    evidence (id) {
        id -> Text,
        organisation_id -> Text,
        kind -> Text,
        title -> Nullable<Text>,
        dspt_status -> Nullable<Text>,
        registration_number -> Nullable<Text>,
        published_on -> Nullable<Date>,
        expires_on -> Nullable<Date>,
        document_sha256 -> Nullable<Text>,
        document_size -> Nullable<BigInt>,
        document_filename -> Nullable<Text>,
        submitted_at -> Timestamp,
        verdict -> Nullable<Text>,
        verdict_reason -> Nullable<Text>,
        verdict_by -> Nullable<Text>,
        verdict_at -> Nullable<Timestamp>,
        superseded_by -> Nullable<Text>,
    }
}

diesel::table! {
    evidence_documents (evidence_id) {
        evidence_id -> Text,
        content -> Binary,
    }
}

diesel::table! {
    agreements (id) {
        id -> Text,
        organisation_id -> Text,
        template_version -> Text,
        template_sha256 -> Text,
        scopes -> Text,
        starts_on -> Date,
        ends_on -> Date,
        signatory_name -> Text,
        signatory_role -> Text,
        signatory_email -> Text,
        state -> Text,
        state_reason -> Nullable<Text>,
        suspension -> Nullable<Text>,
        signature -> Nullable<Text>,
        review_check -> Nullable<Text>,
        limited_details_granted -> Bool,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::joinable!(evidence -> organisations (organisation_id));
diesel::joinable!(evidence_documents -> evidence (evidence_id));
diesel::joinable!(agreements -> organisations (organisation_id));
diesel::allow_tables_to_appear_in_same_query!(
    evidence,
    evidence_documents,
    agreements,
    organisations
);

diesel::table! {
    rate_limit_counters (limit_name, client_key, window_start) {
        limit_name -> Text,
        client_key -> Text,
        window_start -> BigInt,
        hits -> BigInt,
        note -> Nullable<Text>,
    }
}

diesel::table! {
    reviewer_sessions (id_sha256) {
        id_sha256 -> Text,
        subject -> Text,
        name -> Nullable<Text>,
        email -> Nullable<Text>,
        roles -> Text,
        person -> Bool,
        csrf_token -> Text,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    registration_tokens (organisation_id) {
        organisation_id -> Text,
        state -> Text,
        issued_at -> Timestamp,
        issued_by -> Nullable<Text>,
        rotated_at -> Nullable<Timestamp>,
        rotations -> BigInt,
        revoked_at -> Nullable<Timestamp>,
        revoked_by -> Nullable<Text>,
        revocation_reason -> Nullable<Text>,
        version -> BigInt,
    }
}

diesel::joinable!(registration_tokens -> organisations (organisation_id));
diesel::allow_tables_to_appear_in_same_query!(registration_tokens, organisations);

diesel::table! {
    directory_entries (id) {
        id -> Text,
        email -> Text,
        display_name -> Text,
        given_name -> Nullable<Text>,
        surname -> Nullable<Text>,
        job_title -> Nullable<Text>,
        department -> Nullable<Text>,
        ods_code -> Text,
        organisation_name -> Text,
        office_phone -> Nullable<Text>,
        mobile_phone -> Nullable<Text>,
        hidden -> Bool,
        changed_at -> Timestamp,
        deleted_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    directory_changes (seq) {
        seq -> BigInt,
        position -> Nullable<BigInt>,
        entry_id -> Text,
        changed_at -> Timestamp,
        before_ods -> Nullable<Text>,
        before_hidden -> Bool,
        after_ods -> Nullable<Text>,
        after_hidden -> Bool,
    }
}

diesel::table! {
    directory_feed (id) {
        id -> BigInt,
        purged_through -> BigInt,
    }
}

diesel::table! {
    idempotency_keys (scope, idem_key) {
        scope -> Text,
        idem_key -> Text,
        request_sha256 -> Text,
        answer -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    calendar_blocks (id) {
        id -> BigInt,
        entry_id -> Text,
        start_at -> Timestamp,
        end_at -> Timestamp,
        status -> Text,
        subject -> Nullable<Text>,
        location -> Nullable<Text>,
        private -> Bool,
    }
}

diesel::table! {
    working_hours (entry_id) {
        entry_id -> Text,
        time_zone -> Text,
        days -> Text,
        start_time -> Text,
        end_time -> Text,
        changed_at -> Timestamp,
    }
}
