//! Every route, registered with `.service(...)` so registering a route documents it.

use utoipa_actix_web::service_config::ServiceConfig;

pub mod fallback;
pub mod health;
pub mod keys;
pub mod oauth;
pub mod problems;
pub mod registrations;
pub mod reviewers;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(registrations::register)
        .service(registrations::get_organisation)
        .service(registrations::update_organisation)
        .service(health::healthz)
        .service(health::readyz)
        .service(problems::problem_type)
        .service(keys::put_jwks)
        .service(keys::get_jwks)
        .service(oauth::token)
        .service(oauth::jwks)
        .service(oauth::metadata)
        .service(reviewers::login)
        .service(reviewers::callback)
        .service(reviewers::me)
        .service(reviewers::logout)
        .service(reviewers::openid_configuration)
        .service(reviewers::list_organisations)
        .service(reviewers::audit_events);
}
