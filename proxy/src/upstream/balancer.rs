//! Node selection per upstream: round-robin, smooth weighted round-robin, least-request,
//! ip-hash and header-hash. Lock-free: atomics only on the hot path.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hookway_crds::snapshot::{Balance, Endpoint};

/// Total weight the smooth weighted schedule is scaled down to (bounds its memory).
const MAX_SCHEDULE: u64 = 1024;

/// What a pick may depend on.
pub struct PickInput<'a> {
    /// The client address (ip-hash).
    pub peer: IpAddr,
    /// The value of the hashed header (header-hash), when present.
    pub header: Option<&'a [u8]>,
}

/// Picks nodes for one upstream.
#[derive(Debug)]
pub struct Balancer {
    kind: Kind,
    next: AtomicUsize,
    nodes: usize,
    /// In-flight requests per node (least-request; kept for every kind, cheap).
    in_flight: Arc<[AtomicUsize]>,
}

#[derive(Debug)]
enum Kind {
    RoundRobin,
    /// A precomputed smooth (nginx-style) schedule of node indices.
    Weighted(Box<[u32]>),
    LeastRequest,
    IpHash,
    HeaderHash,
}

/// Counts a request against a node while alive (least-request).
#[derive(Debug)]
pub struct InFlight {
    counters: Arc<[AtomicUsize]>,
    node: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counters[self.node].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Smooth weighted round-robin (as nginx): spreads heavy nodes across the cycle.
fn smooth_schedule(endpoints: &[Endpoint]) -> Box<[u32]> {
    let total: u64 = endpoints.iter().map(|e| u64::from(e.weight)).sum();
    let weights: Vec<i64> = endpoints
        .iter()
        .map(|e| {
            if total == 0 {
                1
            } else if total > MAX_SCHEDULE {
                // Scale down, keeping every positive weight at least 1.
                ((u64::from(e.weight) * MAX_SCHEDULE) / total).max(u64::from(e.weight > 0)) as i64
            } else {
                i64::from(e.weight)
            }
        })
        .collect();
    let sum: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(sum as usize);
    for _ in 0..sum {
        let mut best = 0;
        for i in 0..weights.len() {
            current[i] += weights[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= sum;
        schedule.push(best as u32);
    }
    schedule.into_boxed_slice()
}

fn hash_of(value: impl Hash) -> usize {
    // SipHash with fixed keys: stable across processes and reloads.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish() as usize
}

impl Balancer {
    /// A balancer of `kind` over `endpoints` (indices refer to `endpoints`).
    pub fn new(kind: Balance, endpoints: &[Endpoint]) -> Self {
        let kind = match kind {
            Balance::RoundRobin => Kind::RoundRobin,
            Balance::Weighted => Kind::Weighted(smooth_schedule(endpoints)),
            Balance::LeastRequest => Kind::LeastRequest,
            Balance::IpHash => Kind::IpHash,
            Balance::HeaderHash => Kind::HeaderHash,
        };
        Self {
            kind,
            next: AtomicUsize::new(0),
            nodes: endpoints.len(),
            in_flight: (0..endpoints.len()).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    fn round_robin(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.nodes
    }

    /// The node for this request; `None` when there is no node.
    pub fn pick(&self, input: &PickInput<'_>) -> Option<usize> {
        if self.nodes == 0 {
            return None;
        }
        Some(match &self.kind {
            Kind::RoundRobin => self.round_robin(),
            Kind::Weighted(schedule) if !schedule.is_empty() => {
                schedule[self.next.fetch_add(1, Ordering::Relaxed) % schedule.len()] as usize
            }
            Kind::Weighted(_) => self.round_robin(),
            Kind::LeastRequest => {
                // Start at a rotating offset so ties spread evenly.
                let start = self.round_robin();
                (0..self.nodes)
                    .map(|i| (start + i) % self.nodes)
                    .min_by_key(|&i| self.in_flight[i].load(Ordering::Relaxed))
                    .unwrap_or(start)
            }
            Kind::IpHash => hash_of(input.peer) % self.nodes,
            Kind::HeaderHash => match input.header {
                Some(value) => hash_of(value) % self.nodes,
                None => self.round_robin(),
            },
        })
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes
    }

    /// Whether there is no node.
    pub fn is_empty(&self) -> bool {
        self.nodes == 0
    }

    /// Marks a request in flight on `node` until the guard drops.
    pub fn start(&self, node: usize) -> InFlight {
        self.in_flight[node].fetch_add(1, Ordering::Relaxed);
        InFlight {
            counters: self.in_flight.clone(),
            node,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn nodes(weights: &[u32]) -> Vec<Endpoint> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Endpoint {
                address: "127.0.0.1".into(),
                port: 8000 + i as u16,
                weight: *w,
            })
            .collect()
    }

    fn input(peer: [u8; 4], header: Option<&[u8]>) -> PickInput<'_> {
        PickInput {
            peer: IpAddr::V4(Ipv4Addr::from(peer)),
            header,
        }
    }

    fn counts(b: &Balancer, n: usize, rounds: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for _ in 0..rounds {
            c[b.pick(&input([1, 2, 3, 4], None)).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn round_robin_is_even() {
        let b = Balancer::new(Balance::RoundRobin, &nodes(&[1, 1, 1]));
        assert_eq!(counts(&b, 3, 300), vec![100, 100, 100]);
    }

    #[test]
    fn weighted_follows_weights_smoothly() {
        let b = Balancer::new(Balance::Weighted, &nodes(&[5, 1, 1]));
        assert_eq!(counts(&b, 3, 700), vec![500, 100, 100]);
        // Smooth: the heavy node never gets the whole cycle in one burst.
        let seq: Vec<_> = (0..7)
            .map(|_| b.pick(&input([0; 4], None)).unwrap())
            .collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weighted_scales_large_weights() {
        let b = Balancer::new(Balance::Weighted, &nodes(&[100_000, 1]));
        let c = counts(&b, 2, 1024);
        assert!(c[1] >= 1 && c[0] > 1000, "{c:?}");
    }

    #[test]
    fn least_request_avoids_busy_nodes() {
        let b = Balancer::new(Balance::LeastRequest, &nodes(&[1, 1, 1]));
        let _busy0 = b.start(0);
        let _busy1 = b.start(1);
        for _ in 0..10 {
            assert_eq!(b.pick(&input([0; 4], None)), Some(2));
        }
        drop(_busy0);
        let _busy2 = b.start(2);
        assert_eq!(b.pick(&input([0; 4], None)), Some(0));
    }

    #[test]
    fn ip_hash_is_stable_and_spreads() {
        let b = Balancer::new(Balance::IpHash, &nodes(&[1, 1, 1, 1]));
        let first = b.pick(&input([10, 0, 0, 7], None));
        for _ in 0..20 {
            assert_eq!(b.pick(&input([10, 0, 0, 7], None)), first);
        }
        let distinct: std::collections::HashSet<_> = (0..64u8)
            .map(|i| b.pick(&input([10, 0, 0, i], None)).unwrap())
            .collect();
        assert!(distinct.len() > 1);
    }

    #[test]
    fn header_hash_is_stable_and_falls_back_without_header() {
        let b = Balancer::new(Balance::HeaderHash, &nodes(&[1, 1, 1]));
        let first = b.pick(&input([0; 4], Some(b"user-1")));
        for _ in 0..20 {
            assert_eq!(b.pick(&input([9; 4], Some(b"user-1"))), first);
        }
        assert_eq!(counts(&b, 3, 30), vec![10, 10, 10]);
    }

    #[test]
    fn no_nodes_no_pick() {
        let b = Balancer::new(Balance::RoundRobin, &[]);
        assert_eq!(b.pick(&input([0; 4], None)), None);
    }
}
