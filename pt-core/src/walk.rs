//! The one walker: every operation on a tree is a [`Visitor`] on it.
//!
//! For a range `[start, end)` the walker visits, in address order, every entry that covers part
//! of the range at every level:
//! - a *run* of consecutive non-table entries (invalid or leaf) of one table goes to
//!   [`Visitor::leaf`] in one call, so mapping N pages of a table is one loop;
//! - a table entry gets [`Visitor::table_pre`] before its children (which may answer
//!   [`TableFlow::Skip`]) and [`Visitor::table_post`] after them.
//!
//! Entries are re-read after each visit: a leaf visit that turned an entry into a table asks the
//! walker to descend into it ([`LeafFlow::Descend`]), and a pre-table visit that removed a table
//! is not descended into. The walker descends once per table, never once per page, and
//! recursion depth is at most four.

use crate::addr::PhysAddr;
use crate::format::Format;
use crate::geometry::{entry_size, level_shift, Geometry, ENTRIES_PER_TABLE, LAST_LEVEL};
use crate::machine::PageAllocator;
use crate::table::{read_entry, Entries};
use core::marker::PhantomData;

/// What the walker does after a leaf-run visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafFlow {
    /// The whole run was handled.
    Done,
    /// Entries before `k` were handled and entry `k` is now a table: descend into it (then
    /// post-visit it) and continue after it.
    Descend(usize),
    /// As [`Descend`](Self::Descend), and the table at entry `k` was just created: every entry
    /// of it is invalid, so the walker hands its covered entries to the visitor as one run
    /// without scanning them for tables.
    DescendNew(usize),
}

/// What the walker does after a pre-table visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFlow {
    /// Walk the children (if the entry is still a table).
    Descend,
    /// Do not walk the children, and do not post-visit.
    Skip,
}

/// An operation on a tree.
///
/// All methods receive an [`Entries`] view; for table visits it holds exactly the one table
/// entry.
pub trait Visitor<F: Format, P: PageAllocator> {
    /// Error that stops the walk.
    type Error;

    /// Whether the walker should call [`table_pre`](Self::table_pre) and
    /// [`table_post`](Self::table_post) at all.
    const TABLE_VISITS: bool = true;

    /// Whether the walker should call [`leaf`](Self::leaf) at all. A visitor that only cares
    /// about tables (freeing a tree) sets it false, and the walker then only looks for table
    /// entries.
    const LEAF_VISITS: bool = true;

    /// A run of non-table entries.
    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Self::Error>;

    /// A table entry, before its children.
    fn table_pre(&mut self, entry: &mut Entries<'_, F, P>) -> Result<TableFlow, Self::Error> {
        let _ = entry;
        Ok(TableFlow::Descend)
    }

    /// A table entry, after its children.
    fn table_post(&mut self, entry: &mut Entries<'_, F, P>) -> Result<(), Self::Error> {
        let _ = entry;
        Ok(())
    }
}

/// A tree to walk: its geometry, root and allocator.
pub struct Walker<'a, F: Format, P: PageAllocator> {
    geom: Geometry,
    root: PhysAddr,
    alloc: &'a P,
    _f: PhantomData<F>,
}

impl<'a, F: Format, P: PageAllocator> Walker<'a, F, P> {
    /// A walker over the tree rooted at `root`.
    ///
    /// # Safety
    ///
    /// Every walk reads (and operations write) the tables reached from `root` through
    /// `alloc.phys_to_virt`. `root` must be `geom.root_pages()` contiguous pages obtained from
    /// `alloc` (aligned to their size), zeroed when the tree was created, and written since
    /// only through pt-core (or [`Entries::set_raw`](crate::Entries::set_raw) within its
    /// contract); the tree must not be freed while the walker is in use. Several walkers may
    /// share a tree only if the caller serialises the operations that change it (the
    /// hypervisor's lock around a VM).
    pub unsafe fn new(geom: Geometry, root: PhysAddr, alloc: &'a P) -> Self {
        Self {
            geom,
            root,
            alloc,
            _f: PhantomData,
        }
    }

    /// The tree's geometry.
    pub fn geometry(&self) -> Geometry {
        self.geom
    }

    /// The root table (first page of the concatenated root).
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// The allocator of the tree.
    pub fn alloc(&self) -> &'a P {
        self.alloc
    }

    /// The leaf descriptor that maps input address `ia`, with its level, or `None` when `ia` is
    /// unmapped or outside the input space: one descent, one load per level. This is the walk
    /// of a one-entry range without the run machinery (no visitor has anything to decide
    /// there), used by [`translate`](crate::ops::translate) and the fault path.
    #[inline]
    pub fn lookup(&self, ia: u64) -> Option<(u64, u8)> {
        if ia >= self.geom.ia_size() {
            return None;
        }
        let mut table = self.root;
        let mut level = self.geom.start_level();
        let mut shift = level_shift(level);
        // `ia` is inside the input space, so its root index is below the root's entry count
        // without a mask; below the root every table has 512 entries.
        let mut index = (ia >> shift) as usize;
        loop {
            // SAFETY: `table` is the root or a table reached through a table descriptor of this
            // tree, and `index` is below its entry count.
            let desc = unsafe { read_entry(self.alloc, table, index) };
            if level < LAST_LEVEL && F::is_table(desc, level) {
                match F::decode(desc, level) {
                    crate::format::Entry::Table(next) => table = next,
                    _ => return None,
                }
                level += 1;
                shift -= 9;
                index = (ia >> shift) as usize & (ENTRIES_PER_TABLE - 1);
                continue;
            }
            return F::is_valid(desc, level).then_some((desc, level));
        }
    }

    /// Visits `[start, end)`. An empty range, or one reaching past the input space
    /// (`end > geometry.ia_size()`), visits nothing: operations validate their range first
    /// and report it with a typed error.
    pub fn walk<V: Visitor<F, P>>(&self, start: u64, end: u64, v: &mut V) -> Result<(), V::Error> {
        if start >= end || end > self.geom.ia_size() {
            return Ok(());
        }
        self.walk_table(v, self.root, self.geom.start_level(), 0, start, end, false)
    }

    /// Visits `[start, end)` inside the subtree whose table at `level` is `table` and covers
    /// input addresses from `table_ia`. Used to walk a detached subtree (to free it).
    pub(crate) fn walk_subtree<V: Visitor<F, P>>(
        &self,
        table: PhysAddr,
        level: u8,
        table_ia: u64,
        v: &mut V,
    ) -> Result<(), V::Error> {
        let entries = self.geom.entries_at(level) as u64;
        let end = table_ia + entries * entry_size(level);
        self.walk_table(v, table, level, table_ia, table_ia, end, false)
    }

    // The recursion carries the table, its level and the clipped range explicitly; bundling
    // them would only move the same fields into a struct rebuilt at every level.
    #[allow(clippy::too_many_arguments)]
    fn walk_table<V: Visitor<F, P>>(
        &self,
        v: &mut V,
        table: PhysAddr,
        level: u8,
        table_ia: u64,
        lo: u64,
        hi: u64,
        fresh: bool,
    ) -> Result<(), V::Error> {
        let base = self.alloc.phys_to_virt(table);
        let size = entry_size(level);
        let first = self.geom.index(level, lo);
        let last = self.geom.index(level, hi - 1);
        // SAFETY: `table` is a live table of this tree at `level` (the root, or a table reached
        // through a table descriptor) holding `entries_at(level)` > `last` entries.
        let view = |first: usize, len: usize| unsafe {
            Entries::<F, P>::new(self.alloc, table, base, first, len, level, table_ia, lo, hi)
        };
        let all = view(first, last + 1 - first);
        // SAFETY: every caller below passes an index in `first..=last`, inside `all`.
        let entry = |i: usize| unsafe { all.get_unchecked(i - first) };
        if !V::LEAF_VISITS {
            if level < LAST_LEVEL {
                for i in first..last + 1 {
                    if F::is_table(entry(i), level) {
                        let ia = table_ia + i as u64 * size;
                        self.visit_table(v, &mut view(i, 1), level, ia, lo, hi, true)?;
                    }
                }
            }
            return Ok(());
        }
        let mut i = first;
        // End of the current run of non-table entries, once known: after a leaf visit that
        // descended at entry k, the entries after k were not touched by the visit (the
        // `LeafFlow::Descend` contract), so the rest of the run needs no rescan.
        // A table the visitor just created holds only invalid entries: one run, no scan.
        let mut known_end: Option<usize> = fresh.then_some(last + 1);
        while i <= last {
            if known_end.is_none() && level < LAST_LEVEL && F::is_table(entry(i), level) {
                self.visit_table(
                    v,
                    &mut view(i, 1),
                    level,
                    table_ia + i as u64 * size,
                    lo,
                    hi,
                    true,
                )?;
                i += 1;
                continue;
            }
            // A run of non-table entries: at the last level every entry; above it, up to the
            // next table entry.
            let j = match known_end.take() {
                Some(j) => j,
                None if level < LAST_LEVEL => {
                    let mut j = i + 1;
                    while j <= last && !F::is_table(entry(j), level) {
                        j += 1;
                    }
                    j
                }
                None => last + 1,
            };
            let mut run = view(i, j - i);
            let flow = v.leaf(&mut run)?;
            match flow {
                LeafFlow::Done => i = j,
                LeafFlow::Descend(k) | LeafFlow::DescendNew(k) => {
                    let at = i + k;
                    debug_assert!(at < j);
                    if level < LAST_LEVEL && F::is_table(entry(at), level) {
                        let ia = table_ia + at as u64 * size;
                        let mut e = view(at, 1);
                        let new = matches!(flow, LeafFlow::DescendNew(_));
                        self.descend(v, &mut e, level, ia, lo, hi, new)?;
                    }
                    i = at + 1;
                    if i < j {
                        known_end = Some(j);
                    }
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn visit_table<V: Visitor<F, P>>(
        &self,
        v: &mut V,
        entry: &mut Entries<'_, F, P>,
        level: u8,
        entry_ia: u64,
        lo: u64,
        hi: u64,
        pre: bool,
    ) -> Result<(), V::Error> {
        if pre && V::TABLE_VISITS && v.table_pre(entry)? == TableFlow::Skip {
            return Ok(());
        }
        self.descend(v, entry, level, entry_ia, lo, hi, false)
    }

    /// Walks the children of the table entry `entry` (re-read first: a pre-visit may have
    /// replaced it), then post-visits it.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn descend<V: Visitor<F, P>>(
        &self,
        v: &mut V,
        entry: &mut Entries<'_, F, P>,
        level: u8,
        entry_ia: u64,
        lo: u64,
        hi: u64,
        fresh: bool,
    ) -> Result<(), V::Error> {
        let desc = entry.get(0);
        if !F::is_table(desc, level) {
            return Ok(());
        }
        let child = match F::decode(desc, level) {
            crate::format::Entry::Table(pa) => pa,
            _ => return Ok(()),
        };
        let end = entry_ia.wrapping_add(entry_size(level));
        let c_hi = if end == 0 || end > hi { hi } else { end };
        self.walk_table(v, child, level + 1, entry_ia, lo.max(entry_ia), c_hi, fresh)?;
        if V::TABLE_VISITS {
            v.table_post(entry)?;
        }
        Ok(())
    }
}
