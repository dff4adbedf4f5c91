//! Rule files matched in order, first match wins: `regexp` and `pcre`
//! (one rule engine, [`pattern_rules`], two syntaxes) and `cidr`.

pub mod cidr;
pub mod pattern_rules;
pub mod pcre;
pub mod regexp;
