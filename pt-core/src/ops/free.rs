//! Freeing subtrees and whole trees.

use super::unmap::{Pending, UnmapSink};
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

/// Reports every leaf to an [`UnmapSink`] and frees every table below the entries it visits,
/// children first: the teardown of a detached subtree or retired tree whose leaves need cache
/// maintenance.
struct DrainTables<'s, A, S> {
    sink: &'s mut S,
    pending: Pending<A>,
}

impl<F, P, A, S> Visitor<F, P> for DrainTables<'_, A, S>
where
    F: Format<Attrs = A>,
    P: PageAllocator,
    A: Copy + PartialEq,
    S: UnmapSink<A>,
{
    type Error = Infallible;

    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Infallible> {
        let size = run.entry_size();
        for k in 0..run.len() {
            if let Entry::Leaf { oa, attrs } = run.decode(k) {
                if !self.pending.push(oa, size, attrs) {
                    self.pending.drain(self.sink);
                    self.pending.push(oa, size, attrs);
                }
            }
        }
        Ok(LeafFlow::Done)
    }

    fn table_pre(&mut self, _: &mut Entries<'_, F, P>) -> Result<TableFlow, Infallible> {
        Ok(TableFlow::Descend)
    }

    fn table_post(&mut self, entry: &mut Entries<'_, F, P>) -> Result<(), Infallible> {
        if let Entry::Table(child) = entry.decode(0) {
            entry.alloc().free(child, 1);
        }
        Ok(())
    }
}

/// [`free_subtree`] that first reports every leaf of the detached subtree to `sink` (its
/// parent entry was cleared and the TLBs invalidated, so the leaves are unreachable).
pub(crate) fn free_subtree_reporting<F, P, S>(
    w: &Walker<'_, F, P>,
    table: PhysAddr,
    level: u8,
    ia: u64,
    sink: &mut S,
) where
    F: Format,
    P: PageAllocator,
    S: UnmapSink<F::Attrs>,
{
    let mut v = DrainTables {
        sink,
        pending: Pending::new(),
    };
    let Ok(()) = w.walk_subtree(table, level, ia, &mut v);
    v.pending.drain(v.sink);
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
    free_tree_reporting(w, tlb, &mut ());
}

/// [`free_tree`], handing every leaf to `sink` after the whole-regime invalidation and before
/// its table is freed (the data-cache clean of a VM's RAM on teardown, as KVM's
/// `kvm_free_stage2_pgd` does through `unmap_stage2_range`).
pub fn free_tree_reporting<F, P, M, S>(
    w: &Walker<'_, F, P>,
    tlb: &mut TlbBatch<'_, M>,
    sink: &mut S,
) where
    F: Format,
    P: PageAllocator,
    M: Maintenance,
    S: UnmapSink<F::Attrs>,
{
    tlb.invalidate_all();
    tlb.sync();
    if P::TRACE {
        w.alloc().trace(&TraceEvent::RetireRoot {
            stage: F::LIMITS.stage,
            root: w.root(),
        });
    }
    let g = w.geometry();
    if S::REPORTS {
        let mut v = DrainTables {
            sink,
            pending: Pending::new(),
        };
        let Ok(()) = w.walk(0, g.ia_size(), &mut v);
        v.pending.drain(v.sink);
    } else {
        let Ok(()) = w.walk(0, g.ia_size(), &mut FreeTables);
    }
    w.alloc().free(w.root(), g.root_pages());
}
