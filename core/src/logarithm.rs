//! Natural and decimal logarithms in plain IEEE arithmetic (`+ − × ÷` and bit
//! operations), for the protocol's few formulas that scale with `log(n)`.
//!
//! Why not `f64::ln`: it calls the platform's math library, whose last bit may
//! differ between platforms (glibc, musl, macOS), so one seed could give two
//! traces; these give the same bits everywhere. And a program whose only use of
//! the math library was these (the agent) does not load it at
//! all: half a megabyte less resident memory per process with glibc, whose
//! start-up touches much of `libm` to pick its CPU-specific variants.
//!
//! Accuracy: within a few ulps of the exact result over the whole `f64` range
//! (the tests compare with `f64::ln` at 4 ulps); exact at 1 and, for
//! [`log10`], at every power of ten an `f64` holds exactly.

use std::f64::consts::{LN_2, LN_10, SQRT_2};

/// `ln(x)`. `ln(0) = −∞`, `ln(∞) = ∞`, NaN for negative numbers and NaN.
pub(crate) fn ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return f64::INFINITY;
    }
    // x = m · 2^e with m in [√2/2, √2): ln x = e · ln 2 + ln m.
    let (mut m, mut e) = split(x);
    if m >= SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    // ln m = 2 atanh(s) = 2 (s + s³/3 + s⁵/5 + …), s = (m − 1)/(m + 1), |s| < 0.172:
    // s² < 0.0295, so terms up to s²³ leave less than 1e-19 of m's logarithm.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut series = 0.0;
    for k in (1..=23).rev().step_by(2) {
        series = series * s2 + 1.0 / f64::from(k);
    }
    f64::from(e) * LN_2 + 2.0 * s * series
}

/// `log10(x)`, exact at the powers of ten (1, 10, …, 10²²); otherwise as [`ln`].
pub(crate) fn log10(x: f64) -> f64 {
    let log = ln(x) / LN_10;
    let nearest = log.round();
    if (0.0..=22.0).contains(&nearest) && 10f64.powi(nearest as i32) == x {
        return nearest;
    }
    log
}

/// A finite positive `x` as `m · 2^e` with `m` in `[1, 2)`.
fn split(x: f64) -> (f64, i32) {
    const MANTISSA_BITS: u32 = 52;
    const EXPONENT_MASK: u64 = 0x7ff;
    const BIAS: i32 = 1023;
    let bits = x.to_bits();
    let biased = ((bits >> MANTISSA_BITS) & EXPONENT_MASK) as i32;
    if biased == 0 {
        // Subnormal: scale into the normal range first (2^54 is exact).
        let (m, e) = split(x * f64::from_bits(((BIAS + 54) as u64) << MANTISSA_BITS));
        return (m, e - 54);
    }
    let mantissa = bits & ((1 << MANTISSA_BITS) - 1);
    let m = f64::from_bits(mantissa | ((BIAS as u64) << MANTISSA_BITS));
    (m, biased - BIAS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many representable `f64`s lie between `a` and `b` (same sign).
    fn ulps(a: f64, b: f64) -> u64 {
        a.to_bits().abs_diff(b.to_bits())
    }

    fn assert_close(x: f64) {
        let (ours, std) = (ln(x), x.ln());
        // Near x = 1 the result is tiny and its ulps are too: compare absolutely.
        let close = ulps(ours, std) <= 4 || (ours - std).abs() <= 1e-17;
        assert!(close, "ln({x:e}) = {ours:e}, std says {std:e}");
    }

    #[test]
    fn ln_matches_the_math_library_over_the_whole_range() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..200_000 {
            // Every exponent, every mantissa: random bits of a positive finite f64.
            let x = f64::from_bits(rng.u64(1..0x7ff0_0000_0000_0000));
            assert_close(x);
        }
        for n in 1..=100_000u32 {
            assert_close(f64::from(n));
            assert_close(1.0 / f64::from(n));
            assert_close(1.0 + f64::from(n) * 1e-9);
        }
        for x in [f64::MIN_POSITIVE, f64::MAX, 5e-324, 0.5, 2.0, SQRT_2, 1e-3] {
            assert_close(x);
        }
    }

    #[test]
    fn special_values_are_those_of_ieee_logarithms() {
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(0.0), f64::NEG_INFINITY);
        assert_eq!(ln(-0.0), f64::NEG_INFINITY);
        assert_eq!(ln(f64::INFINITY), f64::INFINITY);
        assert!(ln(-1.0).is_nan());
        assert!(ln(f64::NAN).is_nan());
        assert!(log10(-1.0).is_nan());
        assert_eq!(log10(0.0), f64::NEG_INFINITY);
    }

    #[test]
    fn log10_is_exact_at_powers_of_ten_and_close_elsewhere() {
        for n in 0..=22 {
            assert_eq!(log10(10f64.powi(n)), f64::from(n), "10^{n}");
        }
        for n in 1..=100_000u32 {
            let x = f64::from(n);
            let (ours, std) = (log10(x), x.log10());
            assert!(ulps(ours, std) <= 4, "log10({x}) = {ours}, std says {std}");
        }
    }
}
