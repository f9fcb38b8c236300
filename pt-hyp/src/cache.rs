//! The top-up page cache of the fault path (KVM's `kvm_mmu_memory_cache`).

use arrayvec::ArrayVec;
use core::sync::atomic::{AtomicUsize, Ordering};
use pt_core::ops::TableSource;
use pt_core::{PageAllocator, PhysAddr};

/// Pages a single fault can consume: one table per level below the root (3 with a 4-level
/// tree) plus one for splitting a block. [`Stage2::fault_pages`](crate::Stage2::fault_pages)
/// never exceeds it, and a [`PageCache`] must hold at least this many.
pub const FAULT_PAGES: usize = 4;

/// Pages dropped inside a [`PageCache`] since start-up (see [`leaked_pages`]).
static LEAKED: AtomicUsize = AtomicUsize::new(0);

/// The number of pages that were still in a [`PageCache`] when it was dropped, summed over
/// every cache since start-up.
///
/// A cache does not own its allocator, so dropping a non-empty one cannot give its pages back:
/// they are lost to the allocator. Rather than losing them silently (or panicking in a
/// hypervisor), the drop adds them to this counter. It stays 0 as long as every cache is
/// emptied with [`PageCache::release`] before it goes away; check it where a leak would
/// matter (at VM teardown, in tests).
pub fn leaked_pages() -> usize {
    LEAKED.load(Ordering::Relaxed)
}

/// A fixed-capacity stack of zeroed pages, filled from the allocator *before* taking the lock
/// that protects a VM's stage-2 tables; the map operations of the fault path then take tables
/// only from it, so they never call the allocator and cannot fail half-way.
///
/// The capacity `N` must be at least [`FAULT_PAGES`], checked when the program is compiled:
///
/// ```compile_fail
/// // Too small to ever hold the pages one fault may need: rejected at build time.
/// let cache = pt_hyp::PageCache::<3>::empty();
/// ```
///
/// The cache holds no allocator: give its pages back with [`release`](Self::release) before
/// dropping it. A cache dropped with pages in it leaks them, and the leak is counted in
/// [`leaked_pages`].
///
/// `PageCache::new()` is a cache of the default capacity, [`DEFAULT_CAPACITY`] pages, with no
/// type annotation needed; another capacity is `PageCache::<16>::empty()` (or
/// `PageCache::<16>::default()`):
///
/// ```
/// use pt_hyp::{PageCache, DEFAULT_CAPACITY};
///
/// let cache = PageCache::new();
/// assert_eq!(cache.capacity(), DEFAULT_CAPACITY);
/// let big = PageCache::<16>::empty();
/// assert_eq!(big.capacity(), 16);
/// ```
pub struct PageCache<const N: usize = DEFAULT_CAPACITY> {
    pages: ArrayVec<PhysAddr, N>,
}

/// The capacity of `PageCache` without a `N` (`PageCache::new()`): two faults' worth of pages
/// on the deepest (4-level) tree.
pub const DEFAULT_CAPACITY: usize = 2 * FAULT_PAGES;

impl<const N: usize> Default for PageCache<N> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<const N: usize> core::fmt::Debug for PageCache<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PageCache")
            .field("capacity", &N)
            .field("pages", &self.pages.as_slice())
            .finish()
    }
}

impl PageCache {
    /// An empty cache of [`DEFAULT_CAPACITY`] pages: `let mut cache = PageCache::new();`
    /// needs no type annotation. For another capacity use [`empty`](Self::empty).
    pub const fn new() -> Self {
        Self::empty()
    }
}

impl<const N: usize> PageCache<N> {
    /// An empty cache of capacity `N` (`PageCache::<16>::empty()`). Does not compile when `N`
    /// is below [`FAULT_PAGES`].
    pub const fn empty() -> Self {
        const {
            assert!(
                N >= FAULT_PAGES,
                "a PageCache must hold at least FAULT_PAGES pages"
            )
        };
        Self {
            pages: ArrayVec::new_const(),
        }
    }

    /// The most pages the cache can hold (`N`).
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Pages held.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// True when no page is held.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// Fills the cache up to `min` pages (`mmu_topup_memory_cache`); a cache already holding
    /// `min` pages is left as it is.
    ///
    /// A `min` above the capacity is [`Error::CacheTooSmall`](crate::Error::CacheTooSmall)
    /// and allocates nothing: the cache could never satisfy it, and "top up and call again"
    /// would loop for ever. On allocator exhaustion the pages obtained so far stay in the cache
    /// and [`Error::OutOfMemory`](crate::Error::OutOfMemory) is returned.
    pub fn top_up<P: PageAllocator>(&mut self, alloc: &P, min: usize) -> Result<(), crate::Error> {
        if min > N {
            return Err(crate::Error::CacheTooSmall { min, capacity: N });
        }
        while self.pages.len() < min {
            let pa = alloc.alloc_zeroed().ok_or(crate::Error::OutOfMemory)?;
            self.pages.push(pa);
        }
        Ok(())
    }

    /// Gives every page back to the allocator (`mmu_free_memory_cache`). Call it before the
    /// cache is dropped.
    pub fn release<P: PageAllocator>(&mut self, alloc: &P) {
        for pa in self.pages.drain(..) {
            alloc.free(pa, 1);
        }
    }
}

impl<const N: usize> Drop for PageCache<N> {
    /// Counts the pages still held in [`leaked_pages`]: without an allocator they cannot be
    /// freed here.
    fn drop(&mut self) {
        if !self.pages.is_empty() {
            LEAKED.fetch_add(self.pages.len(), Ordering::Relaxed);
        }
    }
}

impl<const N: usize> TableSource for PageCache<N> {
    fn available(&self) -> usize {
        self.pages.len()
    }

    fn take(&mut self) -> Option<PhysAddr> {
        self.pages.pop()
    }
}
