//! Agreement signatures: RFC 8785 (JCS) canonical JSON, and detached compact JWS (RFC 7515
//! appendix F) verified with a partner's registered keys.

use std::str::FromStr;

use gateway_domain::keys::PartnerKey;
use gateway_domain::services::{SignatureScheme, VerifiedSignature};
use jsonwebtoken::Algorithm;
use serde_json::Value;

use crate::auth::jwk::decoding_key;
use crate::auth::{b64, unb64};

/// How many keys a `kid`-less signature is tried against.
const MAX_CANDIDATE_KEYS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
pub struct JoseSignatures;

/// The parts of a detached compact JWS, checked for shape.
fn split_detached(jws: &str) -> Result<(&str, Value, &str), String> {
    let mut parts = jws.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWS: expected header..signature".to_owned());
    };
    if !payload.is_empty() {
        return Err(
            "the payload must be detached: send header..signature (RFC 7515 appendix F)".to_owned(),
        );
    }
    let header_json: Value = unb64(header)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(Value::is_object)
        .ok_or_else(|| "the JWS header is not base64url JSON".to_owned())?;
    if header_json.get("crit").is_some() || header_json.get("b64").is_some() {
        return Err("crit and b64 header parameters are not supported".to_owned());
    }
    if signature.is_empty() {
        return Err("the signature part is empty".to_owned());
    }
    Ok((header, header_json, signature))
}

impl SignatureScheme for JoseSignatures {
    fn canonicalise(&self, document: &Value) -> Result<String, String> {
        serde_jcs::to_string(document).map_err(|e| e.to_string())
    }

    fn verify_detached(
        &self,
        jws: &str,
        payload: &[u8],
        keys: &[PartnerKey],
    ) -> Result<VerifiedSignature, String> {
        let (header, header_json, signature) = split_detached(jws)?;
        let alg_name = header_json
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| "the JWS header has no alg".to_owned())?;
        let alg = Algorithm::from_str(alg_name)
            .ok()
            .filter(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
            .ok_or_else(|| format!("alg {alg_name} is not accepted"))?;
        let kid = header_json.get("kid").and_then(Value::as_str);
        let candidates: Vec<&PartnerKey> = keys
            .iter()
            .filter(|k| kid.is_none_or(|kid| k.kid == kid))
            .filter(|k| k.allows(alg_name))
            .take(MAX_CANDIDATE_KEYS)
            .collect();
        if candidates.is_empty() {
            return Err(match kid {
                Some(kid) => format!("no registered key {kid} allows {alg_name}"),
                None => format!("no registered key allows {alg_name}"),
            });
        }
        let message = format!("{header}.{}", b64(payload));
        for key in candidates {
            let Ok(decoding) = decoding_key(key) else {
                continue;
            };
            if jsonwebtoken::crypto::verify(signature, message.as_bytes(), &decoding, alg)
                .unwrap_or(false)
            {
                return Ok(VerifiedSignature {
                    kid: key.kid.clone(),
                    alg: alg_name.to_owned(),
                    jwk: key.jwk.clone(),
                });
            }
        }
        Err("no registered key verifies it over these bytes".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_and_normalises_numbers() {
        let doc = serde_json::json!({"b": [3, 1.0, "é"], "a": {"z": null, "y": true}});
        assert_eq!(
            JoseSignatures.canonicalise(&doc).unwrap(),
            r#"{"a":{"y":true,"z":null},"b":[3,1,"é"]}"#
        );
    }

    #[test]
    fn only_detached_compact_jws_is_read() {
        let header = b64(br#"{"alg":"EdDSA"}"#);
        assert!(split_detached(&format!("{header}..c2ln")).is_ok());
        assert!(split_detached(&format!("{header}.cGF5bG9hZA.c2ln")).is_err());
        assert!(split_detached(&format!("{header}..")).is_err());
        assert!(split_detached("a.b").is_err());
        let crit = b64(br#"{"alg":"EdDSA","b64":false,"crit":["b64"]}"#);
        assert!(split_detached(&format!("{crit}..c2ln")).is_err());
    }
}
