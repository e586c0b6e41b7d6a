//! Requests no route takes: 405 with `Allow` when the path exists under other methods (read
//! from the OpenAPI document, so it always agrees with the routes), 404 otherwise.

use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use crate::error::ApiError;

#[derive(Debug, Clone)]
pub struct KnownRoutes(Arc<Vec<(Vec<String>, Vec<String>)>>);

fn segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect()
}

impl KnownRoutes {
    pub fn from_document(document: &utoipa::openapi::OpenApi) -> Self {
        let routes = document
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let value = serde_json::to_value(item).unwrap_or_default();
                let methods = value
                    .as_object()
                    .map(|ops| {
                        ops.keys()
                            .filter(|k| {
                                matches!(
                                    k.as_str(),
                                    "get"
                                        | "put"
                                        | "post"
                                        | "delete"
                                        | "options"
                                        | "head"
                                        | "patch"
                                        | "trace"
                                )
                            })
                            .map(|k| k.to_ascii_uppercase())
                            .collect()
                    })
                    .unwrap_or_default();
                (segments(path), methods)
            })
            .collect();
        Self(Arc::new(routes))
    }

    /// The methods the path answers to, if it is a known path.
    pub fn allowed(&self, path: &str) -> Option<Vec<String>> {
        let wanted = segments(path);
        let mut methods: Vec<String> = self
            .0
            .iter()
            .filter(|(pattern, _)| {
                pattern.len() == wanted.len()
                    && pattern.iter().zip(&wanted).all(|(p, w)| {
                        (p.starts_with('{') && p.ends_with('}') && !w.is_empty()) || p == w
                    })
            })
            .flat_map(|(_, methods)| methods.iter().cloned())
            .collect();
        methods.sort();
        methods.dedup();
        (!methods.is_empty()).then_some(methods)
    }
}

pub async fn fallback(req: HttpRequest, routes: web::Data<KnownRoutes>) -> HttpResponse {
    match routes.allowed(req.path()) {
        Some(methods) => {
            let mut response = ApiError::MethodNotAllowed.error_response();
            if let Ok(value) = HeaderValue::from_str(&methods.join(", ")) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            response
        }
        None => ApiError::NotFound.error_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_list_their_methods() {
        let routes = KnownRoutes::from_document(&crate::openapi::document());
        assert_eq!(
            routes.allowed("/v1/registrations"),
            Some(vec!["POST".to_owned()])
        );
        assert_eq!(
            routes.allowed("/v1/organisations/0190b2c4-0000-7000-8000-000000000000"),
            Some(vec!["GET".to_owned(), "PATCH".to_owned()])
        );
        assert_eq!(routes.allowed("/v1/organisations"), None);
        assert_eq!(routes.allowed("/v1/organisations/x/y"), None);
        assert_eq!(routes.allowed("/nope"), None);
    }
}
