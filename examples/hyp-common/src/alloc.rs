//! A page allocator over a physical range of the hypervisor's (identity-mapped) RAM, for the
//! page tables that pt-hyp builds: first-fit over a bitmap, with aligned contiguous runs for
//! concatenated stage-2 roots, and a live-page count for the leak checks.

use core::cell::Cell;
use core::cell::RefCell;
use pt_core::{GuestMemory, GuestMemoryError, PageAllocator, PhysAddr};

/// Pages managed at most.
pub const MAX_PAGES: usize = 2048;

/// A bitmap page allocator over `[base, base + pages * 4 KiB)`, identity mapped (VA == PA).
pub struct PagePool {
    base: u64,
    pages: usize,
    used: RefCell<[u64; MAX_PAGES / 64]>,
    live: Cell<usize>,
}

impl PagePool {
    /// A pool over `pages` pages at `base` (4 KiB aligned).
    pub const fn new(base: u64, pages: usize) -> Self {
        let pages = if pages > MAX_PAGES { MAX_PAGES } else { pages };
        Self {
            base,
            pages,
            used: RefCell::new([0; MAX_PAGES / 64]),
            live: Cell::new(0),
        }
    }

    /// Pages currently handed out.
    pub fn live_pages(&self) -> usize {
        self.live.get()
    }

    fn find(&self, n: usize) -> Option<usize> {
        let used = self.used.borrow();
        let is_used = |i: usize| used[i / 64] & (1 << (i % 64)) != 0;
        let mut i = 0;
        while i + n <= self.pages {
            // Runs are aligned to their size (in pages) from the physical base.
            let pa_page = (self.base >> 12) as usize + i;
            if !pa_page.is_multiple_of(n) {
                i += n - pa_page % n;
                continue;
            }
            match (i..i + n).find(|&j| is_used(j)) {
                None => return Some(i),
                Some(j) => i = j + 1,
            }
        }
        None
    }

    fn take(&self, n: usize) -> Option<PhysAddr> {
        let i = self.find(n)?;
        let mut used = self.used.borrow_mut();
        for j in i..i + n {
            used[j / 64] |= 1 << (j % 64);
        }
        let pa = self.base + (i as u64) * 4096;
        // SAFETY: the pool owns these pages exclusively (identity mapped, not in use); zero them
        // before they are handed out as tables.
        unsafe { core::ptr::write_bytes(pa as usize as *mut u8, 0, n * 4096) };
        self.live.set(self.live.get() + n);
        Some(PhysAddr(pa))
    }
}

// SAFETY: the pool owns its identity-mapped range exclusively; each page is handed out once,
// zeroed, until freed, and `phys_to_virt` is the identity the hypervisor's own tables map as
// normal cacheable memory.
unsafe impl PageAllocator for PagePool {
    fn alloc_zeroed(&self) -> Option<PhysAddr> {
        self.take(1)
    }

    fn alloc_contiguous_zeroed(&self, pages: usize) -> Option<PhysAddr> {
        if !pages.is_power_of_two() || pages > 16 {
            return None;
        }
        self.take(pages)
    }

    fn free(&self, pa: PhysAddr, pages: usize) {
        let first = ((pa.0 - self.base) / 4096) as usize;
        let mut used = self.used.borrow_mut();
        for j in first..first + pages {
            used[j / 64] &= !(1 << (j % 64));
        }
        self.live.set(self.live.get() - pages);
    }

    fn phys_to_virt(&self, pa: PhysAddr) -> *mut u64 {
        pa.0 as usize as *mut u64
    }
}

// SAFETY: both example hypervisors map all of their RAM (guest RAM included) identity as normal
// cacheable memory in their own tables; a physical address that does not fit the hypervisor's
// pointer width (above 4 GiB on the Cortex-A15) is refused, never lent.
unsafe impl GuestMemory for PagePool {
    fn with_va(
        &self,
        pa: PhysAddr,
        len: u64,
        f: &mut dyn FnMut(usize, usize),
    ) -> Result<(), GuestMemoryError> {
        let end = pa.0.checked_add(len).ok_or(GuestMemoryError { pa })?;
        match (usize::try_from(pa.0), usize::try_from(end)) {
            (Ok(va), Ok(_)) => {
                f(va, len as usize);
                Ok(())
            }
            // The first address without a virtual address: `pa` itself, or the first one past
            // the pointer width.
            _ => Err(GuestMemoryError {
                pa: PhysAddr(pa.0.max((usize::MAX as u64).saturating_add(1))),
            }),
        }
    }
}
