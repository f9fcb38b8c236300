//! Raw table memory: the only module that dereferences table pointers.
//!
//! Every descriptor load and store is one single-copy-atomic 64-bit access, because the MMU may
//! walk a live table at any moment (ARCHITECTURE.md invariant 6): `LDRD`/`STRD` to an 8-byte
//! aligned address on ARMv7 with LPAE, a 64-bit atomic elsewhere. Later compare-and-swap
//! updates belong here too.

use crate::addr::PhysAddr;
use crate::format::{Entry, Format};
use crate::geometry::entry_size;
use crate::machine::{DescKind, PageAllocator, TraceEvent};
use core::marker::PhantomData;

/// Loads the descriptor at `ptr`.
///
/// # Safety
/// `ptr` must be 8-byte aligned and point into a live table page.
#[inline(always)]
unsafe fn load(ptr: *const u64) -> u64 {
    #[cfg(target_arch = "arm")]
    {
        let lo: u32;
        let hi: u32;
        // SAFETY: the caller guarantees an aligned pointer into a live table. LDRD of an
        // 8-byte aligned doubleword is single-copy atomic on LPAE implementations; A32 LDRD
        // needs an even/odd register pair, hence the fixed r2/r3.
        unsafe {
            core::arch::asm!("ldrd r2, r3, [{p}]", p = in(reg) ptr, out("r2") lo, out("r3") hi,
                options(nostack, readonly, preserves_flags));
        }
        ((hi as u64) << 32) | lo as u64
    }
    #[cfg(not(target_arch = "arm"))]
    {
        // SAFETY: the caller guarantees an aligned pointer into a live table, which only this
        // module accesses, always atomically.
        unsafe { core::sync::atomic::AtomicU64::from_ptr(ptr as *mut u64) }
            .load(core::sync::atomic::Ordering::Relaxed)
    }
}

/// Stores `value` at `ptr`.
///
/// # Safety
/// `ptr` must be 8-byte aligned and point into a live table page.
#[inline(always)]
unsafe fn store(ptr: *mut u64, value: u64) {
    #[cfg(target_arch = "arm")]
    {
        // SAFETY: as in `load`: STRD of an aligned doubleword is single-copy atomic with LPAE.
        unsafe {
            core::arch::asm!("strd r2, r3, [{p}]", p = in(reg) ptr, in("r2") value as u32,
                in("r3") (value >> 32) as u32, options(nostack, preserves_flags));
        }
    }
    #[cfg(not(target_arch = "arm"))]
    {
        // SAFETY: as in `load`.
        unsafe { core::sync::atomic::AtomicU64::from_ptr(ptr) }
            .store(value, core::sync::atomic::Ordering::Relaxed)
    }
}

/// A view of `len` consecutive entries of one table at `level`, starting at entry `first`,
/// covering input addresses `[lo, hi)` (the first and last entry may be covered only in part).
///
/// Visitors read and write entries only through this type, so every store is atomic and
/// traced. Indices passed to its methods are relative to `first`.
pub struct Entries<'a, F: Format, P: PageAllocator> {
    alloc: &'a P,
    table: PhysAddr,
    base: *mut u64,
    first: usize,
    len: usize,
    level: u8,
    table_ia: u64,
    lo: u64,
    hi: u64,
    _f: PhantomData<F>,
}

impl<'a, F: Format, P: PageAllocator> Entries<'a, F, P> {
    /// # Safety
    /// `table` must be a live table page (or concatenated root) of this tree with at least
    /// `first + len` entries, obtained from `alloc`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn new(
        alloc: &'a P,
        table: PhysAddr,
        base: *mut u64,
        first: usize,
        len: usize,
        level: u8,
        table_ia: u64,
        lo: u64,
        hi: u64,
    ) -> Self {
        Self {
            alloc,
            table,
            base,
            first,
            len,
            level,
            table_ia,
            lo,
            hi,
            _f: PhantomData,
        }
    }

    /// The allocator of the tree (for visitors that allocate or free tables).
    #[inline]
    pub fn alloc(&self) -> &'a P {
        self.alloc
    }

    /// Number of entries in the view.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the view holds no entry (never the case for a view given to a visitor).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Level of the table.
    #[inline]
    pub fn level(&self) -> u8 {
        self.level
    }

    /// Bytes covered by one entry.
    #[inline]
    pub fn entry_size(&self) -> u64 {
        entry_size(self.level)
    }

    /// Physical address of the table page.
    #[inline]
    pub fn table(&self) -> PhysAddr {
        self.table
    }

    /// Index of entry `k` of the view in its table.
    #[inline]
    pub fn index(&self, k: usize) -> usize {
        self.first + k
    }

    /// First input address covered by entry `k`.
    #[inline]
    pub fn ia(&self, k: usize) -> u64 {
        self.table_ia + (self.first + k) as u64 * self.entry_size()
    }

    /// The part of the walked range inside entry `k`: `[start, end)`.
    #[inline]
    pub fn covered(&self, k: usize) -> (u64, u64) {
        let s = self.ia(k);
        let e = s.wrapping_add(self.entry_size());
        (
            s.max(self.lo),
            if e == 0 || e > self.hi { self.hi } else { e },
        )
    }

    /// True when the walked range covers all of entry `k`.
    #[inline]
    pub fn fully_covered(&self, k: usize) -> bool {
        let (s, e) = self.covered(k);
        s == self.ia(k) && e - s == self.entry_size()
    }

    #[inline(always)]
    fn ptr(&self, k: usize) -> *mut u64 {
        // A real check, not a debug one: `get`/`set` are safe methods that visitors outside
        // this crate call, so an index past the view must not reach memory.
        assert!(
            k < self.len,
            "entry {k} outside a view of {} entries",
            self.len
        );
        // SAFETY: `new`'s contract makes `first + len` entries valid; k < len.
        unsafe { self.base.add(self.first + k) }
    }

    /// Raw descriptor of entry `k`, without the bounds check of [`get`](Self::get): for the
    /// walker's own scans.
    ///
    /// # Safety
    /// `k` must be below [`len`](Self::len).
    #[inline(always)]
    pub(crate) unsafe fn get_unchecked(&self, k: usize) -> u64 {
        debug_assert!(k < self.len);
        // SAFETY: `new`'s contract makes `first + len` entries valid and the caller k < len.
        unsafe { load(self.base.add(self.first + k)) }
    }

    /// Raw descriptor of entry `k`.
    #[inline(always)]
    pub fn get(&self, k: usize) -> u64 {
        // SAFETY: `ptr` stays inside the live table (see `new`).
        unsafe { load(self.ptr(k)) }
    }

    /// Decoded descriptor of entry `k`.
    #[inline]
    pub fn decode(&self, k: usize) -> Entry<F::Attrs> {
        F::decode(self.get(k), self.level)
    }

    /// Stores `desc` in entry `k` with one single-copy-atomic store: the crate's own raw
    /// store, whose callers only write invalid entries, leaves, and tables they obtained from
    /// the tree's allocator or table source.
    #[inline(always)]
    pub(crate) fn set(&mut self, k: usize, desc: u64) {
        if P::TRACE {
            self.trace(k, desc);
        }
        // SAFETY: `ptr` stays inside the live table (see `new`).
        unsafe { store(self.ptr(k), desc) }
    }

    /// Stores the raw descriptor `desc` in entry `k` with one single-copy-atomic store (traced
    /// like every store of pt-core), for visitors outside pt-core. Callers keep
    /// break-before-make themselves (see [`break_before_make`](crate::ops::break_before_make)),
    /// which the test kit's checker verifies; [`fill_leaves`](Self::fill_leaves) writes leaves
    /// without `unsafe`.
    ///
    /// # Safety
    ///
    /// Every walk of the tree follows table descriptors and dereferences the tables they point
    /// at. If `desc` is a table descriptor at this level, it must point at a zeroed (or
    /// otherwise well-formed) table page obtained from this tree's allocator that is in no
    /// other tree and no other entry; any other descriptor (invalid, block, page) is always
    /// sound to store.
    #[inline(always)]
    pub unsafe fn set_raw(&mut self, k: usize, desc: u64) {
        self.set(k, desc);
    }

    /// [`set`](Self::set) without the bounds check, for the crate's own loops over a view.
    ///
    /// # Safety
    /// `k` must be below [`len`](Self::len).
    #[inline(always)]
    pub(crate) unsafe fn set_unchecked(&mut self, k: usize, desc: u64) {
        debug_assert!(k < self.len);
        if P::TRACE {
            self.trace(k, desc);
        }
        // SAFETY: `new`'s contract makes `first + len` entries valid and the caller k < len.
        unsafe { store(self.base.add(self.first + k), desc) }
    }

    #[cold]
    fn trace(&self, k: usize, new: u64) {
        let old = self.get(k);
        self.alloc.trace(&TraceEvent::Write {
            stage: F::LIMITS.stage,
            table: self.table,
            index: self.first + k,
            level: self.level,
            ia: self.ia(k),
            old,
            new,
            old_kind: kind::<F>(old, self.level),
            new_kind: kind::<F>(new, self.level),
        });
    }

    /// Writes leaves into entries `[k, k + n)`, mapping consecutive output addresses from `oa`
    /// with `attrs`: one store per entry, one add per entry when the format allows.
    #[inline]
    pub fn fill_leaves(&mut self, k: usize, n: usize, oa: PhysAddr, attrs: F::Attrs) {
        let level = self.level;
        let size = self.entry_size();
        match F::leaf_step(level) {
            Some(step) if !P::TRACE => {
                let mut desc = F::encode_leaf(oa, attrs, level);
                let p = self.ptr(k);
                assert!(k + n <= self.len, "fill_leaves past the view");
                for i in 0..n {
                    // SAFETY: k + n <= len (asserted above), so k + i < len.
                    unsafe { store(p.add(i), desc) };
                    desc = desc.wrapping_add(step);
                }
            }
            _ => {
                for i in 0..n {
                    let d = F::encode_leaf(PhysAddr(oa.0 + i as u64 * size), attrs, level);
                    self.set(k + i, d);
                }
            }
        }
    }
}

/// The checker's view of a descriptor.
pub fn kind<F: Format>(desc: u64, level: u8) -> DescKind {
    match F::decode(desc, level) {
        Entry::Invalid => DescKind::Invalid,
        Entry::Table(pa) => DescKind::Table(pa),
        Entry::Leaf { oa, .. } => DescKind::Leaf(oa),
    }
}

/// Word 0 of a page that is not part of any tree (a reserved or detached page): used to chain
/// reserved pages.
///
/// # Safety
/// `page` must be a page obtained from the allocator and not reachable by any walker.
pub(crate) unsafe fn load_unlinked(page: *mut u64) -> u64 {
    // SAFETY: the caller guarantees an aligned page of ours.
    unsafe { load(page) }
}

/// Stores word 0 of a page that is not part of any tree.
///
/// # Safety
/// As for [`load_unlinked`].
pub(crate) unsafe fn store_unlinked(page: *mut u64, value: u64) {
    // SAFETY: the caller guarantees an aligned page of ours.
    unsafe { store(page, value) }
}

/// True when no entry of the (non-root) table at `pa`, of `level`, is valid.
pub(crate) fn table_is_empty<F: Format, P: PageAllocator>(
    alloc: &P,
    pa: PhysAddr,
    level: u8,
) -> bool {
    let base = alloc.phys_to_virt(pa);
    // SAFETY: `pa` is a live 512-entry table of a tree, handed out by `alloc`.
    (0..crate::geometry::ENTRIES_PER_TABLE)
        .all(|i| !F::is_valid(unsafe { load(base.add(i)) }, level))
}

/// Entry `index` of the live table at `table` (one atomic load): the point lookup of
/// [`Walker::lookup`](crate::Walker::lookup).
///
/// # Safety
/// `table` must be a live table of a tree whose pages come from `alloc`, with more than
/// `index` entries.
#[inline(always)]
pub(crate) unsafe fn read_entry<P: PageAllocator>(alloc: &P, table: PhysAddr, index: usize) -> u64 {
    // SAFETY: per the caller's contract the entry lies inside a live table.
    unsafe { load(alloc.phys_to_virt(table).add(index)) }
}
