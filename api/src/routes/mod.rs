//! Every route, registered with `.service(...)` so registering a route documents it.

use utoipa_actix_web::service_config::ServiceConfig;

pub mod fallback;
pub mod health;
pub mod problems;
pub mod registrations;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(registrations::register)
        .service(registrations::get_organisation)
        .service(registrations::update_organisation)
        .service(health::healthz)
        .service(health::readyz)
        .service(problems::problem_type);
}
