//! Kubernetes quantities (`10Gi`, `10240Mi`, `1.5e9`, `500M`) as byte counts, so that sizes
//! are compared by value: the API server stores quantities in canonical form, so the text of
//! a size read back from an object need not be the text that was applied.
//!
//! The grammar is apimachinery's `resource.Quantity`:
//! `[+-]` digits with an optional fraction, then a binary suffix (`Ki` … `Ei`), a decimal
//! suffix (`m`, none, `k`, `M`, `G`, `T`, `P`, `E`) or a decimal exponent (`e3`, `E-2`).

/// Why a string is not a usable size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not a quantity at all.
    #[error("{0:?} is not a Kubernetes quantity")]
    Syntax(String),
    /// A negative quantity, which no size can be.
    #[error("{0:?} is negative")]
    Negative(String),
    /// Larger than this parser represents (about 3.4e38 bytes).
    #[error("{0:?} is too large")]
    Overflow(String),
}

/// The quantity `s` in bytes, rounded up to a whole byte as Kubernetes' `Quantity.Value()`
/// does (`100m` is 1 byte).
pub fn bytes(s: &str) -> Result<u128, QuantityError> {
    let syntax = || QuantityError::Syntax(s.to_string());
    let overflow = || QuantityError::Overflow(s.to_string());
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(syntax());
    }
    // Trailing zeros of the fraction add nothing but digits that could overflow.
    let frac = frac.trim_end_matches('0');
    let mut mantissa: u128 = 0;
    for d in int.bytes().chain(frac.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(d - b'0')))
            .ok_or_else(overflow)?;
    }
    let (binary_shift, mut exponent): (u32, i64) = match suffix {
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "m" => (0, -3),
        "" => (0, 0),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        _ => {
            let e = suffix
                .strip_prefix(['e', 'E'])
                .filter(|e| {
                    let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                })
                .ok_or_else(syntax)?;
            (0, e.parse::<i64>().map_err(|_| overflow())?)
        }
    };
    if negative && mantissa != 0 {
        return Err(QuantityError::Negative(s.to_string()));
    }
    if mantissa == 0 {
        return Ok(0);
    }
    exponent -= frac.len() as i64;
    let value = mantissa.checked_shl(binary_shift).ok_or_else(overflow)?;
    if value >> binary_shift != mantissa {
        return Err(overflow());
    }
    if exponent >= 0 {
        let scale = u32::try_from(exponent)
            .ok()
            .and_then(|e| 10u128.checked_pow(e))
            .ok_or_else(overflow)?;
        value.checked_mul(scale).ok_or_else(overflow)
    } else {
        // A divisor past u128 makes any value we hold less than one byte: it rounds up to 1.
        match u32::try_from(-exponent)
            .ok()
            .and_then(|e| 10u128.checked_pow(e))
        {
            Some(scale) => Ok(value.div_ceil(scale)),
            None => Ok(1),
        }
    }
}

/// `a` and `b` are the same size. Quantities that do not parse are compared as text, which
/// is what they would mean to anyone reading them (the CRD's schema refuses such sizes).
pub fn same_size(a: &str, b: &str) -> bool {
    match (bytes(a), bytes(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// `a` is a smaller size than `b`; `false` when either does not parse.
pub fn smaller(a: &str, b: &str) -> bool {
    matches!((bytes(a), bytes(b)), (Ok(a), Ok(b)) if a < b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KI: u128 = 1024;

    #[test]
    fn binary_and_decimal_suffixes() {
        assert_eq!(bytes("10Gi"), Ok(10 * KI * KI * KI));
        assert_eq!(bytes("10240Mi"), Ok(10 * KI * KI * KI));
        assert_eq!(bytes("1Ki"), Ok(KI));
        assert_eq!(bytes("1Ti"), Ok(KI.pow(4)));
        assert_eq!(bytes("1Pi"), Ok(KI.pow(5)));
        assert_eq!(bytes("2Ei"), Ok(2 * KI.pow(6)));
        assert_eq!(bytes("1k"), Ok(1_000));
        assert_eq!(bytes("5M"), Ok(5_000_000));
        assert_eq!(bytes("10G"), Ok(10_000_000_000));
        assert_eq!(bytes("1T"), Ok(10u128.pow(12)));
        assert_eq!(bytes("1P"), Ok(10u128.pow(15)));
        assert_eq!(bytes("3E"), Ok(3 * 10u128.pow(18)));
        assert_eq!(bytes("1500m"), Ok(2), "rounded up to whole bytes");
        assert_eq!(bytes("1000m"), Ok(1));
        assert_eq!(bytes("42"), Ok(42));
        assert_eq!(bytes("0"), Ok(0));
    }

    #[test]
    fn fractions_exponents_and_signs() {
        assert_eq!(bytes("1.5Gi"), Ok(3 * 512 * KI * KI));
        assert_eq!(bytes("0.5Ki"), Ok(512));
        assert_eq!(bytes(".5k"), Ok(500));
        assert_eq!(bytes("5."), Ok(5));
        assert_eq!(
            bytes("1.50000000000000000000000000000000000000000000Gi"),
            bytes("1536Mi")
        );
        assert_eq!(bytes("1e9"), Ok(1_000_000_000));
        assert_eq!(bytes("1E9"), Ok(1_000_000_000));
        assert_eq!(bytes("1.5e3"), Ok(1_500));
        assert_eq!(bytes("12e+2"), Ok(1_200));
        assert_eq!(bytes("5e-1"), Ok(1));
        assert_eq!(bytes("1e-400"), Ok(1));
        assert_eq!(bytes("+2Gi"), Ok(2 * KI * KI * KI));
        assert_eq!(bytes("-0"), Ok(0));
        assert!(matches!(bytes("-1Gi"), Err(QuantityError::Negative(_))));
    }

    #[test]
    fn refuses_what_is_not_a_quantity() {
        for bad in [
            "", "Gi", ".", "1..2", "1.2.3", "10 Gi", " 10Gi", "10gi", "10GiB", "10KI", "1e", "1e+",
            "1e1.5", "1ee2", "--1", "0x10", "10Gi ", "1i",
        ] {
            assert!(
                matches!(bytes(bad), Err(QuantityError::Syntax(_))),
                "{bad:?}: {:?}",
                bytes(bad)
            );
        }
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert!(matches!(bytes("1e39"), Err(QuantityError::Overflow(_))));
        assert!(matches!(
            bytes("400000000000000000000Ei"),
            Err(QuantityError::Overflow(_))
        ));
        assert!(matches!(
            bytes("99999999999999999999999999999999999999999"),
            Err(QuantityError::Overflow(_))
        ));
        assert!(matches!(
            bytes("1e99999999999999999999"),
            Err(QuantityError::Overflow(_))
        ));
    }

    #[test]
    fn compares_by_value() {
        assert!(same_size("10Gi", "10240Mi"));
        assert!(same_size("1G", "1000M"));
        assert!(!same_size("1G", "1Gi"));
        assert!(same_size("junk", "junk"));
        assert!(!same_size("junk", "10Gi"));
        assert!(smaller("10Gi", "10241Mi"));
        assert!(!smaller("10Gi", "10240Mi"));
        assert!(!smaller("junk", "10Gi"));
    }
}
