//! The token endpoint and its metadata.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dto::values::{ClientAssertionTypeSchema, GrantTypeSchema, ScopeListSchema};

/// A token request (RFC 6749 section 4.4 with RFC 7523 client authentication).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(example = json!({"grant_type": "client_credentials", "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "client_assertion": "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJpc3MiOiIuLi4ifQ.c2ln", "scope": "organisation:manage"}))]
pub struct TokenRequest {
    /// `client_credentials`.
    #[schema(value_type = GrantTypeSchema)]
    pub grant_type: String,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    #[schema(value_type = ClientAssertionTypeSchema)]
    pub client_assertion_type: String,
    /// A JWT signed with one of the client's registered keys: `iss` = `sub` = the client id
    /// (the organisation id), `aud` = this token endpoint's URL, `exp` at most 5 minutes
    /// ahead, a fresh `jti`, and `kid` in the header.
    #[schema(
        pattern = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$",
        min_length = 3
    )]
    pub client_assertion: String,
    /// Space-separated scopes to ask for; default: all the client may have.
    #[schema(value_type = Option<ScopeListSchema>)]
    pub scope: Option<String>,
}

/// An issued access token (RFC 6749 section 5.1).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires (at most 600).
    pub expires_in: u64,
    pub scope: String,
}

/// A token endpoint error (RFC 6749 section 5.2).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OAuthErrorResponse {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unsupported_grant_type` or `invalid_scope`.
    pub error: String,
    pub error_description: String,
}

/// Authorization server metadata (RFC 8414).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuthorizationServerMetadata {
    pub issuer: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub grant_types_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    pub scopes_supported: Vec<String>,
}

/// The gateway's public signing keys (RFC 7517).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JwksResponse {
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
}
