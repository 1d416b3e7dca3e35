//! Reproducible random draws, shared bit for bit with WASM strategy guests.
//!
//! A strategy decision must be the same whether it runs natively or inside a
//! WASM guest given the same seed, so the algorithms are pinned here rather
//! than taken from `rand_distr` (whose algorithms may change between
//! releases):
//!
//! - the stream is [`SplitMix64`];
//! - a uniform is the top 53 bits of one `u64`, in `[0, 1)`;
//! - a standard normal is one Box–Muller draw (two uniforms, the sine half
//!   discarded);
//! - a Gamma variate is Marsaglia–Tsang (2000), with the `shape < 1` boost
//!   `Gamma(shape + 1) · U^(1/shape)`;
//! - a Beta variate is `X / (X + Y)` of two Gammas.
//!
//! Transcendental functions come from the `libm` crate, not the platform's C
//! library, so `x86_64` and `wasm32` round identically. The guest SDK in
//! `strategies/sdk` carries a copy of this file's algorithms; the tests in
//! `paid-wasm` check that both agree.
//!
//! ```
//! use paid_core::learning::sampler::{SplitMix64, beta};
//!
//! let mut a = SplitMix64::new(7);
//! let mut b = SplitMix64::new(7);
//! assert_eq!(beta(&mut a, 3.0, 5.0).to_bits(), beta(&mut b, 3.0, 5.0).to_bits());
//! ```

use rand::RngCore;

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, fast, seedable generator
/// whose whole state is one `u64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }
}

impl RngCore for SplitMix64 {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// A uniform draw in `[0, 1)`: the top 53 bits of one `u64`.
pub fn uniform<R: RngCore + ?Sized>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// An index in `0..n` (`n > 0`), by one `u64` modulo `n`.
pub fn index<R: RngCore + ?Sized>(rng: &mut R, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    (rng.next_u64() % n as u64) as usize
}

/// A standard normal draw: Box–Muller, cosine half.
pub fn standard_normal<R: RngCore + ?Sized>(rng: &mut R) -> f64 {
    let u1 = 1.0 - uniform(rng); // (0, 1]: ln is finite
    let u2 = uniform(rng);
    libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(2.0 * std::f64::consts::PI * u2)
}

/// A normal draw with the given mean and standard deviation.
pub fn normal<R: RngCore + ?Sized>(rng: &mut R, mean: f64, sd: f64) -> f64 {
    mean + sd * standard_normal(rng)
}

/// A Gamma(`shape`, 1) draw, `shape > 0` (Marsaglia–Tsang). A non-positive
/// or non-finite shape yields `0.0`.
pub fn gamma<R: RngCore + ?Sized>(rng: &mut R, shape: f64) -> f64 {
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

/// A Beta(`a`, `b`) draw, `a, b > 0`.
pub fn beta<R: RngCore + ?Sized>(rng: &mut R, a: f64, b: f64) -> f64 {
    let x = gamma(rng, a);
    let y = gamma(rng, b);
    if x + y > 0.0 { x / (x + y) } else { 0.5 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // First outputs of SplitMix64 seeded with 1234567 (the reference
        // implementation's test vector).
        let mut rng = SplitMix64::new(1_234_567);
        let got: Vec<u64> = (0..5).map(|_| rng.next_u64()).collect();
        assert_eq!(
            got,
            vec![
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423,
                4_593_380_528_125_082_431,
                16_408_922_859_458_223_821,
            ]
        );
    }

    #[test]
    fn uniform_is_in_range_and_centered() {
        let mut rng = SplitMix64::new(1);
        let n = 100_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let u = uniform(&mut rng);
            assert!((0.0..1.0).contains(&u));
            sum += u;
        }
        assert!((sum / n as f64 - 0.5).abs() < 0.005);
    }

    #[test]
    fn normal_moments() {
        let mut rng = SplitMix64::new(2);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| normal(&mut rng, 1.0, 2.0)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        assert!((mean - 1.0).abs() < 0.02, "mean {mean}");
        assert!((var - 4.0).abs() < 0.05, "var {var}");
    }

    #[test]
    fn gamma_and_beta_moments() {
        let mut rng = SplitMix64::new(3);
        let n = 200_000;
        for shape in [0.5, 1.0, 3.5, 40.0] {
            let xs: Vec<f64> = (0..n).map(|_| gamma(&mut rng, shape)).collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            assert!((mean - shape).abs() < 0.02 * shape.max(1.0), "gamma({shape}) mean {mean}");
            assert!((var - shape).abs() < 0.05 * shape.max(1.0), "gamma({shape}) var {var}");
        }
        let (a, b) = (3.0, 7.0);
        let xs: Vec<f64> = (0..n).map(|_| beta(&mut rng, a, b)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        assert!((mean - 0.3).abs() < 0.002, "beta mean {mean}");
        let want_var = a * b / ((a + b).powi(2) * (a + b + 1.0));
        assert!((var - want_var).abs() < 0.001, "beta var {var}");
    }

    #[test]
    fn draws_are_reproducible_from_the_seed() {
        let draw = |seed| {
            let mut rng = SplitMix64::new(seed);
            (0..50).map(|_| beta(&mut rng, 2.5, 0.7).to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(draw(9), draw(9));
        assert_ne!(draw(9), draw(10));
    }

    #[test]
    fn degenerate_shapes_do_not_hang() {
        let mut rng = SplitMix64::new(4);
        assert_eq!(gamma(&mut rng, 0.0), 0.0);
        assert_eq!(gamma(&mut rng, f64::NAN), 0.0);
        assert_eq!(beta(&mut rng, 0.0, 0.0), 0.5);
        assert_eq!(index(&mut rng, 0), 0);
    }
}
