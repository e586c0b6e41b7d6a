//! Agreement templates: the texts in `api/agreement-templates/`, built into the binary and
//! identified by the SHA-256 of their text.

use gateway_domain::agreement::AgreementTemplate;

use crate::credentials::sha256_hex;

/// Every published template, oldest first: `(version, text)`. A new version is a new file;
/// a published text never changes (its hash is in signed agreements).
const TEMPLATES: &[(&str, &str)] =
    &[("2026-11", include_str!("../agreement-templates/2026-11.md"))];

pub fn agreement_templates() -> Vec<AgreementTemplate> {
    TEMPLATES
        .iter()
        .map(|(version, text)| AgreementTemplate {
            version: (*version).to_owned(),
            title: text
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches('#')
                .trim()
                .to_owned(),
            sha256: sha256_hex(text.as_bytes()),
            text: (*text).to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_identified_by_the_hash_of_their_text() {
        let templates = agreement_templates();
        assert_eq!(templates[0].version, "2026-11");
        assert_eq!(templates[0].sha256.len(), 64);
        assert!(templates[0]
            .title
            .starts_with("Federation Partner Agreement"));
        assert_eq!(
            templates[0].sha256,
            sha256_hex(templates[0].text.as_bytes())
        );
    }
}
