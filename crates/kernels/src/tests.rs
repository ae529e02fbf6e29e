//! Property tests: the dispatching kernels against the scalar reference on
//! random vectors of many lengths and magnitudes.

use half::f16;

use super::*;

/// SplitMix64: small, deterministic, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn vector(&mut self, len: usize, scale: f32) -> Vec<f16> {
        (0..len)
            .map(|_| f16::from_f32(self.unit() * scale))
            .collect()
    }
}

/// Exact value in f64, as the yardstick for both implementations.
fn exact(a: &[f16], b: &[f16], f: fn(f64, f64) -> f64) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f(x.to_f64(), y.to_f64()))
        .sum()
}

fn assert_close(got: f32, want: f64, magnitude: f64, what: &str) {
    // f32 accumulation over at most a few thousand terms: relative error of
    // a few 1e-6 of the sum of |terms|.
    let tolerance = 1e-5 * magnitude + 1e-6;
    assert!(
        (f64::from(got) - want).abs() <= tolerance,
        "{what}: got {got}, exact {want}, tolerance {tolerance}"
    );
}

#[test]
fn simd_matches_scalar_and_exact() {
    let mut rng = Rng(42);
    let lengths = [0, 1, 7, 8, 9, 31, 32, 33, 100, 1000, 2047, 2048, 4096];
    for &len in &lengths {
        for &scale in &[1e-3f32, 1.0, 100.0, 60000.0] {
            for _ in 0..20 {
                let a = rng.vector(len, scale);
                let b = rng.vector(len, scale);
                let l2_exact = exact(&a, &b, |x, y| (x - y) * (x - y));
                let dot_exact = exact(&a, &b, |x, y| x * y);
                let dot_magnitude = exact(&a, &b, |x, y| (x * y).abs());
                let norm_exact = exact(&a, &a, |x, _| x * x);
                for (name, got) in [
                    ("dispatch", l2_squared(&a, &b)),
                    ("scalar", scalar::l2_squared(&a, &b)),
                ] {
                    assert_close(
                        got,
                        l2_exact,
                        l2_exact,
                        &format!("l2 {name} len {len} scale {scale}"),
                    );
                }
                for (name, got) in [("dispatch", dot(&a, &b)), ("scalar", scalar::dot(&a, &b))] {
                    assert_close(
                        got,
                        dot_exact,
                        dot_magnitude,
                        &format!("dot {name} len {len} scale {scale}"),
                    );
                }
                for (name, got) in [
                    ("dispatch", norm_squared(&a)),
                    ("scalar", scalar::norm_squared(&a)),
                ] {
                    assert_close(
                        got,
                        norm_exact,
                        norm_exact,
                        &format!("norm {name} len {len} scale {scale}"),
                    );
                }
            }
        }
    }
}

#[test]
fn identical_vectors_have_zero_distance() {
    let mut rng = Rng(7);
    let a = rng.vector(2048, 10.0);
    assert_eq!(l2_squared(&a, &a), 0.0);
}

#[test]
#[should_panic(expected = "vector lengths differ")]
fn different_lengths_panic() {
    l2_squared(&[f16::ONE; 3], &[f16::ONE; 4]);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn this_machine_runs_the_simd_path() {
    // The CI machine is x86-64 with AVX2: if detection broke, the SIMD path
    // would silently stop being tested.
    assert_eq!(implementation(), "avx2+f16c+fma");
}
