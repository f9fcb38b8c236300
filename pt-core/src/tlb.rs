//! Batched TLB invalidation: the plan of what to invalidate after a set of descriptor changes.
//!
//! An operation reports every valid entry it breaks or changes; [`TlbBatch::sync`] then issues
//! the invalidations and barriers once for the whole batch: `DSB ISHST` (make the stores visible
//! to the walkers), one by-address invalidation per changed leaf, `DSB ISH`, and for stage 2
//! the combined stage-1+2 invalidation of the VMID, then `ISB`. Above
//! [`TLB_BATCH_THRESHOLD`] entries, or when a table with live entries below it was cut off, or
//! on ARMv7 (no stage-2 invalidation by IPA), the batch becomes one whole-VMID (or whole-hyp)
//! invalidation. Making an invalid entry valid needs no invalidation and is never reported.

use crate::addr::{Ipa, VirtAddr};
use crate::machine::{Barrier, Maintenance, TlbOp};
use arrayvec::ArrayVec;

/// Which translation regime a batch invalidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlbScope {
    /// The stage-2 (and combined) entries of one VM, identified by its VTTBR value.
    Stage2 {
        /// VTTBR of the VM (VMID in bits \[55:48\]).
        vttbr: u64,
    },
    /// The hypervisor's own stage-1 entries.
    Hyp,
}

/// A batch of pending TLB invalidations for one regime.
#[must_use = "pending invalidations must be issued with sync()"]
pub struct TlbBatch<'m, M: Maintenance> {
    maint: &'m M,
    scope: TlbScope,
    pending: ArrayVec<(u64, u8), TLB_BATCH_THRESHOLD>,
    all: bool,
}

/// Largest number of by-address invalidations in one batch; beyond it, one whole-regime
/// invalidation is issued instead.
pub const TLB_BATCH_THRESHOLD: usize = 32;

impl<'m, M: Maintenance> TlbBatch<'m, M> {
    /// An empty batch for `scope`.
    pub fn new(maint: &'m M, scope: TlbScope) -> Self {
        Self {
            maint,
            scope,
            pending: ArrayVec::new(),
            all: false,
        }
    }

    /// The maintenance backend.
    pub fn maint(&self) -> &'m M {
        self.maint
    }

    /// The regime this batch invalidates.
    pub fn scope(&self) -> TlbScope {
        self.scope
    }

    /// A valid leaf at `level` covering input address `ia` was broken or changed.
    #[inline]
    pub fn leaf(&mut self, ia: u64, level: u8) {
        if self.all {
            return;
        }
        let by_address = match self.scope {
            TlbScope::Stage2 { .. } => M::S2_BY_IPA,
            TlbScope::Hyp => true,
        };
        if !by_address || self.pending.try_push((ia, level)).is_err() {
            self.all = true;
            self.pending.clear();
        }
    }

    /// A table entry at `level` covering `ia` was cut off. `subtree_live` says whether valid
    /// entries remained below it (their cached translations then need a whole-regime
    /// invalidation; an empty table's walk-cache entry goes with a by-address one).
    #[inline]
    pub fn table(&mut self, ia: u64, level: u8, subtree_live: bool) {
        if subtree_live {
            self.invalidate_all();
        } else {
            self.leaf(ia, level);
        }
    }

    /// Turns the batch into one whole-regime invalidation (`kvm_flush_remote_tlbs`).
    pub fn invalidate_all(&mut self) {
        self.all = true;
        self.pending.clear();
    }

    /// True when the batch has become one whole-regime invalidation: further
    /// [`leaf`](Self::leaf) reports change nothing.
    #[inline]
    pub fn covers_all(&self) -> bool {
        self.all
    }

    /// True when invalidations are waiting for [`sync`](Self::sync).
    pub fn is_pending(&self) -> bool {
        self.all || !self.pending.is_empty()
    }

    /// Issues the pending invalidations and the barriers that complete them. Afterwards every
    /// reported entry is gone from every TLB and walk cache of the inner shareable domain.
    pub fn sync(&mut self) {
        if !self.is_pending() {
            return;
        }
        let m = self.maint;
        m.barrier(Barrier::DsbIshSt);
        match self.scope {
            TlbScope::Stage2 { vttbr } => {
                if self.all {
                    m.tlb(TlbOp::S2Vmid { vttbr });
                    m.barrier(Barrier::DsbIsh);
                } else {
                    for &(ia, level) in &self.pending {
                        m.tlb(TlbOp::S2Ipa {
                            vttbr,
                            ipa: Ipa(ia),
                            level,
                        });
                    }
                    m.barrier(Barrier::DsbIsh);
                    m.tlb(TlbOp::S2CombinedForVmid { vttbr });
                    m.barrier(Barrier::DsbIsh);
                }
            }
            TlbScope::Hyp => {
                if self.all {
                    m.tlb(TlbOp::HypAll);
                } else {
                    for &(ia, _) in &self.pending {
                        m.tlb(TlbOp::HypVa { va: VirtAddr(ia) });
                    }
                }
                m.barrier(Barrier::DsbIsh);
            }
        }
        m.barrier(Barrier::Isb);
        self.all = false;
        self.pending.clear();
    }
}

impl<M: Maintenance> Drop for TlbBatch<'_, M> {
    fn drop(&mut self) {
        // Operations always sync before returning; a batch dropped early (an error path)
        // still must not lose an invalidation.
        self.sync();
    }
}
