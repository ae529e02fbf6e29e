//! Synthetic clustered 2048-d data and brute-force ground truth, shared by the
//! tests and the benchmark example.
#![allow(dead_code)]

use half::f16;
use imgsim_forest::search::exact_distance;
use imgsim_forest::space::Rng;
use imgsim_forest::Metric;

pub use imgsim_forest::format::DIMS;

pub fn gaussian(rng: &mut Rng) -> f32 {
    let u1 = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = ((rng.next_u64() >> 11) as f64) / (1u64 << 53) as f64;
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

struct Cluster {
    center: Vec<f32>,
    /// Low-rank within-cluster structure: `rank` directions of 2048.
    basis: Vec<f32>,
    rank: usize,
    spread: f32,
}

/// Gaussian clusters around a shared positive offset (like ReLU features),
/// each with its own low-rank spread, plus small isotropic noise.
pub struct Clustered {
    clusters: Vec<Cluster>,
    rng: Rng,
}

impl Clustered {
    pub fn new(clusters: usize, seed: u64) -> Self {
        Self::with_ranks(clusters, seed, 8..33)
    }

    /// Clusters whose within-cluster rank is drawn from `ranks`: higher
    /// ranks make neighbours harder to tell apart.
    pub fn with_ranks(clusters: usize, seed: u64, ranks: std::ops::Range<usize>) -> Self {
        let mut rng = Rng::new(seed);
        let offset: Vec<f32> = (0..DIMS)
            .map(|_| (rng.below(1000) as f32) / 2000.0)
            .collect();
        let clusters = (0..clusters)
            .map(|_| {
                let center = offset
                    .iter()
                    .map(|o| o + 0.5 * gaussian(&mut rng))
                    .collect();
                let rank = ranks.start + rng.below(ranks.len());
                let basis = (0..rank * DIMS).map(|_| 0.1 * gaussian(&mut rng)).collect();
                let spread = 0.3 + 0.7 * rng.below(1000) as f32 / 1000.0;
                Cluster {
                    center,
                    basis,
                    rank,
                    spread,
                }
            })
            .collect();
        Clustered { clusters, rng }
    }

    /// A point of a random cluster with isotropic noise of std `noise`.
    pub fn sample(&mut self, noise: f32) -> Vec<f16> {
        let c = &self.clusters[self.rng.below(self.clusters.len())];
        let mut x = c.center.clone();
        for j in 0..c.rank {
            let z = c.spread * gaussian(&mut self.rng);
            for (e, b) in x.iter_mut().zip(&c.basis[j * DIMS..(j + 1) * DIMS]) {
                *e += z * b;
            }
        }
        x.iter()
            .map(|e| f16::from_f32(e + noise * gaussian(&mut self.rng)))
            .collect()
    }

    pub fn items(&mut self, n: usize) -> Vec<Vec<f16>> {
        (0..n).map(|_| self.sample(0.05)).collect()
    }

    /// Queries: fresh noisier points, not in the set.
    pub fn queries(&mut self, n: usize) -> Vec<Vec<f16>> {
        (0..n).map(|_| self.sample(0.1)).collect()
    }
}

pub fn tid(i: usize) -> imgsim_forest::Tid {
    imgsim_forest::Tid {
        block: (i / 100) as u32,
        offset: (i % 100) as u16 + 1,
    }
}

pub fn index_of(t: imgsim_forest::Tid) -> usize {
    t.block as usize * 100 + t.offset as usize - 1
}

/// Exact top-k by the reported distance (scalar kernel), ties by index.
pub fn brute_force(metric: Metric, data: &[Vec<f16>], q: &[f16], k: usize) -> Vec<usize> {
    let qn = imgsim_kernels::scalar::norm_squared(q);
    let mut d: Vec<(f32, usize)> = data
        .iter()
        .enumerate()
        .map(|(i, x)| {
            (
                exact_distance(metric, q, qn, x, imgsim_kernels::scalar::norm_squared(x)),
                i,
            )
        })
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    d.truncate(k);
    d.into_iter().map(|(_, i)| i).collect()
}

/// Fraction of `truth` found in `found`.
pub fn recall(truth: &[usize], found: &[usize]) -> f64 {
    truth.iter().filter(|t| found.contains(t)).count() as f64 / truth.len() as f64
}

/// The hard structured set: clusters in a latent space of rank `rank`,
/// mapped into 2048-d by one random linear map followed by ReLU (so the data
/// lie on a curved rank-`rank` manifold, non-negative like pooled CNN
/// features) and L2-normalised. Neighbourhoods have `rank` dimensions, so
/// a query's ten neighbours are not copies of one point.
pub struct Manifold {
    map: Vec<f32>,
    centers: Vec<Vec<f32>>,
    spreads: Vec<f32>,
    rank: usize,
    rng: Rng,
}

impl Manifold {
    pub fn new(clusters: usize, rank: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let map = (0..rank * DIMS).map(|_| gaussian(&mut rng)).collect();
        let centers = (0..clusters)
            .map(|_| (0..rank).map(|_| gaussian(&mut rng)).collect())
            .collect();
        let spreads = (0..clusters)
            .map(|_| 0.4 + 0.6 * rng.below(1000) as f32 / 1000.0)
            .collect();
        Manifold {
            map,
            centers,
            spreads,
            rank,
            rng,
        }
    }

    pub fn sample(&mut self) -> Vec<f16> {
        let c = self.rng.below(self.centers.len());
        let z: Vec<f32> = self.centers[c]
            .iter()
            .map(|m| m + self.spreads[c] * gaussian(&mut self.rng))
            .collect();
        // A random offset per output coordinate keeps about half of them
        // positive before the ReLU.
        let mut x = vec![0f32; DIMS];
        for (j, zj) in z.iter().enumerate() {
            for (e, a) in x.iter_mut().zip(&self.map[j * DIMS..(j + 1) * DIMS]) {
                *e += zj * a;
            }
        }
        let scale = 1.0 / (self.rank as f32).sqrt();
        x.iter_mut().for_each(|e| *e = (*e * scale + 0.3).max(0.0));
        let norm = x.iter().map(|e| e * e).sum::<f32>().sqrt().max(1e-12);
        x.iter().map(|e| f16::from_f32(e / norm)).collect()
    }

    pub fn items(&mut self, n: usize) -> Vec<Vec<f16>> {
        (0..n).map(|_| self.sample()).collect()
    }
}
