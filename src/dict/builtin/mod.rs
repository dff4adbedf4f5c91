//! Tables with no file of their own: their content is in the table name
//! (`inline`, `static`, `fail`), in the process (`internal`, `environ`) or
//! in the system's password database (`unix`).

pub mod environ;
pub mod fail;
pub mod inline;
pub mod internal;
pub mod static_table;
pub mod unix;
