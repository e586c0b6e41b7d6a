//! In-memory rate limiting, the cheap first line before the database's shared counters: token
//! buckets and lock-outs in a map of bounded size, sharded, O(1) per request.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many shards a map is split into (each with its own lock).
const SHARDS: usize = 16;

/// A map that holds at most about `capacity` entries, forgetting the least recently used
/// first. Each shard keeps two generations: a key touched is moved into the current one; when
/// the current one is half the shard's share, it becomes the previous one and the old previous
/// one is dropped whole (keys and values are plain data, so that frees one allocation; nothing
/// is scanned). A lookup or insert is O(1) under its shard's lock only.
#[derive(Debug)]
pub struct BoundedMap<K, V> {
    shards: Vec<Mutex<Generations<K, V>>>,
    generation_size: usize,
    hasher: RandomState,
}

#[derive(Debug)]
struct Generations<K, V> {
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
}

impl<K: Copy + Eq + Hash, V: Copy> BoundedMap<K, V> {
    pub fn new(capacity: usize) -> Self {
        let generation_size = (capacity / SHARDS / 2).max(1);
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Generations {
                        current: HashMap::with_capacity(generation_size),
                        previous: HashMap::new(),
                    })
                })
                .collect(),
            generation_size,
            hasher: RandomState::new(),
        }
    }

    /// Runs `f` on `key`'s value (`init()` when the key is new or was forgotten).
    pub fn with<T>(&self, key: K, init: impl FnOnce() -> V, f: impl FnOnce(&mut V) -> T) -> T {
        let shard = (self.hasher.hash_one(key) as usize) % SHARDS;
        let mut guard = self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let generations = &mut *guard;
        let value = match generations.current.get(&key) {
            Some(value) => *value,
            None => {
                let value = generations.previous.remove(&key).unwrap_or_else(init);
                if generations.current.len() >= self.generation_size {
                    generations.previous = std::mem::replace(
                        &mut generations.current,
                        HashMap::with_capacity(self.generation_size),
                    );
                }
                value
            }
        };
        let value = generations.current.entry(key).or_insert(value);
        f(value)
    }

    /// `key`'s value, if it is remembered, without touching it.
    pub fn peek(&self, key: K) -> Option<V> {
        let shard = (self.hasher.hash_one(key) as usize) % SHARDS;
        let guard = self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        guard
            .current
            .get(&key)
            .or_else(|| guard.previous.get(&key))
            .copied()
    }

    /// How many entries are held now (at most about the capacity).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let g = s.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                g.current.len() + g.previous.len()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most entries this map holds.
    pub fn capacity(&self) -> usize {
        self.generation_size * 2 * SHARDS
    }
}

/// A token bucket per key, answering how long to wait when empty.
#[derive(Debug)]
pub struct RateLimiter<K> {
    per_second: f64,
    burst: f64,
    buckets: BoundedMap<K, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl<K: Copy + Eq + Hash> RateLimiter<K> {
    /// `per_minute` tokens a minute, at most `burst` at once, for at most about `capacity`
    /// keys (the least recently seen are forgotten, i.e. start full again).
    pub fn per_minute(per_minute: u32, burst: u32, capacity: usize) -> Self {
        Self {
            per_second: f64::from(per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: BoundedMap::new(capacity),
        }
    }

    /// Takes one token for `key`; when none is left, how long until one is.
    pub fn check(&self, key: K, now: Instant) -> Result<(), Duration> {
        let (rate, burst) = (self.per_second, self.burst);
        self.buckets.with(
            key,
            || Bucket {
                tokens: burst,
                updated: now,
            },
            |bucket| {
                let refill = now.saturating_duration_since(bucket.updated).as_secs_f64() * rate;
                bucket.tokens = (bucket.tokens + refill).min(burst);
                bucket.updated = bucket.updated.max(now);
                if bucket.tokens >= 1.0 {
                    bucket.tokens -= 1.0;
                    Ok(())
                } else {
                    Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
                }
            },
        )
    }

    /// How many keys are held now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// Whole seconds to wait, rounded up, at least 1: what `Retry-After` says.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn burst_then_refuse_then_refill() {
        let limiter = RateLimiter::per_minute(60, 3, 1000);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let other: IpAddr = [127, 0, 0, 2].into();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(ip, t0).is_ok());
        }
        let wait = limiter.check(ip, t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert_eq!(retry_after_seconds(wait), 1);
        assert!(
            limiter.check(other, t0).is_ok(),
            "clients have separate buckets"
        );
        assert!(limiter.check(ip, t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn memory_is_bounded_however_many_clients_come() {
        let limiter = RateLimiter::per_minute(10, 10, 4096);
        let t0 = Instant::now();
        for n in 0..200_000u32 {
            let ip: IpAddr = std::net::Ipv4Addr::from(n).into();
            limiter.check(ip, t0).unwrap();
            assert!(limiter.tracked() <= 4096 || n % 10_000 != 0);
        }
        let held = limiter.tracked();
        assert!(held <= limiter.buckets.capacity() && held <= 4096, "{held}");
        assert!(held > 0);
    }

    #[test]
    fn a_busy_client_is_remembered_while_strangers_churn() {
        // The refused client keeps its empty bucket although far more clients than the map
        // holds pass by, because every request of its own keeps it recent.
        let limiter = RateLimiter::per_minute(1, 1, 512);
        let t0 = Instant::now();
        let busy: IpAddr = [10, 0, 0, 1].into();
        limiter.check(busy, t0).unwrap();
        for n in 0..50_000u32 {
            let stranger: IpAddr = std::net::Ipv4Addr::from(0x0b00_0000 + n).into();
            let _ = limiter.check(stranger, t0);
            if n % 64 == 0 {
                assert!(limiter.check(busy, t0).is_err(), "after {n} strangers");
            }
        }
    }
}
