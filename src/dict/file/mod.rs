//! Tables in indexed files that postmap builds (`hash`, `btree`: Berkeley DB;
//! `lmdb`; `cdb`) and `texthash`, with what they share: file locks as
//! Postfix takes them ([`filelock`]) and the check that a file changed since
//! it was opened ([`verified`]).

pub(crate) mod cdb;
pub(crate) mod db;
pub(crate) mod filelock;
pub(crate) mod hash_pages;
pub(crate) mod lmdb;
pub(crate) mod texthash;
pub(crate) mod verified;
