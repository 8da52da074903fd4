//! ICCIDs: 1NCE addresses a SIM by its 19-digit ICCID (without the Luhn check digit); its SIM
//! objects also carry the 20-digit form (`iccid_with_luhn`). Devices may be configured with
//! either.

/// The Luhn check digit of `digits`.
pub fn luhn_digit(digits: &str) -> u32 {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// The 19-digit ICCID the API addresses, from a configured one of 19 or 20 digits (the schema
/// has checked the digits and the length). A 20th digit must be the check digit.
pub fn normalise(configured: &str) -> Result<String, String> {
    match configured.len() {
        19 => Ok(configured.to_owned()),
        20 => {
            let (base, check) = configured.split_at(19);
            let want = luhn_digit(base);
            if check.parse::<u32>().ok() == Some(want) {
                Ok(base.to_owned())
            } else {
                Err(format!(
                    "the ICCID {configured} has 20 digits but its last one is not the check digit \
                     of the first 19 (expected {want}); configure the 19-digit ICCID or the \
                     20-digit one as printed on the SIM"
                ))
            }
        }
        n => Err(format!("an ICCID has 19 or 20 digits, not {n}")),
    }
}

/// The 20-digit form.
pub fn with_check_digit(iccid19: &str) -> String {
    format!("{iccid19}{}", luhn_digit(iccid19))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_address_the_same_sim() {
        assert_eq!(luhn_digit("8988303000123456789"), 4);
        assert_eq!(
            normalise("89883030001234567894").unwrap(),
            "8988303000123456789"
        );
        assert_eq!(
            normalise("8988303000123456789").unwrap(),
            "8988303000123456789"
        );
        assert!(
            normalise("89883030001234567890")
                .unwrap_err()
                .contains("expected 4")
        );
        assert_eq!(
            with_check_digit("8988303000123456789"),
            "89883030001234567894"
        );
        assert_eq!(luhn_digit("7992739871"), 3);
    }
}
