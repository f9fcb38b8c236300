//! Unmapping, freeing every table that becomes empty.

use super::free::free_subtree;
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

struct Unmap<'t, 'm, M: Maintenance> {
    tlb: &'t mut TlbBatch<'m, M>,
    /// Cut-off tables (table, level, ia) to free once the TLBs no longer refer to them.
    deferred: ArrayVec<(PhysAddr, u8, u64), DEFER>,
}

impl<M: Maintenance> Unmap<'_, '_, M> {
    fn defer<F: Format, P: PageAllocator>(&mut self, w: &Walker<'_, F, P>, t: (PhysAddr, u8, u64)) {
        if self.deferred.is_full() {
            self.flush(w);
        }
        self.deferred.push(t);
    }

    /// Freeing order: entries cleared -> invalidate -> barrier -> free.
    fn flush<F: Format, P: PageAllocator>(&mut self, w: &Walker<'_, F, P>) {
        self.tlb.sync();
        for (t, level, ia) in self.deferred.drain(..) {
            free_subtree(w, t, level, ia);
        }
    }
}

struct UnmapVisitor<'a, 'w, 't, 'm, F: Format, P: PageAllocator, M: Maintenance> {
    w: &'a Walker<'w, F, P>,
    u: Unmap<'t, 'm, M>,
}

impl<F: Format, P: PageAllocator, M: Maintenance> Visitor<F, P>
    for UnmapVisitor<'_, '_, '_, '_, F, P, M>
{
    type Error = core::convert::Infallible;

    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Self::Error> {
        let level = run.level();
        for k in 0..run.len() {
            if F::is_valid(run.get(k), level) {
                run.set(k, F::INVALID);
                self.u.tlb.leaf(run.ia(k), level);
            }
        }
        Ok(LeafFlow::Done)
    }

    fn table_pre(&mut self, entry: &mut Entries<'_, F, P>) -> Result<TableFlow, Self::Error> {
        if !entry.fully_covered(0) {
            return Ok(TableFlow::Descend);
        }
        // The whole subtree goes: cut it off without visiting its leaves.
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
    let end = super::check_input(start, size, w.geometry().ia_size())?;
    if partial == PartialBlock::Refuse {
        w.walk(start, end, &mut FindPartial)?;
    }
    let mut v = UnmapVisitor {
        w,
        u: Unmap {
            tlb,
            deferred: ArrayVec::new(),
        },
    };
    let Ok(()) = w.walk(start, end, &mut v);
    v.u.flush(w);
    Ok(())
}
