use super::*;
use crate::dict::testutil::TempFile;

/// Could another open file description lock the file `kind` right now?
/// (Locks on different descriptions conflict even within a process.)
fn free_for(path: &str, style: Style, kind: Kind) -> bool {
    let probe = lock_for_new_description(path, style);
    let ok = probe.set(Some(kind), false).is_ok();
    if ok {
        probe.set(None, false).expect("unlock");
    }
    ok
}

/// A lock on a description of its own, as another process would have.
fn lock_for_new_description(path: &str, style: Style) -> FileLock {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).expect("open");
    FileLock {
        file: f,
        style,
        dev: 0,
        ino: 0,
        name: path.to_owned(),
        state: RwLock::new(State::default()),
        renewing: AtomicBool::new(false),
        readers: AtomicUsize::new(0),
    }
}

fn lock_for(path: &str, style: Style) -> Arc<FileLock> {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).expect("open");
    FileLock::for_fd(f.as_fd(), style, path).expect("lock")
}

#[test]
fn outside_a_pass_each_access_locks_and_unlocks() {
    for style in [Style::Flock, Style::Fcntl] {
        let t = TempFile::new("filelock-plain", b"x");
        let fl = lock_for(t.name(), style);
        let held = fl.hold(Kind::Shared).expect("hold");
        assert_eq!(held.lease(), None);
        assert!(free_for(t.name(), style, Kind::Shared));
        assert!(!free_for(t.name(), style, Kind::Exclusive), "{style:?}: held");
        drop(held);
        assert!(free_for(t.name(), style, Kind::Exclusive), "{style:?}: released");
    }
}

#[test]
fn a_pass_keeps_one_shared_lock_until_it_ends() {
    for style in [Style::Flock, Style::Fcntl] {
        let t = TempFile::new("filelock-pass", b"x");
        let fl = lock_for(t.name(), style);
        // Instances of the same file share the lock.
        assert!(Arc::ptr_eq(&fl, &lock_for(t.name(), style)));
        let pass = Pass::begin();
        let first = fl.hold(Kind::Shared).expect("hold").lease();
        assert!(first.is_some());
        assert!(!free_for(t.name(), style, Kind::Exclusive), "{style:?}: leased");
        let second = fl.hold(Kind::Shared).expect("hold").lease();
        assert_eq!(first, second, "one lease per pass");
        drop(pass);
        assert!(free_for(t.name(), style, Kind::Exclusive), "{style:?}: pass ended");
        let _pass = Pass::begin();
        let next = fl.hold(Kind::Shared).expect("hold").lease();
        assert!(next.is_some() && next != first, "a new pass, a new lease");
    }
}

#[test]
fn an_exclusive_lock_ends_the_threads_leases_first() {
    for style in [Style::Flock, Style::Fcntl] {
        let (a, b) = (TempFile::new("filelock-a", b"x"), TempFile::new("filelock-b", b"x"));
        let (la, lb) = (lock_for(a.name(), style), lock_for(b.name(), style));
        let _pass = Pass::begin();
        drop(la.hold(Kind::Shared).expect("hold"));
        assert!(!free_for(a.name(), style, Kind::Exclusive));
        let held = lb.hold(Kind::Exclusive).expect("hold");
        assert_eq!(held.lease(), None);
        assert!(free_for(a.name(), style, Kind::Exclusive), "{style:?}: lease on a ended");
        drop(held);
        assert!(free_for(b.name(), style, Kind::Exclusive), "{style:?}: b unlocked after the access");
    }
}

#[test]
fn waiting_for_a_writer_ends_the_threads_leases_first() {
    for style in [Style::Flock, Style::Fcntl] {
        let (a, b) = (TempFile::new("filelock-wa", b"x"), TempFile::new("filelock-wb", b"x"));
        let (la, lb) = (lock_for(a.name(), style), lock_for(b.name(), style));
        // A "writer" holds b exclusively until it sees a free to lock.
        let writer = lock_for_new_description(b.name(), style);
        writer.set(Some(Kind::Exclusive), false).expect("writer lock");
        let a_path = a.name().to_owned();
        let (leased, on_lease) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            // Only once the pass holds its lease on a: a free a before
            // that would release the writer before anybody waited.
            on_lease.recv().expect("lease on a");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !free_for(&a_path, style, Kind::Exclusive) {
                assert!(std::time::Instant::now() < deadline, "lease on a never ended");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            writer.set(None, false).expect("writer unlock");
        });
        let _pass = Pass::begin();
        drop(la.hold(Kind::Shared).expect("hold a"));
        leased.send(()).expect("waiter");
        let held = lb.hold(Kind::Shared).expect("hold b");
        assert_eq!(held.lease(), None, "{style:?}: after waiting, a plain lock");
        drop(held);
        waiter.join().expect("waiter");
    }
}

/// Run `f` on a thread that shares its leases, as connection threads do.
fn sharing<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            share_leases();
            f()
        })
        .join()
        .expect("sharing thread")
    })
}

#[test]
fn shared_leases_serve_reads_side_by_side_and_end_when_idle() {
    for style in [Style::Flock, Style::Fcntl] {
        let t = TempFile::new("filelock-shared", b"x");
        let fl = lock_for(t.name(), style);
        let (first, second) = sharing(|| {
            let a = fl.hold(Kind::Shared).expect("hold a");
            // A second read while the first is under way shares the lease.
            let b = sharing(|| fl.hold(Kind::Shared).expect("hold b").lease());
            (a.lease(), b)
        });
        assert!(first.is_some() && first == second, "{style:?}: one lease for both reads");
        // The last read left a young lease: held until the loop ends it.
        assert!(!free_for(t.name(), style, Kind::Exclusive), "{style:?}: young lease kept");
        assert!(stale_leases_pending());
        std::thread::sleep(LEASE_IDLE);
        end_stale_leases();
        assert!(free_for(t.name(), style, Kind::Exclusive), "{style:?}: idle lease ended by the loop");
        // A read that ends on an old lease ends it itself.
        let third = sharing(|| {
            let held = fl.hold(Kind::Shared).expect("hold");
            std::thread::sleep(LEASE_IDLE);
            held.lease()
        });
        assert!(third.is_some() && third != first, "{style:?}: a new lease");
        assert!(free_for(t.name(), style, Kind::Exclusive), "{style:?}: ended by its last read");
    }
}

#[test]
fn an_exclusive_lock_replaces_a_shared_lease() {
    let t = TempFile::new("filelock-shared-ex", b"x");
    let fl = lock_for(t.name(), Style::Flock);
    sharing(|| drop(fl.hold(Kind::Shared).expect("hold")));
    assert!(!free_for(t.name(), Style::Flock, Kind::Exclusive), "young lease kept");
    let held = fl.hold(Kind::Exclusive).expect("exclusive");
    assert_eq!(held.lease(), None);
    assert!(!free_for(t.name(), Style::Flock, Kind::Shared), "exclusive now");
    drop(held);
    assert!(free_for(t.name(), Style::Flock, Kind::Exclusive), "nothing left after the access");
    end_stale_leases();
}

#[test]
fn the_open_lock_covers_accesses() {
    let t = TempFile::new("filelock-open", b"x");
    let fl = lock_for(t.name(), Style::Flock);
    fl.acquire_persistent().expect("open lock");
    let _pass = Pass::begin();
    let held = fl.hold(Kind::Shared).expect("hold");
    assert_eq!(held.lease(), None, "no lease under the open lock");
    drop(held);
    assert!(!free_for(t.name(), Style::Flock, Kind::Shared), "still exclusive");
    fl.release_persistent();
    assert!(free_for(t.name(), Style::Flock, Kind::Exclusive));
}
