//! Tables with no file of their own: their content is in the table name
//! (`inline`, `static`, `fail`), in the process (`internal`, `environ`) or
//! in the system's password database (`unix`).

pub(crate) mod environ;
pub(crate) mod fail;
pub(crate) mod inline;
pub(crate) mod internal;
pub(crate) mod static_table;
pub(crate) mod unix;
