//! Dirty bitmaps in pages from the page allocator: the only raw-memory access of pt-hyp.

use pt_core::{PageAllocator, PhysAddr};

/// Bits in one 4 KiB bitmap page.
pub const BITS_PER_PAGE: u64 = 4096 * 8;

/// A bitmap of `bits` bits stored in `pages` contiguous zeroed pages at `pa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bitmap {
    pub(crate) pa: PhysAddr,
    pub(crate) pages: usize,
    pub(crate) bits: u64,
}

impl Bitmap {
    /// Allocates a zeroed bitmap of `bits` bits (at most 16 pages), or `None`.
    pub(crate) fn alloc<P: PageAllocator>(alloc: &P, bits: u64) -> Option<Self> {
        let pages = bits.div_ceil(BITS_PER_PAGE).max(1).next_power_of_two() as usize;
        if pages > 16 {
            return None;
        }
        let pa = alloc.alloc_contiguous_zeroed(pages)?;
        Some(Self { pa, pages, bits })
    }

    pub(crate) fn free<P: PageAllocator>(self, alloc: &P) {
        alloc.free(self.pa, self.pages);
    }

    pub(crate) fn words(&self) -> usize {
        self.bits.div_ceil(64) as usize
    }

    fn word_ptr<P: PageAllocator>(&self, alloc: &P, w: usize) -> *mut u64 {
        debug_assert!(w < self.words());
        // SAFETY (of the add): the bitmap spans `pages` contiguous pages, more than
        // `words()` u64s, and w < words().
        unsafe { alloc.phys_to_virt(self.pa).add(w) }
    }

    /// Word `w` (bits `64 * w ..`).
    pub(crate) fn word<P: PageAllocator>(&self, alloc: &P, w: usize) -> u64 {
        // SAFETY: an aligned word inside the bitmap pages, which only this module touches.
        unsafe { self.word_ptr(alloc, w).read_volatile() }
    }

    /// Replaces word `w`.
    pub(crate) fn set_word<P: PageAllocator>(&self, alloc: &P, w: usize, v: u64) {
        // SAFETY: as in `word`.
        unsafe { self.word_ptr(alloc, w).write_volatile(v) }
    }

    /// Sets bit `i` (i < bits).
    pub(crate) fn set<P: PageAllocator>(&self, alloc: &P, i: u64) {
        let w = (i / 64) as usize;
        self.set_word(alloc, w, self.word(alloc, w) | 1 << (i % 64));
    }

    /// Bit `i`.
    pub(crate) fn get<P: PageAllocator>(&self, alloc: &P, i: u64) -> bool {
        self.word(alloc, (i / 64) as usize) & (1 << (i % 64)) != 0
    }
}
