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
    /// `type:name` → slot in `slots`.
    index: HashMap<String, usize>,
    /// The instances of one name (they differ in instance flags; usually one).
    slots: Vec<Vec<Entry>>,
    next_id: u64,
}

impl TableCache {
    pub fn new(mode: Mode) -> Self {
        TableCache { mode, index: HashMap::new(), slots: Vec::new(), next_id: 1 }
    }

    /// The table `name` (already approved and stripped of `proxy:`), opened on
    /// first use. A table that cannot be opened is replaced by a surrogate that
    /// answers RETRY, after one `error:` line, as Postfix does. No allocation
    /// once the table is open: this runs for every request.
    pub fn get(&mut self, name: &str, instance_flags: u32, params: &Params) -> &mut Entry {
        let slot = match self.index.get(name) {
            Some(&slot) => slot,
            None => {
                self.slots.push(Vec::with_capacity(1));
                self.index.insert(name.to_owned(), self.slots.len() - 1);
                self.slots.len() - 1
            }
        };
        let (mode, next_id) = (self.mode, &mut self.next_id);
        let instances = &mut self.slots[slot];
        let pos = match instances.iter().position(|e| e.instance_flags == instance_flags) {
            Some(pos) => pos,
            None => {
                let dict = registry::open_or_surrogate(name, mode, instance_flags, params);
                let id = *next_id;
                *next_id += 1;
                instances.push(Entry { id, name: name.to_owned(), instance_flags, open_flags: dict.flags(), dict });
                instances.len() - 1
            }
        };
        &mut instances[pos]
    }

    /// Forget tables whose files changed on disk, so that the next request
    /// reopens them (Postfix restarts the whole process instead).
    pub fn drop_changed(&mut self) {
        for instances in &mut self.slots {
            instances.retain(|e| {
                let changed = e.dict.changed();
                if changed {
                    log::info!("table {} has changed -- reopening", e.instance_key());
                }
                !changed
            });
        }
    }

    pub fn len(&self) -> usize {
        self.slots.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
