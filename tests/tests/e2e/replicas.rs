//! Scale-out: two gateway replicas on one database, as behind a load balancer. Whatever one
//! replica writes or decides, the other honours at once: nothing that matters for security
//! lives only in one process's memory. Run on PostgreSQL (the production shape) and on one
//! shared SQLite file.
//!
//! This module covers keys, replay refusal and signing-key rotation; the other cross-replica
//! guarantees are tested beside their features: a session ended at one replica is ended at the
//! other (`sessions::a_sign_out_at_another_instance_ends_the_session_everywhere`), and the
//! failed-attempt and registration limits hold across both (`abuse::failed_assertions_lock_out_an_address_across_replicas_with_an_honest_retry_after`,
//! `abuse::registrations_are_limited_across_replicas`).

use std::sync::Arc;

use gateway_client::types::OAuthErrorResponse;
use gateway_client::{Error as ClientError, ResponseValue};
use gateway_persistence::testing::TestDatabase;

use crate::e2e_tests;
use crate::keys::{claims, sign, TestKey};
use crate::support::{problem_of, registration_typed, settings_for, TestApp};

fn oauth_error<T: std::fmt::Debug>(
    result: Result<ResponseValue<T>, ClientError<OAuthErrorResponse>>,
) -> (u16, String) {
    match result {
        Err(ClientError::ErrorResponse(response)) => {
            (response.status().as_u16(), response.into_inner().error)
        }
        other => panic!("expected an OAuth error, got {other:?}"),
    }
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("a JWT")
        .kid
        .expect("a kid")
}

e2e_tests! {
    async fn two_replicas_honour_each_others_writes(backend) {
        let database = Arc::new(TestDatabase::new(backend));
        let mut settings = settings_for(&database);
        // Behind one load balancer both replicas have one public address.
        settings.server.public_base_url = "https://gateway.test".into();
        settings.auth.signing_key_reload_seconds = 1;
        let a = TestApp::spawn_with(database.clone(), settings.clone()).await;
        let b = TestApp::spawn_with(database.clone(), settings.clone()).await;

        // A key uploaded at one replica is used at the other.
        let key = TestKey::new("ed25519_a", "k1");
        let (id, registration_token, _) = a.register_ok_typed(registration_typed(1)).await;
        a.put_keys(id, &registration_token, vec![key.jwk()]).await.expect("keys stored at a");
        let from_b = b.access_token(id, &key).await;
        // ... and the tokens either replica issues verify at the other.
        a.api_as(&from_b).get_organisation().id(id).send().await.expect("b's token works at a");
        let from_a = a.access_token(id, &key).await;
        b.api_as(&from_a).get_organisation().id(id).send().await.expect("a's token works at b");

        // A jti used at one replica is refused at the other.
        let once = sign(&key, &claims(&id.to_string(), &a.token_endpoint()));
        a.request_token(&once, None).await.expect("first use at a");
        assert_eq!(oauth_error(b.request_token(&once, None).await), (400, "invalid_grant".to_owned()));

        // A key withdrawn at one replica stops working at the other.
        let second = TestKey::new("ec_p256", "k2");
        b.put_keys(id, &registration_token, vec![second.jwk()]).await.expect("keys replaced at b");
        let stale = sign(&key, &claims(&id.to_string(), &a.token_endpoint()));
        assert_eq!(oauth_error(a.request_token(&stale, None).await), (401, "invalid_client".to_owned()));
        a.access_token(id, &second).await;

        // A signing-key rotation (the operator's command, a third process) is honoured by both
        // without a restart: each replica picks the new key up, signs with it, and accepts the
        // other's tokens signed with it.
        let old_kid = kid_of(&from_a);
        let new_kid = gateway_api::commands::rotate_signing_key(&settings).expect("rotated");
        assert_ne!(new_kid, old_kid);
        tokio::time::sleep(std::time::Duration::from_millis(
            settings.auth.signing_key_reload_seconds * 1000 + 300,
        ))
        .await;
        let new_a = a.access_token(id, &second).await;
        let new_b = b.access_token(id, &second).await;
        assert_eq!((kid_of(&new_a), kid_of(&new_b)), (new_kid.clone(), new_kid.clone()));
        b.api_as(&new_a).get_organisation().id(id).send().await.expect("a's new token works at b");
        a.api_as(&new_b).get_organisation().id(id).send().await.expect("b's new token works at a");
        // The old key still verifies during the overlap, at both.
        for replica in [&a, &b] {
            replica.api_as(&from_a).get_organisation().id(id).send().await.expect("old token in overlap");
            let published = replica.api().gateway_jwks().send().await.unwrap().into_inner();
            let kids: Vec<_> = published.keys.iter().filter_map(|k| k["kid"].as_str()).collect();
            assert!(kids.contains(&new_kid.as_str()) && kids.contains(&old_kid.as_str()), "{kids:?}");
        }
        assert_eq!(problem_of(a.api_as("not-a-token").get_organisation().id(id).send().await).0, 401);
    }
}
