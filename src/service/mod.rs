//! Request handling: allowlist checks, the table cache, and turning one parsed
//! request into one reply. No socket I/O here: the worker owns the sockets.

pub(crate) mod cache;
pub(crate) mod status;

use crate::config::allowlist::Allowlist;
use crate::config::Params;
use crate::dict::{Cursor, DictError, KeyValue, Mode, Waits};
use crate::protocol::flags::{DUP_REPLACE, RQST_MASK, SYNC_UPDATE};
use crate::protocol::{Op, Outcome, Reply, Request, Status};
use crate::stats::{Stats, TableStats};
use crate::sync::{lock, read, try_read, write, NoWait};
use cache::{Entry, TableCache};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// Which of the two services this process serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `proxymap`: open, lookup, sequence.
    Reader,
    /// `proxywrite`: everything, tables opened read-write and created if missing.
    Writer,
}

impl Role {
    pub fn service_name(self) -> &'static str {
        match self {
            Role::Reader => "proxymap",
            Role::Writer => "proxywrite",
        }
    }

    fn allowlist_param(self) -> &'static str {
        match self {
            Role::Reader => "proxy_read_maps",
            Role::Writer => "proxy_write_maps",
        }
    }

    fn access(self) -> &'static str {
        match self {
            Role::Reader => "read-only",
            Role::Writer => "read-write",
        }
    }
}

/// Where a request is being served: the one thing the request path needs to
/// know to keep an event loop from waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A worker's event loop, with connection threads to hand waiting work
    /// to: nothing here may wait (see [`crate::dict::Waits`]).
    EventLoop,
    /// A connection thread, or a process that serves one client at a time:
    /// waiting stalls no other client.
    MayWait,
}

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Served {
    /// Answered (the reply, if any, is in the output buffer).
    Done,
    /// Not done: it would wait, at [`Place::EventLoop`] (see
    /// [`Service::handle`]). The caller serves it again on a thread.
    WouldBlock,
}

/// Per-connection state: sequence cursors belong to the connection that made
/// them; the reply's key and value buffers are reused across its requests.
#[derive(Default)]
pub struct Session {
    cursors: HashMap<u64, Cursor>,
    key: Vec<u8>,
    value: Vec<u8>,
    /// The table of this connection's last approved request: a client asks
    /// for one table again and again, and this spares each request the
    /// allowlist and the shared cache (whose locks and reference counts all
    /// of the worker's threads would otherwise touch).
    last: Option<LastTable>,
}

struct LastTable {
    /// The table as the request named it (with any `proxy:` prefixes).
    requested: Vec<u8>,
    entry: Arc<Entry>,
}

impl LastTable {
    /// Does this request name the same table instance, still in the cache?
    fn is(&self, table: &[u8], instance_flags: u32) -> bool {
        self.requested == table
            && self.entry.instance_flags == instance_flags
            && !self.entry.retired.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// One service instance: what a worker needs to answer requests. Shared by
/// all of a worker's connection threads (`&self` throughout): each open
/// table has a lock of its own, and the table cache's lock is held only to
/// find or add an entry (tables are opened without it).
pub struct Service {
    role: Role,
    /// Postfix's name of the client stream in log lines: `<service> socket`.
    stream: String,
    allowlist: Allowlist,
    params: Arc<Params>,
    tables: RwLock<TableCache>,
    /// Tables being opened, by instance key: one thread opens a table while
    /// the others that want it wait (64 connection threads opening one
    /// 5,000-rule table at once took 1.4 GB and seconds of CPU).
    opening: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// This process's slot in the service's statistics file (None: off).
    stats: Option<Stats>,
}

impl Service {
    pub fn new(role: Role, params: Arc<Params>, allowlist: Allowlist) -> Self {
        let mode = match role {
            Role::Reader => Mode::ReadOnly,
            Role::Writer => Mode::ReadWrite,
        };
        Service {
            role,
            stream: format!("{} socket", role.service_name()),
            allowlist,
            params,
            tables: RwLock::new(TableCache::new(mode)),
            opening: Mutex::new(HashMap::new()),
            stats: None,
        }
    }

    /// Count requests, connections and tables in this slot from now on.
    pub fn set_stats(&mut self, stats: Option<Stats>) {
        self.stats = stats;
    }

    pub fn stats(&self) -> Option<&Stats> {
        self.stats.as_ref()
    }

    /// One answered request; `table` None: refused before naming an
    /// approved table.
    #[inline]
    fn count(&self, table: Option<TableStats>, op: Option<Op>, status: Status) {
        if let Some(s) = &self.stats {
            s.request(table.unwrap_or_else(|| s.unapproved()), op, status);
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The stream name in `... from <stream>` warnings (`proxymap socket`).
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Postfix names a `-S` session's stream `unknown_stream`.
    pub fn set_stream(&mut self, name: &str) {
        self.stream = name.to_owned();
    }

    /// Put an open table in the cache, as if a request had opened it.
    #[cfg(test)]
    pub(crate) fn insert_table(&self, name: &str, instance_flags: u32, dict: Box<dyn crate::dict::Dict>) {
        write(&self.tables).insert(name, instance_flags, dict, None);
    }

    /// Before taking a new client: the reader drops tables whose files changed.
    pub fn before_accept(&self) {
        if self.role == Role::Reader {
            let mut tables = write(&self.tables);
            tables.drop_changed();
            if let Some(s) = &self.stats {
                s.tables_open(tables.len());
            }
        }
    }

    /// Answer one parse outcome, appending the reply (if any) to `out`.
    ///
    /// At [`Place::EventLoop`] only lookups and opens of tables already open
    /// run, and a lookup only as far as its table's [`Waits`] allows: a
    /// table that may always wait is not called at all, one that may wait
    /// on contention is called under `sync::NoWait` and gives up rather than
    /// wait. Anything else (opening a table, update, delete, sequence, a
    /// request with a warning to log) is left undone: [`Served::WouldBlock`],
    /// with nothing logged or written, and the caller serves it on a thread.
    pub fn handle(&self, outcome: &Outcome<'_>, session: &mut Session, out: &mut Vec<u8>, place: Place) -> Served {
        match *outcome {
            Outcome::Ignored(w) => log::warn!("{}", w.display(&self.stream)),
            Outcome::Bad { op, dialect, warning } => {
                if let Some(w) = warning {
                    log::warn!("{}", w.display(&self.stream));
                }
                Reply::status(op, dialect, Status::Bad).encode(out);
                self.count(None, op, Status::Bad);
            }
            Outcome::Request { req, warning } => {
                if place == Place::EventLoop && (warning.is_some() || !matches!(req.op, Op::Open | Op::Lookup)) {
                    return Served::WouldBlock;
                }
                if let Some(w) = warning {
                    log::warn!("{}", w.display(&self.stream));
                }
                return self.serve(&req, session, out, place);
            }
        }
        Served::Done
    }

    fn serve(&self, req: &Request<'_>, session: &mut Session, out: &mut Vec<u8>, place: Place) -> Served {
        let mut reply = Reply::status(Some(req.op), req.dialect, Status::Bad);
        if matches!(req.op, Op::Update | Op::Delete) && self.role == Role::Reader {
            log::warn!(
                "refusing {} {} request on non-proxywrite service",
                String::from_utf8_lossy(req.table),
                req.op.as_str()
            );
            reply.status = Status::Deny;
            reply.encode(out);
            self.count(None, Some(req.op), Status::Deny);
            return Served::Done;
        }
        // Taken out of the session while the request runs, so that the
        // session's buffers can be borrowed beside it.
        if let Some(last) = session.last.as_ref().filter(|l| l.entry.reopens) {
            // A stand-in whose open is due again: its table may open now.
            if try_read(&last.entry.dict).is_some_and(|d| d.changed()) {
                if place == Place::EventLoop {
                    return Served::WouldBlock;
                }
                write(&self.tables).forget(&last.entry);
            }
        }
        let last = match session.last.take() {
            Some(last) if last.is(req.table, req.instance_flags) => last,
            recycled => {
                let name = match self.approve(req.table) {
                    Ok(name) => name,
                    Err(status) => {
                        reply.status = status;
                        reply.encode(out);
                        self.count(None, Some(req.op), status);
                        return Served::Done;
                    }
                };
                let Some(entry) = self.table(name, req.instance_flags, place) else { return Served::WouldBlock };
                let mut requested = recycled.map(|l| l.requested).unwrap_or_default();
                requested.clear();
                requested.extend_from_slice(req.table);
                LastTable { requested, entry }
            }
        };
        let served = self.run(req, &last.entry, session, out, place);
        session.last = Some(last);
        served
    }

    /// Run an approved request on its open table.
    fn run(&self, req: &Request<'_>, entry: &Entry, session: &mut Session, out: &mut Vec<u8>, place: Place) -> Served {
        let mut reply = Reply::status(Some(req.op), req.dialect, Status::Bad);
        // The instance's own bits plus this request's bits: per-request state is
        // passed down, never left behind in the shared table.
        let mut flags = (entry.open_flags & !RQST_MASK) | (req.flags & RQST_MASK);
        // One clock reading pair per lookup, only while counting.
        let timed = entry.stats.is_some() && req.op == Op::Lookup;
        let started = if timed { crate::clock::now_ns() } else { 0 };
        let result: Result<Status, DictError> = match req.op {
            Op::Open => {
                reply.flags = entry.open_flags;
                Ok(Status::Ok)
            }
            Op::Lookup => lookup(entry, place, req.key, flags, &mut session.value).map(status::of_bool),
            Op::Update => {
                flags |= SYNC_UPDATE | DUP_REPLACE;
                write(&entry.dict).update(req.key, req.value, flags).map(status::of_bool)
            }
            Op::Delete => {
                flags |= SYNC_UPDATE;
                write(&entry.dict).delete(req.key, flags).map(status::of_bool)
            }
            Op::Sequence => {
                let first = req.function == crate::protocol::request::SEQ_FIRST;
                sequence(entry, session, first, flags).map(|found| match found {
                    Some((k, v)) => {
                        (session.key, session.value) = (k, v);
                        Status::Ok
                    }
                    None => Status::NoKey,
                })
            }
        };
        let took = if timed { crate::clock::since(crate::clock::now_ns(), started) } else { 0 };
        if req.op != Op::Open {
            reply.flags = flags;
        }
        reply.status = match result {
            Ok(s) => s,
            Err(DictError::WouldBlock) if place == Place::EventLoop => return Served::WouldBlock,
            Err(e) => {
                if let DictError::Unsupported(op) = e {
                    log::warn!("table {}: {} operation is not supported", entry.name, op);
                }
                status::of_error(&e)
            }
        };
        if let (Some(s), Some(t)) = (&self.stats, entry.stats) {
            s.request(t, Some(req.op), reply.status);
            if timed {
                s.latency(t, took);
            }
        }
        if req.op == Op::Lookup && reply.status == Status::Ok {
            reply.value = session.value.as_slice();
        }
        if req.op == Op::Sequence && reply.status == Status::Ok {
            reply.key = session.key.as_slice();
            reply.value = session.value.as_slice();
        }
        reply.encode(out);
        Served::Done
    }

    /// The open table, opened on first use without holding the cache's lock
    /// (by one thread at a time per table). None at [`Place::EventLoop`]
    /// when it is not open yet: opening may take long (a large pattern
    /// table, a database server).
    fn table(&self, name: &str, instance_flags: u32, place: Place) -> Option<Arc<Entry>> {
        let find = || read(&self.tables).find(name, instance_flags);
        if let Some(e) = find() {
            let due = e.reopens && try_read(&e.dict).is_some_and(|d| d.changed());
            if !due {
                return Some(e);
            }
            if place == Place::EventLoop {
                return None;
            }
            write(&self.tables).forget(&e);
        }
        if place == Place::EventLoop {
            return None;
        }
        let key = format!("{instance_flags:x}:{name}");
        let gate = Arc::clone(lock(&self.opening).entry(key.clone()).or_default());
        let opened = {
            let _turn = lock(&gate);
            // Opened meanwhile by the thread whose turn came first?
            find().unwrap_or_else(|| {
                let mode = read(&self.tables).mode();
                let dict = cache::open(name, mode, instance_flags, &self.params);
                let counted = self.stats.as_ref().map(|s| s.table(name));
                let mut tables = write(&self.tables);
                let entry = tables.insert(name, instance_flags, dict, counted);
                if let Some(s) = &self.stats {
                    s.tables_open(tables.len());
                }
                entry
            })
        };
        lock(&self.opening).remove(&key);
        Some(opened)
    }

    /// Strip `proxy:` prefixes and check the allowlist, as Postfix's
    /// proxy_map_find: no colon → BAD (silently), not listed → DENY with two warnings.
    fn approve<'a>(&self, table: &'a [u8]) -> Result<&'a str, Status> {
        let mut t = table;
        while let Some(rest) = t.strip_prefix(b"proxy:") {
            t = rest;
        }
        if !t.contains(&b':') {
            return Err(Status::Bad);
        }
        match std::str::from_utf8(t) {
            Ok(name) if self.allowlist.contains(name) => Ok(name),
            _ => {
                let name = String::from_utf8_lossy(t);
                log::warn!("request for unapproved table: \"{name}\"");
                log::warn!(
                    "to approve this table for {} access, list proxy:{name} in main.cf:{}",
                    self.role.access(),
                    self.role.allowlist_param()
                );
                Err(Status::Deny)
            }
        }
    }
}

/// A lookup, at `place` as far as the table's [`Waits`] allows.
/// [`DictError::WouldBlock`]: not done, it would have waited.
fn lookup(entry: &Entry, place: Place, key: &[u8], flags: u32, out: &mut Vec<u8>) -> Result<bool, DictError> {
    if place == Place::MayWait {
        return read(&entry.dict).lookup(key, flags, out);
    }
    // The table's own lock: an update on a thread may hold it.
    let try_dict = || try_read(&entry.dict).ok_or(DictError::WouldBlock);
    match entry.waits {
        Waits::Never => try_dict()?.lookup(key, flags, out),
        Waits::OnContention => {
            let _no_wait = NoWait::begin();
            try_dict()?.lookup(key, flags, out)
        }
        Waits::Always => Err(DictError::WouldBlock),
    }
}

fn sequence(entry: &Entry, session: &mut Session, first: bool, flags: u32) -> Result<Option<KeyValue>, DictError> {
    let mut cursor = session.cursors.remove(&entry.id);
    let r = write(&entry.dict).sequence(&mut cursor, first, flags);
    if let Some(c) = cursor {
        session.cursors.insert(entry.id, c);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dict::testutil::TempFile;
    use crate::protocol::attr::Writer;
    use crate::protocol::{self, Parse};

    fn lookup(svc: &Service, session: &mut Session, table: &str, key: &str) -> Vec<u8> {
        let mut out = Vec::new();
        assert_eq!(lookup_at(svc, session, table, key, Place::MayWait, &mut out), Served::Done);
        out
    }

    fn lookup_at(svc: &Service, session: &mut Session, table: &str, key: &str, at: Place, out: &mut Vec<u8>) -> Served {
        let mut req = Vec::new();
        Writer::new(&mut req)
            .str("request", b"lookup")
            .str("table", table.as_bytes())
            .int("flags", 16448)
            .str("key", key.as_bytes())
            .end();
        let Parse::Done { outcome, .. } = protocol::parse(&req) else { panic!("incomplete request") };
        svc.handle(&outcome, session, out, at)
    }

    /// A table that records how it was called and, under NoWait, gives up
    /// as a table waiting on contention does.
    struct Probe {
        waits: Waits,
        calls: Arc<std::sync::Mutex<Vec<bool>>>,
    }

    impl crate::dict::Dict for Probe {
        fn flags(&self) -> u32 {
            0
        }
        fn waits(&self) -> Waits {
            self.waits
        }
        fn lookup(&self, _: &[u8], _: u32, out: &mut Vec<u8>) -> crate::dict::DictResult<bool> {
            let no_wait = crate::sync::no_wait();
            lock(&self.calls).push(no_wait);
            if no_wait {
                return Err(DictError::WouldBlock);
            }
            out.clear();
            out.extend_from_slice(b"v");
            Ok(true)
        }
    }

    /// The rule that keeps an event loop from waiting, for each kind of
    /// table: where its lookup runs is decided by what it declared, not by
    /// the table checking a flag.
    #[test]
    fn where_a_lookup_runs_follows_what_its_table_declares() {
        let main_cf = "proxy_read_maps = proxy:t:Never proxy:t:OnContention proxy:t:Always\n";
        let params = Arc::new(Params::from_text(main_cf, "main.cf", &[]).unwrap());
        let allowlist = crate::config::allowlist::proxy_allowlist(&params, false);
        let svc = Service::new(Role::Reader, params, allowlist);
        for (waits, on_loop) in [
            (Waits::Never, Some(false)),       // called, free to finish
            (Waits::OnContention, Some(true)), // called, told not to wait
            (Waits::Always, None),             // never called on the loop
        ] {
            let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
            let probe = Probe { waits, calls: Arc::clone(&calls) };
            let table = format!("t:{waits:?}");
            let instance_flags = 16448 & crate::protocol::flags::INST_MASK;
            write(&svc.tables).insert(&table, instance_flags, Box::new(probe), None);
            let mut session = Session::default();
            let mut out = Vec::new();
            let served = lookup_at(&svc, &mut session, &table, "k", Place::EventLoop, &mut out);
            let expected = if on_loop == Some(false) { Served::Done } else { Served::WouldBlock };
            assert_eq!(served, expected, "{waits:?} on the loop");
            assert_eq!(lock(&calls).clone(), on_loop.into_iter().collect::<Vec<_>>(), "{waits:?} on the loop");
            if served == Served::WouldBlock {
                assert!(out.is_empty(), "nothing written for a request that moves");
            }
            lock(&calls).clear();
            assert_eq!(lookup(&svc, &mut Session::default(), &table, "k"), reply(0, "v"), "{waits:?} on a thread");
            assert_eq!(lock(&calls).clone(), vec![false], "{waits:?}: a thread may wait");
        }
    }

    fn reply(status: u32, value: &str) -> Vec<u8> {
        let mut r = Vec::new();
        Writer::new(&mut r).int("status", status).str("value", value.as_bytes()).end();
        r
    }

    /// A connection remembers its last table: a changed file must still
    /// reach it, and another table must still pass the allowlist.
    #[test]
    fn a_sessions_remembered_table_follows_reopens_and_the_allowlist() {
        let file = TempFile::new("service", "10.0.0.0/8 A\n");
        let table = format!("cidr:{}", file.name());
        let main_cf = format!("proxy_read_maps = proxy:{table}\n");
        let params = Arc::new(Params::from_text(&main_cf, "main.cf", &[]).unwrap());
        let allowlist = crate::config::allowlist::proxy_allowlist(&params, false);
        let svc = Service::new(Role::Reader, params, allowlist);
        let mut session = Session::default();
        let proxied = format!("proxy:{table}");

        assert_eq!(lookup(&svc, &mut session, &table, "10.1.2.3"), reply(0, "A"));
        // The same table named with a prefix is the same approved table.
        assert_eq!(lookup(&svc, &mut session, &proxied, "10.1.2.3"), reply(0, "A"));
        assert_eq!(lookup(&svc, &mut session, "cidr:/etc/other", "10.1.2.3"), reply(4, ""), "unlisted: DENY");

        // Replaced as postmap and editors do: a new file renamed over it.
        let new = TempFile::new("service", "10.0.0.0/8 B\n");
        std::fs::rename(&new.0, &file.0).unwrap();
        assert_eq!(lookup(&svc, &mut session, &table, "10.1.2.3"), reply(0, "A"), "until the next accept");
        svc.before_accept();
        assert_eq!(lookup(&svc, &mut session, &table, "10.1.2.3"), reply(0, "B"), "reopened");
    }
}
