//! Checking the public keys a partner uploads (RFC 7517 JWKS), and turning a registered key
//! into something that verifies signatures.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use gateway_domain::validation::RuleViolation;
use gateway_domain::{FieldError, KeyType, PartnerKey, ValidationErrors};
use jsonwebtoken::DecodingKey;
use serde_json::{Map, Value};

use super::unb64;

pub const MAX_KEYS: usize = 10;
pub const MIN_RSA_BITS: usize = 2048;
/// The verifier (RustCrypto's `rsa`) refuses larger moduli at first use: refuse them at upload.
pub const MAX_RSA_BITS: usize = 4096;
/// The one RSA public exponent accepted (F4, what every library generates). The verifier
/// would take some other odd exponents, but nothing needs them, and small ones (3) are a
/// classic source of signature-forgery bugs.
const RSA_EXPONENT: [u8; 3] = [0x01, 0x00, 0x01];
const MAX_KID_LEN: usize = 128;
/// JWK members that only private keys have (RFC 7518 section 6).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn text<'a>(jwk: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    jwk.get(name).and_then(Value::as_str)
}

fn b64_len(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, RuleViolation> {
    text(jwk, name).and_then(unb64).ok_or_else(|| {
        RuleViolation::new(
            "jwk_member",
            format!("`{name}` must be present and base64url-encoded"),
        )
    })
}

/// Checks one JWK; returns the key with only its public members kept.
fn check_key(jwk: &Map<String, Value>, at: DateTime<Utc>) -> Result<PartnerKey, RuleViolation> {
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
        return Err(RuleViolation::new(
            "private_key_material",
            format!("this JWK carries private key material (`{member}`): upload only public keys, and treat this key as compromised"),
        ));
    }
    let kid = text(jwk, "kid").unwrap_or_default();
    if kid.is_empty() || kid.len() > MAX_KID_LEN {
        return Err(RuleViolation::new(
            "kid",
            format!("`kid` is required: 1 to {MAX_KID_LEN} characters"),
        ));
    }
    if let Some(usage) = jwk.get("use") {
        if usage != "sig" {
            return Err(RuleViolation::new(
                "key_use",
                "`use` must be `sig`: these keys sign client assertions",
            ));
        }
    }
    let kty = text(jwk, "kty").unwrap_or_default();
    let key_type = KeyType::parse(kty).ok_or_else(|| {
        RuleViolation::new("key_type", format!("`kty` {kty:?} is not accepted: use RSA (2048 to 4096 bits, exponent 65537), EC P-256 or OKP Ed25519"))
    })?;
    let alg = text(jwk, "alg").map(str::to_owned);
    if let Some(alg) = &alg {
        if !key_type.algorithms().contains(&alg.as_str()) {
            return Err(RuleViolation::new(
                "algorithm",
                format!(
                    "`alg` {alg} does not fit a {kty} key: use one of {}",
                    key_type.algorithms().join(", ")
                ),
            ));
        }
    }
    let mut public = Map::new();
    public.insert("kty".into(), Value::from(kty));
    public.insert("kid".into(), Value::from(kid));
    if let Some(alg) = &alg {
        public.insert("alg".into(), Value::from(alg.as_str()));
    }
    match key_type {
        KeyType::Rsa => {
            let n = b64_len(jwk, "n")?;
            let e = b64_len(jwk, "e")?;
            let leading_zero_bits = n.iter().take_while(|b| **b == 0).count() * 8
                + n.iter()
                    .find(|b| **b != 0)
                    .map_or(0, |b| b.leading_zeros() as usize);
            let bits = n.len() * 8 - leading_zero_bits;
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(RuleViolation::new(
                    "rsa_key_size",
                    format!(
                        "RSA keys need {MIN_RSA_BITS} to {MAX_RSA_BITS} bits (this one has {bits})"
                    ),
                ));
            }
            if n.last().is_some_and(|b| b % 2 == 0) {
                return Err(RuleViolation::new(
                    "rsa_modulus",
                    "the RSA modulus `n` is even: this is not an RSA public key",
                ));
            }
            let exponent: Vec<u8> = e.iter().copied().skip_while(|b| *b == 0).collect();
            if exponent != RSA_EXPONENT {
                return Err(RuleViolation::new(
                    "rsa_exponent",
                    "the RSA public exponent `e` must be 65537 (`AQAB`)",
                ));
            }
            for member in ["n", "e"] {
                public.insert(member.into(), jwk[member].clone());
            }
        }
        KeyType::EcP256 => {
            if text(jwk, "crv") != Some("P-256") {
                return Err(RuleViolation::new(
                    "curve",
                    "EC keys must be on curve P-256 (ES256)",
                ));
            }
            for member in ["x", "y"] {
                if b64_len(jwk, member)?.len() != 32 {
                    return Err(RuleViolation::new(
                        "jwk_member",
                        format!("`{member}` of a P-256 key is 32 bytes"),
                    ));
                }
            }
            for member in ["crv", "x", "y"] {
                public.insert(member.into(), jwk[member].clone());
            }
        }
        KeyType::Ed25519 => {
            if text(jwk, "crv") != Some("Ed25519") {
                return Err(RuleViolation::new(
                    "curve",
                    "OKP keys must be Ed25519 (EdDSA)",
                ));
            }
            if b64_len(jwk, "x")?.len() != 32 {
                return Err(RuleViolation::new(
                    "jwk_member",
                    "`x` of an Ed25519 key is 32 bytes",
                ));
            }
            for member in ["crv", "x"] {
                public.insert(member.into(), jwk[member].clone());
            }
        }
    }
    let key = PartnerKey {
        kid: kid.to_owned(),
        key_type,
        alg,
        jwk: Value::Object(public),
        added_at: at,
        last_used_at: None,
    };
    decoding_key(&key).map_err(|why| RuleViolation::new("jwk_member", why))?;
    Ok(key)
}

/// Checks a whole uploaded key set: at most 10 keys, each valid, `kid`s unique.
pub fn check_key_set(
    keys: &[Value],
    at: DateTime<Utc>,
) -> Result<Vec<PartnerKey>, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    if keys.len() > MAX_KEYS {
        errors.push(FieldError::new(
            "keys",
            "count",
            format!("at most {MAX_KEYS} keys (got {})", keys.len()),
        ));
        return Err(errors);
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (index, raw) in keys.iter().enumerate() {
        let field = format!("keys[{index}]");
        let Some(jwk) = raw.as_object() else {
            errors.push(FieldError::new(
                field,
                "jwk",
                "each key must be a JWK object",
            ));
            continue;
        };
        match check_key(jwk, at) {
            Ok(key) if !seen.insert(key.kid.clone()) => {
                errors.push(FieldError::new(
                    format!("{field}.kid"),
                    "unique",
                    format!("kid {:?} is used twice", key.kid),
                ));
            }
            Ok(key) => out.push(key),
            Err(violation) => errors.push(violation.at(field)),
        }
    }
    errors.finish(|| Some(out))
}

/// A verifier for a registered key.
pub fn decoding_key(key: &PartnerKey) -> Result<DecodingKey, String> {
    let get = |name: &str| {
        key.jwk
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("missing `{name}`"))
    };
    let result = match key.key_type {
        KeyType::Rsa => DecodingKey::from_rsa_components(get("n")?, get("e")?),
        KeyType::EcP256 => DecodingKey::from_ec_components(get("x")?, get("y")?),
        KeyType::Ed25519 => DecodingKey::from_ed_components(get("x")?),
    };
    result.map_err(|e| format!("the key cannot be used: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::b64;
    use serde_json::json;

    fn rules(keys: Vec<Value>) -> Vec<(String, &'static str)> {
        check_key_set(&keys, Utc::now())
            .err()
            .map(|e| e.0.into_iter().map(|e| (e.field, e.rule)).collect())
            .unwrap_or_default()
    }

    fn ed(kid: &str) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&[1u8; 32]), "kid": kid})
    }

    fn rsa(bits: usize) -> Value {
        let mut n = vec![0xffu8; bits / 8];
        n[0] = 0x80;
        json!({"kty": "RSA", "n": b64(&n), "e": "AQAB", "kid": format!("rsa{bits}")})
    }

    #[test]
    fn good_keys_keep_only_public_members() {
        let keys = check_key_set(&[ed("a"), rsa(2048), json!({"kty": "EC", "crv": "P-256", "x": b64(&[2u8; 32]), "y": b64(&[3u8; 32]), "kid": "ec", "alg": "ES256", "use": "sig", "x5c": ["..."]})], Utc::now()).unwrap();
        assert_eq!(keys.len(), 3);
        assert!(keys[2].jwk.get("x5c").is_none());
        assert_eq!(keys[2].alg.as_deref(), Some("ES256"));
    }

    #[test]
    fn rsa_keys_the_verifier_cannot_use_are_refused_at_upload() {
        // 4096 bits is the verifier's limit: accepted, and one byte more is refused.
        assert!(rules(vec![rsa(4096)]).is_empty());
        assert_eq!(rules(vec![rsa(4104)]), [("keys[0]".into(), "rsa_key_size")]);
        assert_eq!(rules(vec![rsa(8192)]), [("keys[0]".into(), "rsa_key_size")]);
        for (e, accepted) in [
            ("AQAB", true),
            ("AAEAAQ", true),
            ("Aw", false),
            ("AQAD", false),
            ("AQAA", false),
            ("AQ", false),
            ("AQAAAAE", false),
        ] {
            let mut key = rsa(2048);
            key["e"] = json!(e);
            let expected: Vec<(String, &str)> = if accepted {
                vec![]
            } else {
                vec![("keys[0]".into(), "rsa_exponent")]
            };
            assert_eq!(rules(vec![key]), expected, "e = {e}");
        }
        let mut even = vec![0xffu8; 256];
        even[255] = 0xfe;
        let key = json!({"kty": "RSA", "n": b64(&even), "e": "AQAB", "kid": "even"});
        assert_eq!(rules(vec![key]), [("keys[0]".into(), "rsa_modulus")]);
    }

    #[test]
    fn each_rule_is_named() {
        assert_eq!(rules(vec![rsa(2040)]), [("keys[0]".into(), "rsa_key_size")]);
        let mut private = ed("p");
        private["d"] = json!(b64(&[9u8; 32]));
        assert_eq!(
            rules(vec![private]),
            [("keys[0]".into(), "private_key_material")]
        );
        assert_eq!(
            rules(vec![
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&[1u8; 32])})
            ]),
            [("keys[0]".into(), "kid")]
        );
        assert_eq!(
            rules(vec![ed("a"), ed("a")]),
            [("keys[1].kid".into(), "unique")]
        );
        assert_eq!(
            rules(vec![json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"})]),
            [("keys[0]".into(), "private_key_material")]
        );
        assert_eq!(
            rules(vec![json!({"kty": "oct", "kid": "h"})]),
            [("keys[0]".into(), "key_type")]
        );
        assert_eq!(
            rules(vec![
                json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "e"})
            ]),
            [("keys[0]".into(), "curve")]
        );
        let mut wrong_alg = ed("w");
        wrong_alg["alg"] = json!("HS256");
        assert_eq!(rules(vec![wrong_alg]), [("keys[0]".into(), "algorithm")]);
        let mut enc = ed("u");
        enc["use"] = json!("enc");
        assert_eq!(rules(vec![enc]), [("keys[0]".into(), "key_use")]);
        assert_eq!(
            rules((0..11).map(|i| ed(&format!("k{i}"))).collect()),
            [("keys".into(), "count")]
        );
        assert_eq!(
            rules(vec![json!("not an object")]),
            [("keys[0]".into(), "jwk")]
        );
    }
}
