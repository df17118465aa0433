//! Parsing of Kubernetes resource quantities (`500m`, `2`, `1.5Gi`, `1e3`), following the grammar of
//! `k8s.io/apimachinery/pkg/api/resource`.

/// Why a quantity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The text does not follow the quantity grammar.
    #[error("`{0}` {text}", text = crate::rules::text::QUANTITY)]
    Syntax(String),
    /// The value does not fit the range Bulkhead works with.
    #[error("`{0}` is too large")]
    TooLarge(String),
}

/// Parses a quantity and returns its value in thousandths of the base unit (millicores for CPU, millibytes for
/// memory), rounded up as Kubernetes does. Negative quantities come back negative.
pub fn parse_milli(text: &str) -> Result<i128, QuantityError> {
    let syntax = || QuantityError::Syntax(shorten(text));
    let too_large = || QuantityError::TooLarge(shorten(text));
    if text.is_empty() || text.len() > 64 {
        return Err(syntax());
    }
    let (negative, rest) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(syntax());
    }
    let digits = format!("{int_part}{frac_part}");
    if digits.len() > 30 {
        return Err(too_large());
    }
    let mantissa: i128 = digits.parse().map_err(|_| syntax())?;
    // value = mantissa * 10^-scale * multiplier; we want value * 1000 as an integer, rounded up.
    let scale = u32::try_from(frac_part.len()).map_err(|_| syntax())?;
    let mut numerator = mantissa.checked_mul(1000).ok_or_else(too_large)?;
    let mut denominator: i128 = 10i128.checked_pow(scale).ok_or_else(too_large)?;
    let binary = |power: u32| 1024i128.pow(power);
    let decimal = |power: u32| 10i128.pow(power);
    match suffix {
        "" => {}
        "m" => denominator = denominator.checked_mul(1000).ok_or_else(too_large)?,
        "k" => numerator = numerator.checked_mul(decimal(3)).ok_or_else(too_large)?,
        "M" => numerator = numerator.checked_mul(decimal(6)).ok_or_else(too_large)?,
        "G" => numerator = numerator.checked_mul(decimal(9)).ok_or_else(too_large)?,
        "T" => numerator = numerator.checked_mul(decimal(12)).ok_or_else(too_large)?,
        "P" => numerator = numerator.checked_mul(decimal(15)).ok_or_else(too_large)?,
        "E" => numerator = numerator.checked_mul(decimal(18)).ok_or_else(too_large)?,
        "Ki" => numerator = numerator.checked_mul(binary(1)).ok_or_else(too_large)?,
        "Mi" => numerator = numerator.checked_mul(binary(2)).ok_or_else(too_large)?,
        "Gi" => numerator = numerator.checked_mul(binary(3)).ok_or_else(too_large)?,
        "Ti" => numerator = numerator.checked_mul(binary(4)).ok_or_else(too_large)?,
        "Pi" => numerator = numerator.checked_mul(binary(5)).ok_or_else(too_large)?,
        "Ei" => numerator = numerator.checked_mul(binary(6)).ok_or_else(too_large)?,
        exp if exp.starts_with(['e', 'E']) => {
            let exponent = &exp[1..];
            let unsigned = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax());
            }
            let power: u32 = unsigned.parse().map_err(|_| too_large())?;
            if power > 24 {
                return Err(too_large());
            }
            if exponent.starts_with('-') {
                denominator = denominator.checked_mul(decimal(power)).ok_or_else(too_large)?;
            } else {
                numerator = numerator.checked_mul(decimal(power)).ok_or_else(too_large)?;
            }
        }
        _ => return Err(syntax()),
    }
    let value = (numerator + denominator - 1) / denominator;
    Ok(if negative { -value } else { value })
}

fn shorten(text: &str) -> String {
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_common_forms() {
        assert_eq!(parse_milli("2"), Ok(2000));
        assert_eq!(parse_milli("500m"), Ok(500));
        assert_eq!(parse_milli("0.5"), Ok(500));
        assert_eq!(parse_milli(".5"), Ok(500));
        assert_eq!(parse_milli("1.5Gi"), Ok(1536 * 1024 * 1024 * 1000));
        assert_eq!(parse_milli("256Mi"), Ok(256 * 1024 * 1024 * 1000));
        assert_eq!(parse_milli("1k"), Ok(1_000_000));
        assert_eq!(parse_milli("1e3"), Ok(1_000_000));
        assert_eq!(parse_milli("1E-3"), Ok(1));
        assert_eq!(parse_milli("+4"), Ok(4000));
        assert_eq!(parse_milli("-1"), Ok(-1000));
    }

    #[test]
    fn rounds_up_below_a_milli() {
        assert_eq!(parse_milli("0.0001"), Ok(1));
        assert_eq!(parse_milli("1u"), Err(QuantityError::Syntax("1u".into())));
    }

    #[test]
    fn refuses_what_kubernetes_refuses() {
        for bad in [
            "", "abc", "1.2.3", "Gi", "1GiB", "1 Gi", "1e", "1e+", "--1", ".", "1x", "0x10",
        ] {
            assert!(
                matches!(parse_milli(bad), Err(QuantityError::Syntax(_))),
                "{bad:?} was accepted"
            );
        }
        assert!(matches!(parse_milli("1e40"), Err(QuantityError::TooLarge(_))));
        assert!(matches!(
            parse_milli(&"9".repeat(31)),
            Err(QuantityError::TooLarge(_))
        ));
    }
}
