//! The PostgreSQL test server as the integration tests see it
//! (tests/common/pgsql.rs). The pool and the libpq wrapper themselves are
//! tested against such a server by unit tests (src/dict/sql/pgsql_tests.rs),
//! since the crate does not export them.

mod common;

use common::pgsql::{Postgres, DB, USER};

#[test]
fn the_test_server_runs_answers_restarts_and_goes_away() {
    let Some(mut pg) = Postgres::start("pgsql-harness") else { return };
    let dir = pg.socket_dir().to_path_buf();
    assert_eq!(pg.sql("SELECT current_database()"), DB);
    assert_eq!(pg.sql(&format!("SELECT rolname FROM pg_roles WHERE rolname = '{USER}'")), USER);
    pg.sql("CREATE TABLE kv (k text PRIMARY KEY, v text); INSERT INTO kv VALUES ('a', 'b')");
    // Socket under its own name and under the default port's.
    assert!(dir.join(format!(".s.PGSQL.{}", pg.port())).exists());
    assert!(dir.join(".s.PGSQL.5432").exists());
    assert_eq!(pg.backends(DB), 0, "psql's own connection is not counted");
    let old = pg.pid();
    pg.restart();
    assert_ne!(pg.pid(), old);
    assert!(!std::path::Path::new(&format!("/proc/{old}")).exists() || !alive(old));
    assert_eq!(pg.sql("SELECT v FROM kv WHERE k = 'a'"), "b", "data kept across the restart");
    let pid = pg.pid();
    drop(pg);
    assert!(!alive(pid), "the server stopped with the test");
    assert!(!dir.exists(), "its directory removed");
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(") ").next().is_some_and(|rest| !rest.starts_with('Z')))
}
