//! The page pool every subject allocates its tables from: a bump/free-list allocator over one
//! big pre-allocated, pre-faulted buffer, with no tracing.
//!
//! Freed pages go on a *dirty* list; [`Pool::scrub`] zeroes them and moves them to the clean
//! list. The benchmarks call `scrub` in their (untimed) setup, so `alloc_zeroed` is a pop for
//! every subject alike, as in a hypervisor whose page pool is zeroed ahead of time (KVM's
//! memory caches are topped up with `__GFP_ZERO` pages before the fault path runs). The timed
//! operations therefore measure page-table work, not `memset`.

use core::cell::{Cell, RefCell};
use pt_core::{GuestMemory, GuestMemoryError, PageAllocator, PhysAddr};
use std::alloc::{alloc, Layout};

/// Fake physical address of the first pool page (inside 40 bits, so ARMv7 LPAE and ARMv8
/// descriptors can hold every table address).
pub const PHYS_BASE: u64 = 0x1_0000_0000;
const PAGE: usize = 4096;

/// A single-threaded page pool (the benchmarks run on one thread).
pub struct Pool {
    mem: *mut u8,
    pages: usize,
    bump: Cell<usize>,
    clean: RefCell<Vec<u32>>,
    dirty: RefCell<Vec<u32>>,
    /// Freed multi-page roots (first page, pages): reused by `alloc_contiguous_zeroed`.
    roots: RefCell<Vec<(u32, usize)>>,
    live: Cell<usize>,
}

// SAFETY: the benchmarks use a pool from one thread only; page-table-generic's allocator trait
// demands `Send + Sync` of the handle, which is a `&'static Pool`.
unsafe impl Sync for Pool {}
// SAFETY: as above.
unsafe impl Send for Pool {}

impl Pool {
    /// A pool of `pages` zeroed, already faulted-in pages, leaked for the life of the process.
    pub fn leak(pages: usize) -> &'static Pool {
        let layout = Layout::from_size_align(pages * PAGE, 2 * 1024 * 1024).unwrap();
        // SAFETY: non-zero size.
        let mem = unsafe { alloc(layout) };
        assert!(!mem.is_null());
        // SAFETY: `mem` holds `pages * PAGE` bytes; writing them faults every page in now.
        unsafe { core::ptr::write_bytes(mem, 0, pages * PAGE) };
        Box::leak(Box::new(Pool {
            mem,
            pages,
            bump: Cell::new(0),
            clean: RefCell::new(Vec::with_capacity(pages)),
            dirty: RefCell::new(Vec::with_capacity(pages)),
            roots: RefCell::new(Vec::new()),
            live: Cell::new(0),
        }))
    }

    /// Pages handed out and not yet freed.
    pub fn live(&self) -> usize {
        self.live.get()
    }

    /// Zeroes every freed page and makes it available again (untimed setup).
    pub fn scrub(&self) {
        let mut dirty = self.dirty.borrow_mut();
        let mut clean = self.clean.borrow_mut();
        for &i in dirty.iter() {
            // SAFETY: `i` is a page of the pool, freed by its user.
            unsafe { core::ptr::write_bytes(self.mem.add(i as usize * PAGE), 0, PAGE) };
            clean.push(i);
        }
        dirty.clear();
    }

    #[inline]
    fn pa(i: usize) -> u64 {
        PHYS_BASE + (i * PAGE) as u64
    }

    #[inline]
    fn index(pa: u64) -> usize {
        ((pa - PHYS_BASE) as usize) / PAGE
    }

    /// One zeroed page.
    #[inline]
    pub fn page(&self) -> Option<u64> {
        let i = match self.clean.borrow_mut().pop() {
            Some(i) => i as usize,
            None => {
                let i = self.bump.get();
                if i >= self.pages {
                    return None;
                }
                self.bump.set(i + 1);
                i
            }
        };
        self.live.set(self.live.get() + 1);
        Some(Self::pa(i))
    }

    /// Gives one page back.
    #[inline]
    pub fn release(&self, pa: u64) {
        self.dirty.borrow_mut().push(Self::index(pa) as u32);
        self.live.set(self.live.get() - 1);
    }

    /// Host pointer of pool address `pa`.
    #[inline]
    pub fn ptr(&self, pa: u64) -> *mut u8 {
        debug_assert!(Self::index(pa) < self.pages);
        // SAFETY: only computes an address inside (or, for data pages never dereferenced,
        // beyond) the buffer; wrapping_add keeps it defined either way.
        self.mem.wrapping_add((pa - PHYS_BASE) as usize)
    }
}

// SAFETY: every page handed out is a zeroed page of the pool's own buffer, used by one tree
// until freed; `phys_to_virt` returns its address in the buffer.
unsafe impl PageAllocator for Pool {
    const TRACE: bool = false;

    #[inline]
    fn alloc_zeroed(&self) -> Option<PhysAddr> {
        self.page().map(PhysAddr)
    }

    fn alloc_contiguous_zeroed(&self, pages: usize) -> Option<PhysAddr> {
        let mut roots = self.roots.borrow_mut();
        if let Some(k) = roots.iter().position(|&(_, n)| n == pages) {
            let (i, _) = roots.swap_remove(k);
            let i = i as usize;
            // SAFETY: pages of the pool, freed by their user.
            unsafe { core::ptr::write_bytes(self.mem.add(i * PAGE), 0, pages * PAGE) };
            self.live.set(self.live.get() + pages);
            return Some(PhysAddr(Self::pa(i)));
        }
        let mut i = self.bump.get();
        while i % pages != 0 {
            i += 1;
        }
        if i + pages > self.pages {
            return None;
        }
        // Pages skipped for alignment are kept.
        for skipped in self.bump.get()..i {
            self.clean.borrow_mut().push(skipped as u32);
        }
        self.bump.set(i + pages);
        self.live.set(self.live.get() + pages);
        Some(PhysAddr(Self::pa(i)))
    }

    #[inline]
    fn free(&self, pa: PhysAddr, pages: usize) {
        if pages == 1 {
            self.release(pa.0);
        } else {
            self.roots
                .borrow_mut()
                .push((Self::index(pa.0) as u32, pages));
            self.live.set(self.live.get() - pages);
        }
    }

    #[inline]
    fn phys_to_virt(&self, pa: PhysAddr) -> *mut u64 {
        self.ptr(pa.0) as *mut u64
    }
}

// SAFETY: on the host the maintenance backends only record (here: count nothing and
// dereference nothing) the addresses they are given; guest memory has no backing here and is
// lent at its physical address, like an identity-mapped hypervisor would.
unsafe impl GuestMemory for Pool {
    #[inline]
    fn with_va(
        &self,
        pa: PhysAddr,
        len: u64,
        f: &mut dyn FnMut(usize, usize),
    ) -> Result<(), GuestMemoryError> {
        f(pa.0 as usize, len as usize);
        Ok(())
    }
}

impl Pool {
    /// Pool address of the host pointer `p` (inside the buffer).
    #[inline]
    pub fn pa_of(&self, p: *const u8) -> u64 {
        PHYS_BASE + (p as usize - self.mem as usize) as u64
    }
}
