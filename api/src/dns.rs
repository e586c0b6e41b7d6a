//! The domain-proof adapters: TXT lookups through hickory-resolver (the configured
//! nameservers, or the system's), and the Public Suffix List compiled in (the `psl` crate,
//! no network).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gateway_domain::dns::{DnsUnavailable, PublicSuffixes, TxtAnswer, TxtResolver};
use gateway_domain::services::domains::DomainProofLimits;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, TokioResolver};
use tokio::sync::Semaphore;

use crate::config::DnsSettings;

/// The limits on proving domains, as configured in `[dns]`.
pub fn proof_limits(settings: &DnsSettings) -> DomainProofLimits {
    let seconds = |s: u64| chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000));
    DomainProofLimits::new(
        seconds(settings.verify_interval_seconds),
        seconds(settings.failure_audit_interval_seconds),
        chrono::Duration::days(i64::from(settings.demote_after_days)),
    )
}

/// Resolves TXT records afresh for every call (the resolver keeps no cache, so a proof is
/// never judged from a stale answer), on one resolver and one small runtime of its own shared
/// by every lookup, so it works from any caller (a blocking handler thread, a command) without
/// a thread or runtime per lookup. At most `max_concurrent_lookups` are in flight; the others
/// wait for a slot within the timeout, then count as unavailable.
#[derive(Clone)]
pub struct HickoryTxtResolver {
    shared: Arc<Shared>,
}

struct Shared {
    resolver: TokioResolver,
    slots: Semaphore,
    timeout: Duration,
    /// Declared last: dropped after the resolver whose tasks it runs.
    runtime: DnsRuntime,
}

impl std::fmt::Debug for HickoryTxtResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HickoryTxtResolver")
            .field("timeout", &self.shared.timeout)
            .field("free_slots", &self.shared.slots.available_permits())
            .finish_non_exhaustive()
    }
}

/// The resolver's runtime (one worker thread). Shut down in the background when dropped, so
/// dropping it inside another runtime (a server stopping, a test) neither blocks nor panics.
struct DnsRuntime(Option<tokio::runtime::Runtime>);

impl Drop for DnsRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
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
        anyhow::ensure!(
            (1..=1024).contains(&settings.max_concurrent_lookups),
            "dns.max_concurrent_lookups must be between 1 and 1024"
        );
        let timeout = Duration::from_millis(settings.timeout_ms);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("dns-lookups")
            .enable_all()
            .build()
            .context("starting the DNS lookup runtime")?;
        let resolver = {
            let _inside = runtime.enter();
            resolver(&nameservers, timeout).context("building the DNS resolver")?
        };
        Ok(Self {
            shared: Arc::new(Shared {
                resolver,
                slots: Semaphore::new(settings.max_concurrent_lookups),
                timeout,
                runtime: DnsRuntime(Some(runtime)),
            }),
        })
    }
}

/// A resolver without a cache, through `nameservers` (empty: the system's).
fn resolver(nameservers: &[SocketAddr], timeout: Duration) -> Result<TokioResolver, ResolveError> {
    let provider = TokioConnectionProvider::default();
    let mut builder = if nameservers.is_empty() {
        TokioResolver::builder(provider)?
    } else {
        let mut config = ResolverConfig::new();
        for address in nameservers {
            config.add_name_server(NameServerConfig::new(*address, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(*address, Protocol::Tcp));
        }
        TokioResolver::builder_with_config(config, provider)
    };
    let options = builder.options_mut();
    options.timeout = timeout;
    options.attempts = 1;
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    options.ndots = 0;
    options.preserve_intermediates = false;
    Ok(builder.build())
}

async fn lookup(resolver: &TokioResolver, name: &str) -> Result<TxtAnswer, DnsUnavailable> {
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
        let Some(runtime) = self.shared.runtime.0.as_ref() else {
            return Err(DnsUnavailable("the DNS runtime has stopped".into()));
        };
        let shared = self.shared.clone();
        let name = name.to_owned();
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let result = match tokio::time::timeout(shared.timeout, shared.slots.acquire()).await {
                Ok(Ok(_slot)) => lookup(&shared.resolver, &name).await,
                _ => Err(DnsUnavailable("too many DNS lookups in flight".into())),
            };
            // The caller may have given up waiting: nobody to tell.
            let _ = answer.send(result);
        });
        // The lookup bounds itself (a slot within the timeout, then UDP and TCP attempts);
        // this bound only guards against a lookup that never reports.
        answered
            .recv_timeout(self.shared.timeout * 4 + Duration::from_secs(1))
            .unwrap_or_else(|_| Err(DnsUnavailable("the lookup did not report".into())))
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
            verify_interval_seconds: 10,
            failure_audit_interval_seconds: 3600,
            demote_after_days: 14,
            max_concurrent_lookups: 16,
        };
        assert!(HickoryTxtResolver::from_settings(&settings).is_err());
    }
}
