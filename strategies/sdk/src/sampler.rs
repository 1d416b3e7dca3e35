//! The sampler of `paid_core::learning::sampler`, copied for guests (which
//! do not depend on paid-core). Any change must be made in both places; the
//! tests in `paid-wasm` compare the two through the guests' decisions.
//!
//! SplitMix64; uniforms from the top 53 bits; Box–Muller (cosine half);
//! Marsaglia–Tsang Gamma with the `shape < 1` boost; Beta as X / (X + Y);
//! transcendental functions from `libm`.

/// SplitMix64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// Seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next output.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Uniform in `[0, 1)`.
pub fn uniform(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// An index in `0..n`.
pub fn index(rng: &mut SplitMix64, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    (rng.next_u64() % n as u64) as usize
}

/// Standard normal.
pub fn standard_normal(rng: &mut SplitMix64) -> f64 {
    let u1 = 1.0 - uniform(rng);
    let u2 = uniform(rng);
    libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(2.0 * core::f64::consts::PI * u2)
}

/// Normal.
pub fn normal(rng: &mut SplitMix64, mean: f64, sd: f64) -> f64 {
    mean + sd * standard_normal(rng)
}

/// Gamma(`shape`, 1).
pub fn gamma(rng: &mut SplitMix64, shape: f64) -> f64 {
    if !(shape.is_finite() && shape > 0.0) {
        return 0.0;
    }
    if shape < 1.0 {
        let g = gamma(rng, shape + 1.0);
        let u = 1.0 - uniform(rng);
        return g * libm::pow(u, 1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / libm::sqrt(9.0 * d);
    loop {
        let (x, v) = loop {
            let x = standard_normal(rng);
            let v = 1.0 + c * x;
            if v > 0.0 {
                break (x, v * v * v);
            }
        };
        let u = 1.0 - uniform(rng);
        let x2 = x * x;
        if u < 1.0 - 0.0331 * x2 * x2 {
            return d * v;
        }
        if libm::log(u) < 0.5 * x2 + d * (1.0 - v + libm::log(v)) {
            return d * v;
        }
    }
}

/// Beta(`a`, `b`).
pub fn beta(rng: &mut SplitMix64, a: f64, b: f64) -> f64 {
    let x = gamma(rng, a);
    let y = gamma(rng, b);
    if x + y > 0.0 { x / (x + y) } else { 0.5 }
}
