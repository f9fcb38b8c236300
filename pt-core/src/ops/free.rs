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

/// Entries tested together for tables when freeing ([`Format::any_table`]: for the ARM
/// formats one OR-reduction, which the compiler vectorises), with a second look only at chunks
/// that hold a table.
const CHUNK: usize = 64;

/// Frees every table below the `n` entries at `base` of a table at `level`, children first
/// (the table itself stays).
///
/// This is the freeing of a detached subtree or of a retired tree, where most entries are
/// leaves or invalid (a level-2 table of 2 MiB blocks, a root with one table): the entries are
/// read with plain loads, a chunk of [`CHUNK`] at a time, and a chunk is looked at entry by
/// entry only when it holds a table. Level-3 tables are freed from their parent entry
/// without being read.
///
/// # Safety
///
/// `base` is the hypervisor address of a table at `level` of a tree of `alloc` holding at
/// least `n` entries, and no software or hardware walker can reach it any more: its parent
/// entry was cleared and the TLBs synced, or the whole regime was invalidated before a
/// teardown. Plain (not single-copy-atomic) loads are then enough, since nothing writes it.
unsafe fn free_below<F: Format, P: PageAllocator>(
    alloc: &P,
    base: *const u64,
    n: usize,
    level: u8,
) {
    if level >= LAST_LEVEL {
        return;
    }
    // SAFETY: the caller's contract: `n` entries of a table nobody else uses.
    let entries = unsafe { core::slice::from_raw_parts(base, n) };
    let chunks = entries.chunks_exact(CHUNK);
    let rest = chunks.remainder();
    for chunk in chunks {
        // A chunk that starts with a table is most likely full of them (a level-2 table of
        // page tables): go entry by entry at once instead of testing the chunk first.
        if F::is_table(chunk[0], level) || F::any_table(chunk, level) {
            // SAFETY: entries of this table, under the caller's contract.
            unsafe { free_tables_in::<F, P>(alloc, chunk, level) };
        }
    }
    // SAFETY: as above.
    unsafe { free_tables_in::<F, P>(alloc, rest, level) };
}

/// Frees the tables (and what is below them) of the entries `chunk` of a table at `level`.
///
/// # Safety
///
/// `chunk` holds entries of a table at `level` that [`free_below`] may free.
#[inline]
unsafe fn free_tables_in<F: Format, P: PageAllocator>(alloc: &P, chunk: &[u64], level: u8) {
    for &d in chunk {
        if !F::is_table(d, level) {
            continue;
        }
        if let Entry::Table(child) = F::decode(d, level) {
            if level + 1 < LAST_LEVEL {
                // SAFETY: `child` is a table of this tree at `level + 1`, as unreachable
                // as its parent (the caller's contract).
                unsafe {
                    free_below::<F, P>(
                        alloc,
                        alloc.phys_to_virt(child),
                        crate::geometry::ENTRIES_PER_TABLE,
                        level + 1,
                    )
                };
            }
            alloc.free(child, 1);
        }
    }
}

/// Frees the detached subtree whose table at `level` is `table` (its parent entry was already
/// cleared and the TLBs invalidated), the table itself included.
pub(crate) fn free_subtree<F: Format, P: PageAllocator>(
    w: &Walker<'_, F, P>,
    table: PhysAddr,
    level: u8,
) {
    let alloc = w.alloc();
    // SAFETY: the caller cut `table` off and synced the TLBs; it is a non-root table of the
    // tree (512 entries).
    unsafe {
        free_below::<F, P>(
            alloc,
            alloc.phys_to_virt(table),
            crate::geometry::ENTRIES_PER_TABLE,
            level,
        )
    };
    alloc.free(table, 1);
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

    /// Leaves that continue the previous one (the next output address, the same attributes:
    /// the previous descriptor plus [`Format::leaf_step`]) join its range without being
    /// decoded, so a run of a linear mapping costs a load and a compare per entry.
    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Infallible> {
        let size = run.entry_size();
        let level = run.level();
        let n = run.len();
        let mut k = 0;
        while k < n {
            let d = run.get(k);
            let mut len = 1;
            if let Some(step) = F::leaf_step(level) {
                let mut next = d.wrapping_add(step);
                while k + len < n && run.get(k + len) == next {
                    len += 1;
                    next = next.wrapping_add(step);
                }
            }
            if let Entry::Leaf { oa, attrs } = F::decode(d, level) {
                let bytes = size * len as u64;
                if !self.pending.push(oa, bytes, attrs) {
                    self.pending.drain(self.sink);
                    self.pending.push(oa, bytes, attrs);
                }
            }
            k += len;
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
        let alloc = w.alloc();
        // SAFETY: the whole regime was invalidated and synced above, and the caller retires
        // the tree: no walker reaches the root any more.
        unsafe {
            free_below::<F, P>(
                alloc,
                alloc.phys_to_virt(w.root()),
                g.entries_at(g.start_level()),
                g.start_level(),
            )
        };
    }
    w.alloc().free(w.root(), g.root_pages());
}
