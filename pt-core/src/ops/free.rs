//! Freeing subtrees and whole trees.

use crate::addr::PhysAddr;
use crate::format::{Entry, Format};
use crate::geometry::LAST_LEVEL;
use crate::machine::{Maintenance, PageAllocator, TraceEvent};
use crate::table::Entries;
use crate::tlb::TlbBatch;
use crate::walk::{LeafFlow, TableFlow, Visitor, Walker};
use core::convert::Infallible;

/// Frees every table below the entries it visits, children first.
pub(crate) struct FreeTables;

impl<F: Format, P: PageAllocator> Visitor<F, P> for FreeTables {
    type Error = Infallible;
    const LEAF_VISITS: bool = false;

    fn leaf(&mut self, _: &mut Entries<'_, F, P>) -> Result<LeafFlow, Infallible> {
        Ok(LeafFlow::Done)
    }

    /// A level-3 table holds no table: free it without walking it.
    fn table_pre(&mut self, entry: &mut Entries<'_, F, P>) -> Result<TableFlow, Infallible> {
        if entry.level() + 1 < LAST_LEVEL {
            return Ok(TableFlow::Descend);
        }
        if let Entry::Table(child) = entry.decode(0) {
            entry.alloc().free(child, 1);
        }
        Ok(TableFlow::Skip)
    }

    fn table_post(&mut self, entry: &mut Entries<'_, F, P>) -> Result<(), Infallible> {
        if let Entry::Table(child) = entry.decode(0) {
            entry.alloc().free(child, 1);
        }
        Ok(())
    }
}

/// Frees the detached subtree whose table at `level` is `table` (its parent entry was already
/// cleared and the TLBs invalidated), the table itself included.
pub(crate) fn free_subtree<F: Format, P: PageAllocator>(
    w: &Walker<'_, F, P>,
    table: PhysAddr,
    level: u8,
    ia: u64,
) {
    if level < 3 {
        let Ok(()) = w.walk_subtree(table, level, ia, &mut FreeTables);
    }
    w.alloc().free(table, 1);
}

/// Frees the whole tree, root included (`kvm_free_stage2_pgd`, `free_hyp_pgds`).
///
/// Issues one whole-regime invalidation first, so no TLB or walk cache still refers to any
/// table; afterwards every table page is back with the allocator. The walker must not be used
/// again.
pub fn free_tree<F: Format, P: PageAllocator, M: Maintenance>(
    w: &Walker<'_, F, P>,
    tlb: &mut TlbBatch<'_, M>,
) {
    tlb.invalidate_all();
    tlb.sync();
    if P::TRACE {
        w.alloc().trace(&TraceEvent::RetireRoot {
            stage: F::LIMITS.stage,
            root: w.root(),
        });
    }
    let g = w.geometry();
    let Ok(()) = w.walk(0, g.ia_size(), &mut FreeTables);
    w.alloc().free(w.root(), g.root_pages());
}
