//! Rule files matched in order, first match wins: `regexp` and `pcre`
//! (one rule engine, [`pattern_rules`], two syntaxes) and `cidr`.

pub(crate) mod cidr;
pub(crate) mod pattern_rules;
pub(crate) mod pcre;
pub(crate) mod regexp;
