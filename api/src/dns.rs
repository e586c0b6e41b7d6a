//! The domain-proof adapters: TXT lookups through hickory-resolver (the configured
//! nameservers, or the system's), and the Public Suffix List compiled in (the `psl` crate,
//! no network).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use gateway_domain::dns::{DnsUnavailable, PublicSuffixes, TxtAnswer, TxtResolver};
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, TokioResolver};

use crate::config::DnsSettings;

/// Resolves TXT records afresh for every call: a resolver (without a cache) is built on a
/// runtime of its own, on a thread of its own, so it works from any caller (a blocking
/// handler thread, a command) and never answers from a stale cache.
#[derive(Debug, Clone)]
pub struct HickoryTxtResolver {
    /// Empty: the system's resolvers (`/etc/resolv.conf`).
    nameservers: Vec<SocketAddr>,
    timeout: Duration,
}

impl HickoryTxtResolver {
    pub fn from_settings(settings: &DnsSettings) -> anyhow::Result<Self> {
        let nameservers = settings
            .nameservers
            .iter()
            .map(|raw| {
                raw.parse::<SocketAddr>()
                    .with_context(|| format!("dns.nameservers: {raw:?} is not an ip:port address"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(
            (100..=30_000).contains(&settings.timeout_ms),
            "dns.timeout_ms must be between 100 and 30000"
        );
        Ok(Self {
            nameservers,
            timeout: Duration::from_millis(settings.timeout_ms),
        })
    }

    fn resolver(&self) -> Result<TokioResolver, ResolveError> {
        let provider = TokioConnectionProvider::default();
        let mut builder = if self.nameservers.is_empty() {
            TokioResolver::builder(provider)?
        } else {
            let mut config = ResolverConfig::new();
            for address in &self.nameservers {
                config.add_name_server(NameServerConfig::new(*address, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(*address, Protocol::Tcp));
            }
            TokioResolver::builder_with_config(config, provider)
        };
        let options = builder.options_mut();
        options.timeout = self.timeout;
        options.attempts = 1;
        options.cache_size = 0;
        options.use_hosts_file = ResolveHosts::Never;
        options.ndots = 0;
        options.preserve_intermediates = false;
        Ok(builder.build())
    }

    async fn lookup(&self, name: &str) -> Result<TxtAnswer, DnsUnavailable> {
        let resolver = self
            .resolver()
            .map_err(|e| DnsUnavailable(format!("no resolver: {e}")))?;
        // Fully qualified: never completed with a search domain.
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match resolver.txt_lookup(fqdn).await {
            Ok(lookup) => Ok(TxtAnswer::Records(
                lookup
                    .iter()
                    .map(|txt| {
                        // A long value is split into several character-strings: join them.
                        txt.txt_data()
                            .iter()
                            .map(|part| String::from_utf8_lossy(part).into_owned())
                            .collect::<String>()
                    })
                    .collect(),
            )),
            Err(error) => classify(&error),
        }
    }
}

/// NXDOMAIN and NODATA are answers; anything else (timeout, refusal, SERVFAIL, no server)
/// means nobody answered.
fn classify(error: &ResolveError) -> Result<TxtAnswer, DnsUnavailable> {
    if let Some(proto) = error.proto() {
        if let ProtoErrorKind::NoRecordsFound { response_code, .. } = proto.kind() {
            match *response_code {
                ResponseCode::NXDomain => return Ok(TxtAnswer::NxDomain),
                ResponseCode::NoError => return Ok(TxtAnswer::NoRecords),
                _ => {}
            }
        }
    }
    Err(DnsUnavailable(error.to_string()))
}

impl TxtResolver for HickoryTxtResolver {
    fn txt(&self, name: &str) -> Result<TxtAnswer, DnsUnavailable> {
        let this = self.clone();
        let name = name.to_owned();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| DnsUnavailable(format!("no runtime: {e}")))?;
                    runtime.block_on(this.lookup(&name))
                })
                .join()
                .unwrap_or_else(|_| Err(DnsUnavailable("the lookup thread panicked".into())))
        })
    }
}

/// For commands that never verify domains: every lookup is unavailable.
#[derive(Debug, Clone, Copy)]
pub struct NoTxtResolver;

impl TxtResolver for NoTxtResolver {
    fn txt(&self, _: &str) -> Result<TxtAnswer, DnsUnavailable> {
        Err(DnsUnavailable("no DNS resolver in this context".into()))
    }
}

/// The Public Suffix List as compiled into the `psl` crate (ICANN and private sections).
#[derive(Debug, Clone, Copy)]
pub struct PslSuffixes;

impl PublicSuffixes for PslSuffixes {
    fn is_public_suffix(&self, name: &str) -> bool {
        // A name is a public suffix when the list's longest matching rule covers all of it
        // (an unlisted top-level domain counts as a suffix, by the list's default rule).
        psl::suffix(name.as_bytes()).is_some_and(|suffix| suffix.as_bytes() == name.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_suffixes_come_from_the_list() {
        for name in [
            "org.uk",
            "nhs.uk",
            "gov.uk",
            "co.uk",
            "com",
            "github.io",
            "uk",
        ] {
            assert!(PslSuffixes.is_public_suffix(name), "{name}");
        }
        for name in [
            "leedscare.org.uk",
            "example.org",
            "leeds.nhs.uk",
            "care1.example.org",
        ] {
            assert!(!PslSuffixes.is_public_suffix(name), "{name}");
        }
    }

    #[test]
    fn nameservers_must_be_addresses() {
        let settings = DnsSettings {
            nameservers: vec!["dns.example.org".into()],
            timeout_ms: 2000,
        };
        assert!(HickoryTxtResolver::from_settings(&settings).is_err());
    }
}
