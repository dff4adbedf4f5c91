//! Tables in indexed files that postmap builds (`hash`, `btree`: Berkeley DB;
//! `lmdb`; `cdb`) and `texthash`, with what they share: file locks as
//! Postfix takes them ([`filelock`]) and the check that a file changed since
//! it was opened ([`verified`]).

pub mod cdb;
pub mod db;
pub mod filelock;
pub mod hash_pages;
pub mod lmdb;
pub mod texthash;
pub mod verified;
