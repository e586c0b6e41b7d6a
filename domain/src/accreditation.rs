//! The secure-email accredited domain list (DCB1596): which partner domains meet the
//! secure email standard, so reviewers can see it.

use std::fmt;

use crate::dns::EmailDomain;

/// One entry of the accredited list: an exact domain, or `*.parent` covering every subdomain
/// of `parent` (but not `parent` itself, as with DNS wildcards).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecureDomainPattern {
    pub domain: EmailDomain,
    pub wildcard: bool,
}

impl SecureDomainPattern {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let value = raw.trim();
        let (wildcard, name) = match value.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, value),
        };
        if name.contains('*') {
            return Err("a wildcard may only be a leading '*.'".to_owned());
        }
        let domain = EmailDomain::parse(name).map_err(|e| e.message)?;
        Ok(Self { domain, wildcard })
    }

    pub fn covers(&self, domain: &EmailDomain) -> bool {
        if self.wildcard {
            domain
                .parents()
                .any(|parent| parent == self.domain.as_str())
        } else {
            domain == &self.domain
        }
    }
}

impl fmt::Display for SecureDomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            write!(f, "*.{}", self.domain)
        } else {
            write!(f, "{}", self.domain)
        }
    }
}

/// A line of an accredited-list file that is not a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListLineError {
    pub line: usize,
    pub text: String,
    pub reason: String,
}

/// Parses the newline-separated list as published: one domain or `*.` wildcard a line; blank
/// lines and `#` comments are ignored; duplicates collapse. Any bad line rejects the whole
/// file, so a half-read list never replaces a good one.
pub fn parse_secure_domain_list(
    text: &str,
) -> Result<Vec<SecureDomainPattern>, Vec<ListLineError>> {
    let mut patterns = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut errors = Vec::new();
    for (index, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
        let entry = line.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        match SecureDomainPattern::parse(entry) {
            Ok(pattern) => {
                if seen.insert(pattern.clone()) {
                    patterns.push(pattern);
                }
            }
            Err(reason) => errors.push(ListLineError {
                line: index + 1,
                text: entry.to_owned(),
                reason,
            }),
        }
    }
    if errors.is_empty() {
        Ok(patterns)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(name: &str) -> EmailDomain {
        EmailDomain::parse(name).unwrap()
    }

    #[test]
    fn exact_and_wildcard_entries_cover_what_they_should() {
        let exact = SecureDomainPattern::parse("care.org.uk").unwrap();
        assert!(exact.covers(&domain("care.org.uk")));
        assert!(!exact.covers(&domain("sub.care.org.uk")));

        let wildcard = SecureDomainPattern::parse("*.nhs.uk").unwrap();
        assert!(wildcard.covers(&domain("leeds.nhs.uk")));
        assert!(wildcard.covers(&domain("a.b.nhs.uk")));
        assert!(!wildcard.covers(&domain("nhs.uk")));
        assert!(!wildcard.covers(&domain("notnhs.uk")));
    }

    #[test]
    fn list_ignores_blanks_comments_crlf_and_duplicates() {
        let text = "\u{feff}# DCB1596 accredited\r\ncare.org.uk\r\n\r\n*.Example.GOV.uk  # council\ncare.org.uk\n";
        let list = parse_secure_domain_list(text).unwrap();
        let shown: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["care.org.uk", "*.example.gov.uk"]);
    }

    #[test]
    fn a_bad_line_rejects_the_file_and_names_the_line() {
        let errors =
            parse_secure_domain_list("good.org.uk\nnot a domain\n*.*.x.org\n").unwrap_err();
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 3]);
    }
}
