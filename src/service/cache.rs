//! Open tables of one worker, one per (type:name, instance flags), shared by all
//! of its clients and never closed when a client goes away.

use crate::config::Params;
use crate::dict::{registry, Dict, Mode};
use crate::protocol::flags;
use std::collections::HashMap;

/// An open table and the identity it was opened under.
pub struct Entry {
    /// Never reused, so a connection's cursor cannot outlive a reopened table.
    pub id: u64,
    /// `type:name` without `proxy:`.
    pub name: String,
    pub instance_flags: u32,
    pub dict: Box<dyn Dict>,
    /// Flags of the freshly opened instance: what every open reply reports.
    pub open_flags: u32,
}

impl Entry {
    /// Postfix's instance key, `type:name:<dict_flags_str>`, used in log lines.
    pub fn instance_key(&self) -> String {
        format!("{}:{}", self.name, flags::flags_str(self.instance_flags))
    }
}

pub struct TableCache {
    mode: Mode,
    entries: HashMap<(String, u32), Entry>,
    next_id: u64,
}

impl TableCache {
    pub fn new(mode: Mode) -> Self {
        TableCache { mode, entries: HashMap::new(), next_id: 1 }
    }

    /// The table `name` (already approved and stripped of `proxy:`), opened on
    /// first use. A table that cannot be opened is replaced by a surrogate that
    /// answers RETRY, after one `error:` line, as Postfix does.
    pub fn get(&mut self, name: &str, instance_flags: u32, params: &Params) -> &mut Entry {
        let key = (name.to_owned(), instance_flags);
        let next_id = &mut self.next_id;
        let mode = self.mode;
        self.entries.entry(key).or_insert_with(|| {
            let dict = registry::open_or_surrogate(name, mode, instance_flags, params);
            let id = *next_id;
            *next_id += 1;
            Entry { id, name: name.to_owned(), instance_flags, open_flags: dict.flags(), dict }
        })
    }

    /// Forget tables whose files changed on disk, so that the next request
    /// reopens them (Postfix restarts the whole process instead).
    pub fn drop_changed(&mut self) {
        self.entries.retain(|_, e| {
            let changed = e.dict.changed();
            if changed {
                log::info!("table {} has changed -- reopening", e.instance_key());
            }
            !changed
        });
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
