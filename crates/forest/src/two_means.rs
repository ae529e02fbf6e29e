//! Choosing a split: Annoy's two-means on the items' int8 codes, then a cut
//! near the centroids' midpoint that keeps both sides of a useful size.
//! Used by the build for every split node and by inserts for full leaves.

use crate::build::CodedItems;
use crate::space::Rng;

/// Two-means refinement steps per split (Annoy uses 200).
const TWO_MEANS_STEPS: usize = 200;
/// A split keeps at least this fraction of the node's items on each side.
const MIN_SPLIT_FRACTION: f32 = 0.25;

/// Chooses a hyperplane for `ids` (at least 2 build item numbers of
/// `coded`, in a tree space of `reduced_dims`) and reorders them so the
/// first `cut` lie on its left. Returns `(normal, offset, cut)`.
pub(crate) fn split(
    coded: &CodedItems,
    reduced_dims: usize,
    rng: &mut Rng,
    ids: &mut [u32],
) -> (Vec<f32>, f32, usize) {
    let (normal, midpoint) = two_means(coded, reduced_dims, rng, ids);
    let mut keyed: Vec<(f32, u32)> = ids
        .iter()
        .map(|&i| (coded.project(&normal, i), i))
        .collect();
    keyed.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    // Cut where the two-means midpoint falls, but keep both sides at
    // least MIN_SPLIT_FRACTION full so trees stay balanced (and identical
    // vectors still split).
    let n = ids.len();
    let min_side = ((n as f32 * MIN_SPLIT_FRACTION) as usize).max(1);
    let cut = keyed
        .partition_point(|&(p, _)| p <= midpoint)
        .clamp(min_side, n - min_side);
    let threshold = 0.5 * (keyed[cut - 1].0 + keyed[cut].0);
    for (slot, (_, i)) in ids.iter_mut().zip(&keyed) {
        *slot = *i;
    }
    (normal, -threshold, cut)
}

/// Annoy's two-means: refine two centroids on random items, weighted by
/// how many items each has absorbed. Returns the unit normal from the
/// first centroid to the second and the centroids' midpoint projected
/// on it.
fn two_means(coded: &CodedItems, td: usize, rng: &mut Rng, ids: &[u32]) -> (Vec<f32>, f32) {
    let n = ids.len();
    let i = rng.below(n);
    let mut j = rng.below(n - 1);
    if j >= i {
        j += 1;
    }
    // A small node (a leaf split: about 30 items) is decoded once; a large
    // one item by item as it is sampled.
    let decoded: Vec<f32> = if n <= TWO_MEANS_STEPS {
        let mut all = vec![0f32; n * td];
        for (&id, out) in ids.iter().zip(all.chunks_exact_mut(td)) {
            coded.decode_into(id, out);
        }
        all
    } else {
        Vec::new()
    };
    let mut buffer = vec![0f32; td];
    let mut c0 = item(coded, ids, &decoded, i, &mut buffer).to_vec();
    let mut c1 = item(coded, ids, &decoded, j, &mut buffer).to_vec();
    let (mut n0, mut n1) = (1f32, 1f32);
    for _ in 0..TWO_MEANS_STEPS {
        let v = item(coded, ids, &decoded, rng.below(n), &mut buffer);
        let d0 = n0 * dist_sq(&c0, v);
        let d1 = n1 * dist_sq(&c1, v);
        let (c, cnt) = if d0 < d1 {
            (&mut c0, &mut n0)
        } else {
            (&mut c1, &mut n1)
        };
        for (ce, ve) in c.iter_mut().zip(v) {
            *ce = (*ce * *cnt + ve) / (*cnt + 1.0);
        }
        *cnt += 1.0;
    }
    let mut normal: Vec<f32> = c1.iter().zip(&c0).map(|(a, b)| a - b).collect();
    let len = normal.iter().map(|x| x * x).sum::<f32>().sqrt();
    if len > 0.0 {
        normal.iter_mut().for_each(|x| *x /= len);
    } else {
        // All sampled items identical: any direction; the balanced cut
        // still divides the node.
        normal[0] = 1.0;
    }
    let midpoint = normal
        .iter()
        .zip(c0.iter().zip(&c1))
        .map(|(w, (a, b))| w * 0.5 * (a + b))
        .sum();
    (normal, midpoint)
}

/// Item `k` of `ids` as a tree-space vector: from `decoded` (all of them,
/// in order) unless that is empty, else decoded into `buffer`.
fn item<'a>(
    coded: &CodedItems,
    ids: &[u32],
    decoded: &'a [f32],
    k: usize,
    buffer: &'a mut [f32],
) -> &'a [f32] {
    let td = buffer.len();
    if decoded.is_empty() {
        coded.decode_into(ids[k], buffer);
        buffer
    } else {
        &decoded[k * td..(k + 1) * td]
    }
}

/// Squared distance, summed in 16 independent lanes: a single running sum
/// is one long chain of dependent adds the compiler may not reorder, and
/// it made this loop a tenth of an insert's CPU (a leaf split per insert).
fn dist_sq(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [0f32; LANES];
    let (a_blocks, a_rest) = a.as_chunks::<LANES>();
    let (b_blocks, b_rest) = b.as_chunks::<LANES>();
    for (x, y) in a_blocks.iter().zip(b_blocks) {
        for k in 0..LANES {
            let d = x[k] - y[k];
            lanes[k] += d * d;
        }
    }
    let rest: f32 = a_rest
        .iter()
        .zip(b_rest)
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    lanes.iter().sum::<f32>() + rest
}
