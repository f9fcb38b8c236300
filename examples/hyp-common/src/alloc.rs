//! A page allocator over a physical range of the hypervisor's (identity-mapped) RAM, for the
//! page tables that pt-hyp builds: first-fit over a bitmap, with aligned contiguous runs for
//! concatenated stage-2 roots, and a live-page count for the leak checks.
//!
//! The pool is `Sync`: its bitmap and count sit behind a [`spin::Mutex`], so one pool (a
//! `static`) serves the page caches of every vCPU at once, each topping up its own cache on its
//! own CPU before it takes the VM's lock. Pages are zeroed outside the pool's lock.

use pt_core::{GuestMemory, GuestMemoryError, PageAllocator, PhysAddr};
use spin::Mutex;

/// Pages managed at most.
pub const MAX_PAGES: usize = 2048;

/// A bitmap page allocator over `[base, base + pages * 4 KiB)`, identity mapped (VA == PA).
pub struct PagePool {
    base: u64,
    pages: usize,
    inner: Mutex<Inner>,
}

/// The pool's mutable state: which pages are handed out, and how many.
struct Inner {
    used: [u64; MAX_PAGES / 64],
    live: usize,
}

impl PagePool {
    /// A pool over `pages` pages at `base` (4 KiB aligned).
    pub const fn new(base: u64, pages: usize) -> Self {
        let pages = if pages > MAX_PAGES { MAX_PAGES } else { pages };
        Self {
            base,
            pages,
            inner: Mutex::new(Inner {
                used: [0; MAX_PAGES / 64],
                live: 0,
            }),
        }
    }

    /// Pages currently handed out.
    pub fn live_pages(&self) -> usize {
        self.inner.lock().live
    }

    fn find(&self, used: &[u64; MAX_PAGES / 64], n: usize) -> Option<usize> {
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
        let i = {
            let mut inner = self.inner.lock();
            let i = self.find(&inner.used, n)?;
            for j in i..i + n {
                inner.used[j / 64] |= 1 << (j % 64);
            }
            inner.live += n;
            i
        };
        let pa = self.base + (i as u64) * 4096;
        // SAFETY: the pages were just marked used under the lock, so this caller owns them
        // exclusively (identity mapped, not in use by anyone); zero them before they are handed
        // out as tables.
        unsafe { core::ptr::write_bytes(pa as usize as *mut u8, 0, n * 4096) };
        Some(PhysAddr(pa))
    }
}

// SAFETY: the pool owns its identity-mapped range exclusively; each page is handed out once
// (marked under the lock, so two CPUs never get the same page), zeroed, until freed, and `phys_to_virt` is the identity the hypervisor's own tables map as
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
        // Pages the pool never handed out are ignored (no panic on a caller's bad value).
        let Some(first) = pa.0.checked_sub(self.base).map(|o| (o / 4096) as usize) else {
            return;
        };
        if first.saturating_add(pages) > self.pages {
            return;
        }
        let mut inner = self.inner.lock();
        for j in first..first + pages {
            inner.used[j / 64] &= !(1 << (j % 64));
        }
        inner.live = inner.live.saturating_sub(pages);
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
