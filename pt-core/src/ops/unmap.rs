//! Unmapping, freeing every table that becomes empty.

use super::free::{free_subtree, free_subtree_reporting};
use super::Error;
use crate::addr::PhysAddr;
use crate::format::{Entry, Format};
use crate::machine::{Maintenance, PageAllocator};
use crate::table::{table_is_empty, Entries};
use crate::tlb::TlbBatch;
use crate::walk::{LeafFlow, TableFlow, Visitor, Walker};
use arrayvec::ArrayVec;

/// What an operation does with a block that the range covers only in part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartialBlock {
    /// Refuse with [`Error::PartialBlock`] before changing anything.
    Refuse,
    /// Apply to the whole block (stage 2: KVM unmaps or write-protects the whole huge entry;
    /// the guest faults the rest back in).
    Whole,
}

/// Read-only check that no block straddles the range.
pub(crate) struct FindPartial;

impl<F: Format, P: PageAllocator> Visitor<F, P> for FindPartial {
    type Error = Error;

    /// A partial block can only sit at an edge of the range: tables the range covers whole
    /// need no look.
    fn table_pre(&mut self, entry: &mut Entries<'_, F, P>) -> Result<TableFlow, Error> {
        Ok(if entry.fully_covered(0) {
            TableFlow::Skip
        } else {
            TableFlow::Descend
        })
    }

    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Error> {
        for k in [0, run.len() - 1] {
            if matches!(run.decode(k), Entry::Leaf { .. }) && !run.fully_covered(k) {
                return Err(Error::PartialBlock { ia: run.ia(k) });
            }
        }
        Ok(LeafFlow::Done)
    }
}

/// Cut-off tables held before one TLB sync frees them all: each sync of a batch that cut
/// off live subtrees is a whole-VMID invalidation, so the list is long.
const DEFER: usize = 64;

/// Removed leaves held before one TLB sync reports them (adjacent leaves with the same
/// attributes and consecutive output addresses coalesce into one).
const PENDING: usize = 16;

/// Receives the leaves an unmap removed, each *after* the TLB invalidation that made it
/// unreachable: the place for cache maintenance of what was mapped (KVM's
/// `kvm_flush_dcache_pte/pmd/pud` in `unmap_stage2_range`, issued after
/// `kvm_tlb_flush_vmid_ipa`, so the guest cannot refill a line once it is cleaned).
pub trait UnmapSink<A> {
    /// Whether leaves are reported at all. The unit sink `()` says false, and then a subtree
    /// the range covers whole is freed without visiting its leaves.
    const REPORTS: bool = true;

    /// The leaf that mapped `[oa, oa + size)` with `attrs` is gone from the tree and from
    /// every TLB. Consecutive leaves with equal attributes may come as one range.
    fn unmapped(&mut self, oa: PhysAddr, size: u64, attrs: A);
}

/// Reports nothing.
impl<A> UnmapSink<A> for () {
    const REPORTS: bool = false;
    fn unmapped(&mut self, _: PhysAddr, _: u64, _: A) {}
}

/// Leaves removed but not yet reported, coalesced.
pub(crate) struct Pending<A> {
    ranges: ArrayVec<(PhysAddr, u64, A), PENDING>,
}

impl<A: Copy + PartialEq> Pending<A> {
    pub(crate) fn new() -> Self {
        Self {
            ranges: ArrayVec::new(),
        }
    }

    /// Adds a removed leaf; false when the list is full and must be drained first.
    pub(crate) fn push(&mut self, oa: PhysAddr, size: u64, attrs: A) -> bool {
        if let Some(last) = self.ranges.last_mut() {
            if last.2 == attrs && last.0 .0.checked_add(last.1) == Some(oa.0) {
                last.1 += size;
                return true;
            }
        }
        self.ranges.try_push((oa, size, attrs)).is_ok()
    }

    /// Hands every held range to `sink`.
    pub(crate) fn drain<S: UnmapSink<A>>(&mut self, sink: &mut S) {
        for (oa, size, attrs) in self.ranges.drain(..) {
            sink.unmapped(oa, size, attrs);
        }
    }
}

struct Unmap<'t, 'm, 's, M: Maintenance, A, S> {
    tlb: &'t mut TlbBatch<'m, M>,
    /// Cut-off tables (table, level, ia) to free once the TLBs no longer refer to them.
    deferred: ArrayVec<(PhysAddr, u8, u64), DEFER>,
    /// Removed leaves to report once the TLBs no longer refer to them.
    pending: Pending<A>,
    sink: &'s mut S,
}

impl<M: Maintenance, A: Copy + PartialEq, S: UnmapSink<A>> Unmap<'_, '_, '_, M, A, S> {
    fn defer<F: Format<Attrs = A>, P: PageAllocator>(
        &mut self,
        w: &Walker<'_, F, P>,
        t: (PhysAddr, u8, u64),
    ) {
        if self.deferred.is_full() {
            self.flush(w);
        }
        self.deferred.push(t);
    }

    fn removed<F: Format<Attrs = A>, P: PageAllocator>(
        &mut self,
        w: &Walker<'_, F, P>,
        oa: PhysAddr,
        size: u64,
        attrs: A,
    ) {
        if !self.pending.push(oa, size, attrs) {
            self.flush(w);
            self.pending.push(oa, size, attrs);
        }
    }

    /// Order: entries cleared -> invalidate -> barrier -> report the leaves -> free the
    /// tables (reporting the leaves of cut-off subtrees on the way).
    fn flush<F: Format<Attrs = A>, P: PageAllocator>(&mut self, w: &Walker<'_, F, P>) {
        self.tlb.sync();
        self.pending.drain(self.sink);
        for (t, level, ia) in self.deferred.drain(..) {
            if S::REPORTS {
                free_subtree_reporting(w, t, level, ia, self.sink);
            } else {
                free_subtree(w, t, level);
            }
        }
    }
}

struct UnmapVisitor<'a, 'w, 't, 'm, 's, F: Format, P: PageAllocator, M: Maintenance, S> {
    w: &'a Walker<'w, F, P>,
    u: Unmap<'t, 'm, 's, M, F::Attrs, S>,
}

impl<F: Format, P: PageAllocator, M: Maintenance, S: UnmapSink<F::Attrs>> Visitor<F, P>
    for UnmapVisitor<'_, '_, '_, '_, '_, F, P, M, S>
{
    type Error = core::convert::Infallible;

    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Self::Error> {
        let level = run.level();
        for k in 0..run.len() {
            let old = run.get(k);
            if F::is_valid(old, level) {
                run.set(k, F::INVALID);
                self.u.tlb.leaf(run.ia(k), level);
                if S::REPORTS {
                    if let Entry::Leaf { oa, attrs } = F::decode(old, level) {
                        self.u.removed(self.w, oa, run.entry_size(), attrs);
                    }
                }
            }
        }
        Ok(LeafFlow::Done)
    }

    fn table_pre(&mut self, entry: &mut Entries<'_, F, P>) -> Result<TableFlow, Self::Error> {
        if !entry.fully_covered(0) {
            return Ok(TableFlow::Descend);
        }
        // The whole subtree goes: cut it off without visiting its leaves now (a reporting
        // sink gets them when the subtree is freed, after the TLB sync).
        if let Entry::Table(child) = entry.decode(0) {
            entry.set(0, F::INVALID);
            self.u.tlb.table(entry.ia(0), entry.level(), true);
            self.u
                .defer(self.w, (child, entry.level() + 1, entry.ia(0)));
        }
        Ok(TableFlow::Skip)
    }

    fn table_post(&mut self, entry: &mut Entries<'_, F, P>) -> Result<(), Self::Error> {
        let level = entry.level();
        if let Entry::Table(child) = entry.decode(0) {
            if table_is_empty::<F, P>(entry.alloc(), child, level + 1) {
                entry.set(0, F::INVALID);
                self.u.tlb.table(entry.ia(0), level, false);
                self.u.defer(self.w, (child, level + 1, entry.ia(0)));
            }
        }
        Ok(())
    }
}

/// Unmaps `[start, start + size)` (`unmap_stage2_range`): clears every leaf, frees every table
/// that becomes empty (a table the range covers whole is cut off in one store and freed
/// without visiting its leaves), and invalidates the TLBs through `tlb`, which is synced before
/// any table is freed and before returning.
pub fn unmap<F: Format, P: PageAllocator, M: Maintenance>(
    w: &Walker<'_, F, P>,
    start: u64,
    size: u64,
    partial: PartialBlock,
    tlb: &mut TlbBatch<'_, M>,
) -> Result<(), Error> {
    unmap_reporting(w, start, size, partial, tlb, &mut ())
}

/// [`unmap`], handing every removed leaf to `sink` once the TLB invalidation that covers it
/// has completed (for the data-cache clean of what was mapped). Leaves of a subtree the range
/// covers whole are reported when the subtree is freed.
pub fn unmap_reporting<F: Format, P: PageAllocator, M: Maintenance, S: UnmapSink<F::Attrs>>(
    w: &Walker<'_, F, P>,
    start: u64,
    size: u64,
    partial: PartialBlock,
    tlb: &mut TlbBatch<'_, M>,
    sink: &mut S,
) -> Result<(), Error> {
    let end = super::check_input(start, size, w.geometry().ia_size())?;
    if partial == PartialBlock::Refuse {
        w.walk(start, end, &mut FindPartial)?;
    }
    let mut v = UnmapVisitor {
        w,
        u: Unmap {
            tlb,
            deferred: ArrayVec::new(),
            pending: Pending::new(),
            sink,
        },
    };
    let Ok(()) = w.walk(start, end, &mut v);
    v.u.flush(w);
    Ok(())
}
