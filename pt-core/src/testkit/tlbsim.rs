//! A simulated TLB: it caches every translation a test reads through it and forgets one only
//! when the code under test issued an invalidation that covers it.
//!
//! [`TlbSim::lookup`] answers from the cache when it holds a leaf covering the address, else it
//! walks the tables ([`translate`]) and caches the leaf it found (input range, output address,
//! attributes, raw descriptor). [`TlbSim::sync`] reads the TLB invalidations recorded on this
//! thread since the previous sync ([`log::tlb_history_from`](super::log::tlb_history_from)) and
//! drops what each covers:
//!
//! - `S2Ipa` / `HypVa`: the cached leaves of the regime whose range contains the address;
//! - `S2Vmid` / `HypAll`: every cached leaf of the regime;
//! - `S2CombinedForVmid` (stage-1 and combined entries only): nothing, as the stage-2-only
//!   entries simulated here may survive it.
//!
//! [`TlbSim::check`] then compares every cached leaf with a fresh walk: a difference is a
//! translation the hardware could still use after the operation returned, i.e. a missing or
//! misdirected invalidation (a permission change counts: a writable entry cached across a
//! write-protect is exactly the stale-TLB bug dirty logging must not have).
//!
//! Stage-2 regimes are told apart by the VMID in bits \[63:48\] of the VTTBR, as the hardware
//! tags its entries.

use crate::addr::PhysAddr;
use crate::geometry::entry_size;
use crate::machine::{PageAllocator, TlbOp};
use crate::ops::translate;
use crate::tlb::TlbScope;
use crate::walk::Walker;
use crate::{Format, PAGE_SIZE};
use std::format;
use std::string::String;
use std::vec::Vec;

/// One cached leaf translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachedLeaf<A> {
    /// First input address of the leaf.
    pub leaf_ia: u64,
    /// Level of the leaf (its size).
    pub level: u8,
    /// Output address of `leaf_ia`.
    pub oa: PhysAddr,
    /// Attributes of the leaf.
    pub attrs: A,
    /// Raw descriptor as walked.
    pub desc: u64,
    /// The address whose lookup filled the entry.
    pub probe: u64,
}

impl<A> CachedLeaf<A> {
    /// Bytes the leaf maps.
    pub fn size(&self) -> u64 {
        entry_size(self.level)
    }

    /// True when the leaf maps `ia`.
    pub fn contains(&self, ia: u64) -> bool {
        ia >= self.leaf_ia && ia - self.leaf_ia < self.size()
    }
}

/// A simulated TLB of one translation regime; see the module documentation.
pub struct TlbSim<F: Format> {
    scope: TlbScope,
    entries: Vec<CachedLeaf<F::Attrs>>,
    capacity: usize,
    cursor: usize,
    hits: u64,
    misses: u64,
    invalidated: u64,
}

fn vmid(vttbr: u64) -> u64 {
    vttbr >> 48
}

impl<F: Format> TlbSim<F> {
    /// An empty TLB for `scope` holding at most `capacity` leaves (the oldest is evicted
    /// first, which a real TLB may always do). It sees the invalidations recorded from now on.
    pub fn new(scope: TlbScope, capacity: usize) -> Self {
        assert!(capacity > 0);
        Self {
            scope,
            entries: Vec::new(),
            capacity,
            cursor: super::log::tlb_history_len(),
            hits: 0,
            misses: 0,
            invalidated: 0,
        }
    }

    /// The cached leaves, oldest first.
    pub fn entries(&self) -> &[CachedLeaf<F::Attrs>] {
        &self.entries
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Lookups that walked the tables.
    pub fn misses(&self) -> u64 {
        self.misses
    }

    /// Cached leaves dropped by invalidations so far.
    pub fn invalidated(&self) -> u64 {
        self.invalidated
    }

    /// Drops every cached leaf without an invalidation having been recorded: for a test that
    /// replaces the whole tree (a new VM on a new VMID would not see the old entries either).
    pub fn forget_all(&mut self) {
        self.sync();
        self.entries.clear();
    }

    /// Applies the invalidations recorded since the previous sync. Returns how many cached
    /// leaves they dropped.
    pub fn sync(&mut self) -> usize {
        let len = super::log::tlb_history_len();
        assert!(
            len >= self.cursor,
            "the recording was reset under a TlbSim (a new Arena?): invalidations were lost"
        );
        let ops = super::log::tlb_history_from(self.cursor);
        self.cursor = len;
        let before = self.entries.len();
        for op in ops {
            self.apply(op);
        }
        let dropped = before - self.entries.len();
        self.invalidated += dropped as u64;
        dropped
    }

    fn apply(&mut self, op: TlbOp) {
        let by_addr = match (self.scope, op) {
            (TlbScope::Stage2 { vttbr }, TlbOp::S2Ipa { vttbr: v, ipa, .. })
                if vmid(v) == vmid(vttbr) =>
            {
                Some(ipa.0)
            }
            (TlbScope::Stage2 { vttbr }, TlbOp::S2Vmid { vttbr: v }) if vmid(v) == vmid(vttbr) => {
                None
            }
            (TlbScope::Hyp, TlbOp::HypVa { va }) => Some(va.0),
            (TlbScope::Hyp, TlbOp::HypAll) => None,
            _ => return,
        };
        match by_addr {
            Some(a) => self.entries.retain(|e| !e.contains(a)),
            None => self.entries.clear(),
        }
    }

    /// The translation of `ia` as the simulated TLB gives it: `(output address, attributes)`
    /// from a cached leaf covering `ia`, else from a walk of `w`, whose leaf is then cached.
    /// `None` when unmapped (misses are not cached).
    pub fn lookup<P: PageAllocator>(
        &mut self,
        w: &Walker<'_, F, P>,
        ia: u64,
    ) -> Option<(PhysAddr, F::Attrs)> {
        if let Some(e) = self.entries.iter().find(|e| e.contains(ia)) {
            self.hits += 1;
            return Some((PhysAddr(e.oa.0 + (ia - e.leaf_ia)), e.attrs));
        }
        self.misses += 1;
        let t = translate(w, ia)?;
        if self.entries.len() == self.capacity {
            self.entries.remove(0);
        }
        self.entries.push(CachedLeaf {
            leaf_ia: t.leaf_ia,
            level: t.level,
            oa: PhysAddr(t.oa.0 - (ia - t.leaf_ia)),
            attrs: t.attrs,
            desc: t.desc,
            probe: ia & !(PAGE_SIZE - 1),
        });
        Some((t.oa, t.attrs))
    }

    /// Compares every cached leaf with a fresh walk of `w` (at its first and last page and at
    /// the address that filled it). Call after [`sync`](Self::sync): an error describes a
    /// translation the TLB would still give although the tables no longer hold it.
    pub fn check<P: PageAllocator>(&self, w: &Walker<'_, F, P>) -> Result<(), String> {
        for e in &self.entries {
            for ia in [e.leaf_ia, e.leaf_ia + e.size() - PAGE_SIZE, e.probe] {
                let cached = (PhysAddr(e.oa.0 + (ia - e.leaf_ia)), e.attrs);
                let fresh = translate(w, ia).map(|t| (t.oa, t.attrs));
                if fresh != Some(cached) {
                    return Err(format!(
                        "stale TLB entry in {:?}: L{} leaf at {:#x} (desc {:#x}) gives {:#x} -> {:?}, \
                         the tables give {:?}: an invalidation is missing or misdirected",
                        self.scope, e.level, e.leaf_ia, e.desc, ia, cached, fresh
                    ));
                }
            }
        }
        Ok(())
    }

    /// [`sync`](Self::sync), then [`check`](Self::check), panicking with the error.
    pub fn sync_and_check<P: PageAllocator>(&mut self, w: &Walker<'_, F, P>) {
        self.sync();
        if let Err(e) = self.check(w) {
            panic!("{e}");
        }
    }
}
