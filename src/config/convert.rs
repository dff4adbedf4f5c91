//! Typed parameter values (int, long, bool, time) with Postfix's accepted
//! syntax and fatal texts.

use super::ConfigError;

/// C strtol(base 10) of a parameter value: (value, end of the number, overflow).
fn strtol(s: &str) -> (i64, usize, bool) {
    let c = crate::strtol::strtol(s.as_bytes());
    (c.value, c.end, c.overflow)
}

/// Integer parameter (C int range), as get_mail_conf_int() converts it.
pub(crate) fn parse_int(name: &str, value: &str) -> Result<i32, ConfigError> {
    let (v, end, overflow) = strtol(value);
    match i32::try_from(v) {
        Ok(n) if !value.is_empty() && end == value.len() && !overflow => Ok(n),
        _ => Err(ConfigError::Invalid(format!("bad numerical configuration: {name} = {value}"))),
    }
}

/// Long parameter, as get_mail_conf_long() converts it.
pub(crate) fn parse_long(name: &str, value: &str) -> Result<i64, ConfigError> {
    let (v, end, overflow) = strtol(value);
    if value.is_empty() || end != value.len() || overflow {
        return Err(ConfigError::Invalid(format!("bad numerical configuration: {name} = {value}")));
    }
    Ok(v)
}

/// Boolean parameter: yes/no, case-insensitive.
pub(crate) fn parse_bool(name: &str, value: &str) -> Result<bool, ConfigError> {
    if value.eq_ignore_ascii_case("yes") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("no") {
        Ok(false)
    } else {
        Err(ConfigError::Invalid(format!("bad boolean configuration: {name} = {value}")))
    }
}

/// Postfix's conv_time(): number plus optional unit (s, m, h, d, w); only
/// the first character after the number is looked at, as in Postfix.
pub(crate) fn conv_time(value: &str, def_unit: char) -> Option<u32> {
    let (v, end, overflow) = strtol(value);
    if value.is_empty() || overflow || v < 0 || v > i64::from(i32::MAX) {
        return None;
    }
    let unit = value[end..].chars().next().unwrap_or(def_unit);
    let mult: i64 = match unit {
        'w' => 7 * 86400,
        'd' => 86400,
        'h' => 3600,
        'm' => 60,
        's' => 1,
        _ => return None,
    };
    // Postfix refuses products that would not stay below INT_MAX.
    if mult > 1 && v >= i64::from(i32::MAX) / mult {
        return None;
    }
    u32::try_from(v * mult).ok()
}

/// Time parameter in seconds, with Postfix's fatal text on bad input.
pub(crate) fn parse_time(name: &str, value: &str, def_unit: char) -> Result<u32, ConfigError> {
    conv_time(value, def_unit)
        .ok_or_else(|| ConfigError::Invalid(format!("parameter {name}: bad time value or unit: {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints() {
        assert_eq!(parse_int("n", "42").unwrap(), 42);
        assert_eq!(parse_int("n", " -7").unwrap(), -7);
        assert_eq!(parse_int("n", "+7").unwrap(), 7);
        for bad in ["", "x", "1x", "1 ", " ", "99999999999"] {
            assert_eq!(
                parse_int("max_use", bad).unwrap_err().to_string(),
                format!("bad numerical configuration: max_use = {bad}")
            );
        }
        assert_eq!(parse_long("l", "99999999999").unwrap(), 99_999_999_999);
    }

    #[test]
    fn bools() {
        assert!(parse_bool("b", "YES").unwrap());
        assert!(!parse_bool("b", "No").unwrap());
        assert_eq!(
            parse_bool("soft_bounce", "true").unwrap_err().to_string(),
            "bad boolean configuration: soft_bounce = true"
        );
    }

    #[test]
    fn times() {
        assert_eq!(conv_time("100", 's'), Some(100));
        assert_eq!(conv_time("100s", 's'), Some(100));
        assert_eq!(conv_time("2m", 's'), Some(120));
        assert_eq!(conv_time("2h", 's'), Some(7200));
        assert_eq!(conv_time("1d", 's'), Some(86400));
        assert_eq!(conv_time("1w", 's'), Some(604800));
        assert_eq!(conv_time("5", 'h'), Some(18000));
        assert_eq!(conv_time("10ss", 's'), Some(10)); // only the first unit char counts
        assert_eq!(conv_time("-1s", 's'), None);
        assert_eq!(conv_time("1x", 's'), None);
        assert_eq!(conv_time("", 's'), None);
        assert_eq!(conv_time("999999999w", 's'), None);
        assert_eq!(
            parse_time("max_idle", "5y", 's').unwrap_err().to_string(),
            "parameter max_idle: bad time value or unit: 5y"
        );
    }
}
