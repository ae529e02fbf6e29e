//! Scalar reference kernels: widen each half to f32 and accumulate in f32.

use half::f16;

pub fn l2_squared(a: &[f16], b: &[f16]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = x.to_f32() - y.to_f32();
            d * d
        })
        .sum()
}

pub fn dot(a: &[f16], b: &[f16]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x.to_f32() * y.to_f32()).sum()
}

pub fn norm_squared(a: &[f16]) -> f32 {
    a.iter().map(|x| x.to_f32() * x.to_f32()).sum()
}
