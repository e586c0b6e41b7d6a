//! Security headers on every response, error answers included: no MIME sniffing, no referrer, a
//! restrictive Content-Security-Policy (Swagger UI under `/docs` gets the tightest one it
//! works with, same-origin only), and HSTS when the gateway's public address is https.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{
    HeaderName, HeaderValue, CONTENT_SECURITY_POLICY, REFERRER_POLICY, STRICT_TRANSPORT_SECURITY,
    X_CONTENT_TYPE_OPTIONS,
};
use actix_web::middleware::Next;
use actix_web::web;

/// For the API's JSON, problems, redirects: nothing may load, frame or submit.
pub const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// For Swagger UI (vendored, served by this gateway): its scripts, styles and images from
/// this origin only, no inline or eval'd script; inline styles because its React components
/// set `style` attributes, `data:` images because its stylesheet embeds some; it fetches
/// `/openapi.json` and "Try it out" calls this origin.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// A year; not `includeSubDomains`, which would bind hosts this gateway does not know.
pub const HSTS: &str = "max-age=31536000";

/// Where the Swagger UI is served.
const DOCS_PREFIX: &str = "/docs";

/// What the middleware needs from configuration.
#[derive(Debug, Clone, Copy)]
pub struct SecurityHeaders {
    /// Send `Strict-Transport-Security` (the public base URL is https).
    pub hsts: bool,
}

impl SecurityHeaders {
    pub fn for_public_base_url(public_base_url: &str) -> Self {
        Self {
            hsts: public_base_url.starts_with("https://"),
        }
    }
}

fn set_if_absent(
    headers: &mut actix_web::http::header::HeaderMap,
    name: HeaderName,
    value: &'static str,
) {
    if !headers.contains_key(&name) {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// The middleware (`from_fn`). A Content-Security-Policy a handler set is kept: evidence
/// documents carry their own sandboxing policy, stricter than this one.
pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let hsts = req
        .app_data::<web::Data<SecurityHeaders>>()
        .is_some_and(|policy| policy.hsts);
    let docs = req.path() == DOCS_PREFIX || req.path().starts_with("/docs/");
    // Handlers and extractors turn their errors into responses before this point, so error
    // answers (problems, 404s) get the headers too.
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    set_if_absent(headers, X_CONTENT_TYPE_OPTIONS, "nosniff");
    set_if_absent(headers, REFERRER_POLICY, "no-referrer");
    set_if_absent(
        headers,
        CONTENT_SECURITY_POLICY,
        if docs { DOCS_CSP } else { API_CSP },
    );
    if hsts {
        set_if_absent(headers, STRICT_TRANSPORT_SECURITY, HSTS);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::middleware::from_fn;
    use actix_web::{test, App, HttpResponse};

    async fn call(
        hsts: Option<bool>,
        path: &str,
    ) -> actix_web::dev::ServiceResponse<impl MessageBody> {
        let mut app = App::new();
        if let Some(hsts) = hsts {
            app = app.app_data(web::Data::new(SecurityHeaders { hsts }));
        }
        let app = test::init_service(
            app.route("/healthz", web::get().to(HttpResponse::Ok))
                .route(
                    "/docs/{_:.*}",
                    web::get().to(|| async { HttpResponse::Ok().body("<html></html>") }),
                )
                .route(
                    "/document",
                    web::get().to(|| async {
                        HttpResponse::Ok()
                            .insert_header((CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox"))
                            .finish()
                    }),
                )
                .route(
                    "/fails",
                    web::get().to(|| async {
                        Err::<HttpResponse, _>(actix_web::error::ErrorBadRequest("no"))
                    }),
                )
                .wrap(from_fn(security_headers)),
        )
        .await;
        test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await
    }

    fn header<B>(response: &ServiceResponse<B>, name: HeaderName) -> Option<String> {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    #[actix_web::test]
    async fn every_response_gets_the_headers_and_errors_too() {
        for path in ["/healthz", "/fails", "/nowhere"] {
            let response = call(Some(false), path).await;
            assert_eq!(
                header(&response, X_CONTENT_TYPE_OPTIONS).as_deref(),
                Some("nosniff"),
                "{path}"
            );
            assert_eq!(
                header(&response, REFERRER_POLICY).as_deref(),
                Some("no-referrer"),
                "{path}"
            );
            assert_eq!(
                header(&response, CONTENT_SECURITY_POLICY).as_deref(),
                Some(API_CSP),
                "{path}"
            );
            assert_eq!(header(&response, STRICT_TRANSPORT_SECURITY), None, "{path}");
        }
    }

    #[actix_web::test]
    async fn docs_get_their_own_same_origin_policy() {
        let response = call(Some(false), "/docs/index.html").await;
        let csp = header(&response, CONTENT_SECURITY_POLICY).unwrap();
        assert_eq!(csp, DOCS_CSP);
        assert!(!csp.contains("http"), "no external origins: {csp}");
        assert!(!csp.contains("unsafe-eval"), "{csp}");
        assert!(
            csp.contains("script-src 'self';"),
            "no inline scripts: {csp}"
        );
    }

    #[actix_web::test]
    async fn a_handlers_stricter_policy_is_kept() {
        let response = call(Some(false), "/document").await;
        assert_eq!(
            header(&response, CONTENT_SECURITY_POLICY).as_deref(),
            Some("default-src 'none'; sandbox")
        );
        assert_eq!(
            header(&response, X_CONTENT_TYPE_OPTIONS).as_deref(),
            Some("nosniff")
        );
    }

    #[actix_web::test]
    async fn hsts_only_for_an_https_public_address() {
        assert!(SecurityHeaders::for_public_base_url("https://gateway.example.org").hsts);
        assert!(!SecurityHeaders::for_public_base_url("http://127.0.0.1:8080").hsts);
        let response = call(Some(true), "/healthz").await;
        assert_eq!(
            header(&response, STRICT_TRANSPORT_SECURITY).as_deref(),
            Some(HSTS)
        );
        assert_eq!(
            header(&call(None, "/healthz").await, STRICT_TRANSPORT_SECURITY),
            None
        );
    }
}
