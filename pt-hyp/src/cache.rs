//! The top-up page cache of the fault path (KVM's `kvm_mmu_memory_cache`).

use arrayvec::ArrayVec;
use pt_core::ops::TableSource;
use pt_core::{PageAllocator, PhysAddr};

/// Pages a single fault can consume: one table per level below the root (3 with a 4-level
/// tree) plus one for splitting a block.
pub const FAULT_PAGES: usize = 4;

/// A fixed-capacity stack of zeroed pages, filled from the allocator *before* taking the lock
/// that protects a VM's stage-2 tables; the map operations of the fault path then take tables
/// only from it, so they never call the allocator and cannot fail half-way.
pub struct PageCache<const N: usize = 8> {
    pages: ArrayVec<PhysAddr, N>,
}

impl<const N: usize> Default for PageCache<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> PageCache<N> {
    /// An empty cache.
    pub const fn new() -> Self {
        Self {
            pages: ArrayVec::new_const(),
        }
    }

    /// Pages held.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// True when no page is held.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// Fills the cache up to `min.min(N)` pages (`mmu_topup_memory_cache`). On allocator
    /// exhaustion the pages obtained so far stay in the cache and
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory) is returned.
    pub fn top_up<P: PageAllocator>(&mut self, alloc: &P, min: usize) -> Result<(), crate::Error> {
        while self.pages.len() < min.min(N) {
            let pa = alloc.alloc_zeroed().ok_or(crate::Error::OutOfMemory)?;
            self.pages.push(pa);
        }
        Ok(())
    }

    /// Gives every page back to the allocator (`mmu_free_memory_cache`).
    pub fn release<P: PageAllocator>(&mut self, alloc: &P) {
        for pa in self.pages.drain(..) {
            alloc.free(pa, 1);
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
