//! Open tables of one worker, one per (type:name, instance flags), shared by all
//! of its clients and never closed when a client goes away.

use crate::config::Params;
use crate::dict::{Dict, Mode, Waits};
use crate::protocol::flags;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// An open table and the identity it was opened under.
pub(crate) struct Entry {
    /// Never reused, so a connection's cursor cannot outlive a reopened table.
    pub id: u64,
    /// `type:name` without `proxy:`.
    pub name: String,
    pub instance_flags: u32,
    /// Lookups share the table (each table type guards what its lookups
    /// change); updates, deletes and sequence steps have it to themselves.
    pub dict: RwLock<Box<dyn Dict>>,
    /// What the table declared at open: where its lookups may run.
    pub waits: Waits,
    /// Flags of the freshly opened instance: what every open reply reports.
    pub open_flags: u32,
    /// The stand-in of a table whose open is tried again (`Dict::reopens`).
    pub reopens: bool,
    /// Set when the cache forgot this entry (its file changed): sessions
    /// that remember it look it up again.
    pub retired: AtomicBool,
    /// The table's entry in this process's statistics (None: not counted).
    pub stats: Option<crate::stats::TableStats>,
}

impl Entry {
    /// Postfix's instance key, `type:name:<dict_flags_str>`, used in log lines.
    pub(crate) fn instance_key(&self) -> String {
        format!("{}:{}", self.name, flags::flags_str(self.instance_flags))
    }
}

pub(crate) struct TableCache {
    mode: Mode,
    /// `type:name` → slot in `slots`.
    index: HashMap<String, usize>,
    /// The instances of one name (they differ in instance flags; usually one).
    slots: Vec<Vec<Arc<Entry>>>,
    next_id: u64,
}

impl TableCache {
    pub(crate) fn new(mode: Mode) -> Self {
        TableCache { mode, index: HashMap::new(), slots: Vec::new(), next_id: 1 }
    }

    /// The open instance of `name` (already approved and stripped of
    /// `proxy:`) with these instance flags. No allocation: this runs for
    /// every request.
    pub(crate) fn find(&self, name: &str, instance_flags: u32) -> Option<Arc<Entry>> {
        let &slot = self.index.get(name)?;
        self.slots[slot].iter().find(|e| e.instance_flags == instance_flags).map(Arc::clone)
    }

    /// Add a table opened by [`open`] (outside the cache's lock: an open may
    /// wait for a file lock or a server). When another thread added the same
    /// instance meanwhile, that one is kept and `dict` is dropped.
    pub(crate) fn insert(
        &mut self,
        name: &str,
        instance_flags: u32,
        dict: Box<dyn Dict>,
        stats: Option<crate::stats::TableStats>,
    ) -> Arc<Entry> {
        if let Some(e) = self.find(name, instance_flags) {
            return e;
        }
        let slot = match self.index.get(name) {
            Some(&slot) => slot,
            None => {
                self.slots.push(Vec::with_capacity(1));
                self.index.insert(name.to_owned(), self.slots.len() - 1);
                self.slots.len() - 1
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        let open_flags = dict.flags();
        let waits = dict.waits();
        let reopens = dict.reopens();
        let entry = Arc::new(Entry {
            id,
            name: name.to_owned(),
            instance_flags,
            open_flags,
            waits,
            reopens,
            dict: RwLock::new(dict),
            retired: AtomicBool::new(false),
            stats,
        });
        self.slots[slot].push(Arc::clone(&entry));
        entry
    }

    /// Open tables (instances).
    pub(crate) fn len(&self) -> usize {
        self.slots.iter().map(Vec::len).sum()
    }

    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// Forget `entry` (a stand-in whose open is due again), so that the
    /// next request opens its table.
    pub(crate) fn forget(&mut self, entry: &Entry) {
        for instances in &mut self.slots {
            instances.retain(|e| e.id != entry.id);
        }
        entry.retired.store(true, Ordering::Relaxed);
    }

    /// Forget tables whose files changed on disk, so that the next request
    /// reopens them (Postfix restarts the whole process instead).
    pub(crate) fn drop_changed(&mut self) {
        for instances in &mut self.slots {
            instances.retain(|e| {
                // A table in use (a connection thread may wait in it for a
                // lock) is checked at a later accept, not waited for here.
                let changed = crate::sync::try_read(&e.dict).is_some_and(|d| d.changed());
                if changed {
                    log::info!("table {} has changed -- reopening", e.instance_key());
                    e.retired.store(true, Ordering::Relaxed);
                }
                !changed
            });
        }
    }
}

/// Open `name` for the cache: a table that cannot be opened becomes a
/// surrogate that answers RETRY, after one `error:` line, as in Postfix.
pub(crate) fn open(name: &str, mode: Mode, instance_flags: u32, params: &Params) -> Box<dyn Dict> {
    crate::dict::registry::open_or_surrogate(name, mode, instance_flags, params)
}
