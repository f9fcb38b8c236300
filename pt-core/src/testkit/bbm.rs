//! The break-before-make checker.
//!
//! Fed with every recorded operation of a thread, it flags:
//! - a valid descriptor replaced by a different valid one (other output address, table <-> leaf)
//!   without, in between, an invalid descriptor, a TLB invalidation covering the entry, and a
//!   `DSB ISH` after that invalidation;
//! - a table page freed while the MMU could still reach it: its parent entry must have been
//!   broken and that break invalidated and synchronised (or the parent table itself be
//!   unreachable, or the root retired after a whole-regime invalidation).
//!
//! A by-address invalidation covers a leaf that contains the address and an *empty* table
//! entry (walk caches are indexed by address); a table entry whose subtree still held valid
//! entries when it was cut off needs a whole-VMID (or whole-hyp) invalidation.

use crate::addr::PhysAddr;
use crate::geometry::{entry_size, Stage};
use crate::machine::{Barrier, DescKind, TlbOp, TraceEvent};
use crate::trace::Record;
use std::collections::{HashMap, HashSet};
use std::format;
use std::string::String;
use std::vec::Vec;

#[derive(Clone, Copy, Debug)]
struct Broken {
    stage: Stage,
    ia: u64,
    level: u8,
    /// What the entry held before it was broken.
    was: DescKind,
    /// For a table: whether its subtree held valid entries at the break.
    subtree_live: bool,
    /// Root table of the tree the entry belongs to (stage-2 invalidations name it through
    /// the VTTBR they carry).
    root: PhysAddr,
    invalidated: bool,
    clean: bool,
}

/// Checker state; see the module documentation.
#[derive(Default)]
pub struct Checker {
    /// Broken entries (table page, index) not yet known to be clean. An entry is dropped once
    /// its break is synchronised: a clean break constrains nothing any more, and keeping the
    /// set small keeps every barrier and invalidation cheap to check.
    broken: HashMap<(PhysAddr, usize), Broken>,
    /// Entries currently valid, per table page: table -> index -> kind (so freeing a table
    /// forgets its entries without scanning the others).
    valid: HashMap<PhysAddr, HashMap<usize, DescKind>>,
    /// Number of valid entries per table page (key: table base as traced).
    valid_count: HashMap<PhysAddr, usize>,
    /// Parent entry of each table page.
    parent: HashMap<PhysAddr, (PhysAddr, usize)>,
    /// Table pages made unreachable by a clean break of their parent entry.
    detached: HashSet<PhysAddr>,
    /// Roots retired after a whole-regime invalidation.
    retired: HashSet<PhysAddr>,
    /// Pages that received writes (to recognise roots).
    written: HashSet<PhysAddr>,
    /// Sequence numbers: last write per stage, last clean whole-regime invalidation per stage.
    seq: u64,
    last_write: [u64; 2],
    all_pending: [Option<u64>; 2],
    all_clean: [u64; 2],
    pub(crate) violations: Vec<String>,
}

fn si(stage: Stage) -> usize {
    match stage {
        Stage::Stage1 => 0,
        Stage::Stage2 => 1,
    }
}

fn same_target(a: DescKind, b: DescKind) -> bool {
    a == b
}

impl Checker {
    /// Violations found so far.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// Processes one record.
    pub fn feed(&mut self, r: &Record) {
        self.seq += 1;
        match *r {
            Record::Table(TraceEvent::Write {
                stage,
                table,
                index,
                level,
                ia,
                old_kind,
                new_kind,
                ..
            }) => self.write(stage, table, index, level, ia, old_kind, new_kind),
            Record::Table(TraceEvent::RetireRoot { stage, root }) => {
                if self.all_clean[si(stage)] < self.last_write[si(stage)] {
                    self.violations.push(format!(
                        "root {root:?} retired without a synchronised whole-{stage:?} invalidation after the last write"
                    ));
                }
                self.retired.insert(root);
            }
            Record::Tlb(op) => self.tlb(op),
            Record::Barrier(Barrier::DsbIsh) => {
                for b in self.broken.values_mut() {
                    if b.invalidated && !b.clean {
                        b.clean = true;
                        if let DescKind::Table(child) = b.was {
                            self.detached.insert(child);
                        }
                    }
                }
                self.broken.retain(|_, b| !b.clean);
                for s in 0..2 {
                    if let Some(at) = self.all_pending[s].take() {
                        self.all_clean[s] = at;
                    }
                }
            }
            Record::Free { pa, pages } => {
                for p in 0..pages as u64 {
                    self.free(PhysAddr(pa.0 + p * 4096));
                }
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        stage: Stage,
        table: PhysAddr,
        index: usize,
        level: u8,
        ia: u64,
        old: DescKind,
        new: DescKind,
    ) {
        let key = (table, index);
        self.written.insert(table);
        self.last_write[si(stage)] = self.seq;
        let old_valid = old != DescKind::Invalid;
        let new_valid = new != DescKind::Invalid;
        if old_valid && new_valid && !same_target(old, new) {
            self.violations.push(format!(
                "{stage:?} L{level} entry {index} of {table:?} (ia {ia:#x}): {old:?} -> {new:?} without break-before-make"
            ));
        }
        if !old_valid && new_valid {
            if let Some(b) = self.broken.get(&key) {
                if !b.clean && !same_target(b.was, new) {
                    self.violations.push(format!(
                        "{stage:?} L{level} entry {index} of {table:?} (ia {ia:#x}): {:?} -> invalid -> {new:?} without TLB invalidation and DSB in between",
                        b.was
                    ));
                }
            }
            self.broken.remove(&key);
        }
        if old_valid && !new_valid {
            let root = self.root_of(table);
            let subtree_live = match old {
                DescKind::Table(child) => self.valid_count.get(&child).copied().unwrap_or(0) > 0,
                _ => false,
            };
            self.broken.insert(
                key,
                Broken {
                    stage,
                    ia,
                    level,
                    was: old,
                    subtree_live,
                    root,
                    invalidated: false,
                    clean: false,
                },
            );
        }
        match (old_valid, new_valid) {
            (false, true) => *self.valid_count.entry(table).or_default() += 1,
            (true, false) => {
                let c = self.valid_count.entry(table).or_default();
                *c = c.saturating_sub(1);
            }
            _ => {}
        }
        if new_valid {
            self.valid.entry(table).or_default().insert(index, new);
        } else if let Some(t) = self.valid.get_mut(&table) {
            t.remove(&index);
        }
        if let DescKind::Table(child) = new {
            self.parent.insert(child, key);
            self.detached.remove(&child);
        }
    }

    /// The root of the tree holding table page `page` (the page itself for a root).
    fn root_of(&self, mut page: PhysAddr) -> PhysAddr {
        for _ in 0..8 {
            match self.parent.get(&page) {
                Some(&(t, _)) => page = t,
                None => break,
            }
        }
        page
    }

    /// The tree a stage-2 invalidation is for: the root in its VTTBR's base-address field
    /// (bits [47:1]) when that is a root this checker has seen written; `None` (any tree) for
    /// a VTTBR naming no known root, as tests with made-up VTTBR values use.
    fn s2_target(&self, vttbr: u64) -> Option<PhysAddr> {
        let root = PhysAddr(vttbr & 0x0000_ffff_ffff_fffe);
        (self.written.contains(&root) && !self.parent.contains_key(&root)).then_some(root)
    }

    fn tlb(&mut self, op: TlbOp) {
        let target = match op {
            TlbOp::S2Ipa { vttbr, .. } | TlbOp::S2Vmid { vttbr } => self.s2_target(vttbr),
            _ => None,
        };
        let (stage, addr, all) = match op {
            TlbOp::S2Ipa { ipa, .. } => (Stage::Stage2, ipa.0, false),
            TlbOp::S2Vmid { .. } => (Stage::Stage2, 0, true),
            TlbOp::HypVa { va } => (Stage::Stage1, va.0, false),
            TlbOp::HypAll => (Stage::Stage1, 0, true),
            TlbOp::S2CombinedForVmid { .. } => return,
        };
        if all {
            self.all_pending[si(stage)] = Some(self.seq);
        }
        for b in self.broken.values_mut() {
            if b.stage != stage || b.invalidated || target.is_some_and(|r| r != b.root) {
                continue;
            }
            let inside = addr >= b.ia && addr - b.ia < entry_size(b.level);
            let covers = match b.was {
                _ if all => true,
                DescKind::Table(_) => inside && !b.subtree_live,
                _ => inside,
            };
            if covers {
                b.invalidated = true;
            }
        }
    }

    fn reachable(&self, page: PhysAddr, depth: u32) -> bool {
        if depth > 8 || self.retired.contains(&page) || self.detached.contains(&page) {
            return false;
        }
        match self.parent.get(&page) {
            Some(&(t, i)) => match self.valid.get(&t).and_then(|e| e.get(&i)) {
                Some(DescKind::Table(c)) if *c == page => self.reachable(t, depth + 1),
                // The parent entry was broken (or points elsewhere) without the break being
                // synchronised yet: the walker may still hold it.
                _ => match self.broken.get(&(t, i)) {
                    Some(b) if b.was == DescKind::Table(page) && !b.clean => {
                        self.reachable(t, depth + 1)
                    }
                    _ => false,
                },
            },
            // No parent: a root (reachable until retired) if it was ever written, else a page
            // that never entered a tree.
            None => self.written.contains(&page),
        }
    }

    fn free(&mut self, page: PhysAddr) {
        if self.reachable(page, 0) {
            self.violations.push(format!(
                "table page {page:?} freed while the MMU can still reach it (parent entry not broken, invalidated and synchronised)"
            ));
        }
        self.parent.remove(&page);
        self.detached.remove(&page);
        self.retired.remove(&page);
        self.written.remove(&page);
        self.valid_count.remove(&page);
        self.valid.remove(&page);
        self.broken.retain(|(t, _), _| *t != page);
    }
}
