//! Running mean and variance (Welford), with the exact merge of Chan et al., so samples can
//! be learned one at a time, models from several hosts combined, and one process's samples
//! taken back out when it turns out to be hostile.
use serde::{Deserialize, Serialize};

/// Count, mean and sum of squared deviations of a stream of samples.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Welford {
    /// Number of samples.
    pub n: u64,
    /// Mean of the samples.
    pub mean: f64,
    /// Sum of squared deviations from the mean (`variance × n`).
    pub m2: f64,
}

impl Welford {
    /// Adds one sample; non-finite samples are refused (they would poison every later value).
    pub fn push(&mut self, x: f64) -> bool {
        if !x.is_finite() {
            return false;
        }
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
        true
    }

    /// The statistics of both sample sets together, exactly (Chan, Golub and LeVeque).
    pub fn merged(&self, other: &Welford) -> Welford {
        if other.n == 0 {
            return *self;
        }
        if self.n == 0 {
            return *other;
        }
        let n = self.n + other.n;
        let (na, nb, nn) = (self.n as f64, other.n as f64, n as f64);
        let delta = other.mean - self.mean;
        Welford {
            n,
            mean: self.mean + delta * nb / nn,
            m2: self.m2 + other.m2 + delta * delta * na * nb / nn,
        }
    }

    /// These statistics with the samples of `part` taken out (the inverse of [`merged`]);
    /// `part` must be a subset of the samples, which the caller guarantees by construction.
    ///
    /// [`merged`]: Welford::merged
    pub fn without(&self, part: &Welford) -> Welford {
        if part.n == 0 {
            return *self;
        }
        if part.n >= self.n {
            return Welford::default();
        }
        let n = self.n - part.n;
        let (nn, nb, nt) = (n as f64, part.n as f64, self.n as f64);
        let mean = (nt * self.mean - nb * part.mean) / nn;
        let delta = part.mean - mean;
        let m2 = self.m2 - part.m2 - delta * delta * nn * nb / nt;
        Welford {
            n,
            mean,
            // Rounding can leave a tiny negative residue where the true value is 0.
            m2: m2.max(0.0),
        }
    }

    /// Sample variance (n − 1 in the denominator); 0 with fewer than two samples.
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            self.m2 / (self.n - 1) as f64
        }
    }

    /// Sample standard deviation.
    pub fn std_dev(&self) -> f64 {
        self.variance().sqrt()
    }

    /// Whether the numbers are ones a real sample set can have (used to vet a loaded file).
    pub fn is_sane(&self) -> bool {
        self.mean.is_finite()
            && self.m2.is_finite()
            && self.m2 >= 0.0
            && (self.n > 0 || self.m2 == 0.0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small deterministic generator (SplitMix64), so the tests need no extra crate.
    pub(crate) struct Rng(pub u64);

    impl Rng {
        pub(crate) fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// Uniform in [0, 1).
        pub(crate) fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn two_pass(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var)
    }

    fn of(xs: &[f64]) -> Welford {
        let mut w = Welford::default();
        for &x in xs {
            assert!(w.push(x));
        }
        w
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn welford_matches_two_pass_on_random_data() {
        let mut rng = Rng(7);
        for len in [2usize, 3, 10, 1000, 20_000] {
            // An offset far from 0 is where the naive sum-of-squares formula loses its digits.
            let xs: Vec<f64> = (0..len).map(|_| 1e6 + rng.unit() * 100.0).collect();
            let w = of(&xs);
            let (mean, var) = two_pass(&xs);
            assert_eq!(w.n, len as u64);
            assert!(close(w.mean, mean), "{len}: {} vs {mean}", w.mean);
            assert!(close(w.variance(), var), "{len}: {} vs {var}", w.variance());
        }
    }

    #[test]
    fn merge_equals_computing_on_the_concatenation() {
        let mut rng = Rng(11);
        for (la, lb) in [(0usize, 5usize), (5, 0), (1, 1), (7, 300), (5000, 3)] {
            let a: Vec<f64> = (0..la).map(|_| rng.unit() * 50.0).collect();
            let b: Vec<f64> = (0..lb).map(|_| 40.0 + rng.unit() * 90.0).collect();
            let merged = of(&a).merged(&of(&b));
            let all = of(&[a.clone(), b.clone()].concat());
            assert_eq!(merged.n, all.n);
            assert!(close(merged.mean, all.mean), "{la}+{lb}");
            assert!(
                close(merged.m2, all.m2),
                "{la}+{lb}: {} vs {}",
                merged.m2,
                all.m2
            );
            // Merging is symmetric.
            let other = of(&b).merged(&of(&a));
            assert!(close(other.mean, merged.mean) && close(other.m2, merged.m2));
        }
    }

    #[test]
    fn without_undoes_merge() {
        let mut rng = Rng(3);
        let a: Vec<f64> = (0..400).map(|_| rng.unit() * 10.0).collect();
        let b: Vec<f64> = (0..50).map(|_| 90.0 + rng.unit()).collect();
        let back = of(&a).merged(&of(&b)).without(&of(&b));
        let want = of(&a);
        assert_eq!(back.n, want.n);
        assert!(close(back.mean, want.mean) && close(back.m2, want.m2));
        assert_eq!(of(&b).without(&of(&b)), Welford::default());
    }

    #[test]
    fn non_finite_samples_are_refused() {
        let mut w = of(&[1.0, 2.0]);
        assert!(!w.push(f64::NAN));
        assert!(!w.push(f64::INFINITY));
        assert_eq!(w.n, 2);
        assert!(w.is_sane());
        assert_eq!(w.std_dev(), std::f64::consts::FRAC_1_SQRT_2);
        assert_eq!(Welford::default().variance(), 0.0);
        assert_eq!(of(&[4.0]).variance(), 0.0);
        assert!(
            !Welford {
                n: 3,
                mean: 1.0,
                m2: -1.0
            }
            .is_sane()
        );
    }
}
