//! Every route, registered with `.service(...)` so registering a route documents it.

use actix_web::HttpRequest;
use gateway_domain::services::Context;
use gateway_domain::{Actor, ReviewerIdentity};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::extract::{RequestId, ReviewerCaller};

pub mod agreements;
pub mod audit;
pub mod calendars;
pub mod credentials;
pub mod directory;
pub mod domains;
pub mod evidence;
pub mod fallback;
pub mod health;
pub mod keys;
pub mod oauth;
pub mod problems;
pub mod registrations;
pub mod review;
pub mod reviewers;

/// A path id that is not a UUID names nothing: reviewer routes answer it like an unknown one,
/// after the role check.
pub(crate) fn parse_id(raw: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(raw).unwrap_or(uuid::Uuid::nil())
}

/// The audit context of a reviewer's request, and the reviewer.
pub(crate) fn reviewer_context(
    req: &HttpRequest,
    caller: ReviewerCaller,
) -> (Context, ReviewerIdentity) {
    let ctx = Context {
        actor: Actor::Reviewer(caller.0.subject.clone()),
        request_id: RequestId::of(req),
    };
    (ctx, caller.0)
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(registrations::register)
        .service(registrations::get_organisation)
        .service(registrations::update_organisation)
        .service(domains::verify)
        .service(domains::review_verify)
        .service(domains::review_unverify)
        .service(health::healthz)
        .service(health::readyz)
        .service(problems::problem_type)
        .service(keys::put_jwks)
        .service(keys::get_jwks)
        .service(oauth::token)
        .service(directory::publish)
        .service(directory::changes)
        .service(calendars::replace_busy)
        .service(calendars::set_working_hours)
        .service(calendars::free_busy)
        .service(oauth::jwks)
        .service(oauth::metadata)
        .service(reviewers::login)
        .service(reviewers::callback)
        .service(reviewers::me)
        .service(reviewers::logout)
        .service(reviewers::openid_configuration)
        .service(reviewers::list_organisations)
        .service(audit::events)
        .service(audit::latest_checkpoint)
        .service(audit::inclusion)
        .service(audit::consistency)
        .service(audit::verify)
        .service(audit::keys)
        .service(evidence::submit)
        .service(evidence::list)
        .service(evidence::own_document)
        .service(evidence::review_document)
        .service(evidence::verdict)
        .service(agreements::templates)
        .service(agreements::create)
        .service(agreements::list)
        .service(agreements::get)
        .service(agreements::update_draft)
        .service(agreements::signing_payload)
        .service(agreements::sign)
        .service(agreements::submit)
        .service(agreements::current_grant)
        .service(review::queue)
        .service(review::get_agreement)
        .service(review::transition)
        .service(review::reject_registration)
        .service(credentials::rotate)
        .service(credentials::revoke)
        .service(credentials::reissue);
}
