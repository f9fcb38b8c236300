//! An allocator of fake physical pages backed by host memory.

use crate::addr::PhysAddr;
use crate::machine::{GuestMemory, GuestMemoryError, PageAllocator, TraceEvent};
use crate::trace::{record, Record};
use std::boxed::Box;
use std::cell::RefCell;
use std::vec::Vec;

struct Inner {
    used: Vec<bool>,
    free: Vec<usize>,
    next: usize,
    allocations: u64,
    fail_at: Option<u64>,
    allocated: usize,
    freed: usize,
    guest: GuestLending,
}

/// How an [`Arena`] lends virtual addresses of guest memory ([`GuestMemory`]).
///
/// Guest memory is not arena memory: the lent addresses are [`GUEST_VA_OFFSET`] + the physical
/// address, recorded by the maintenance backends and never dereferenced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestLending {
    /// The whole range in one call (a port that maps all guest RAM).
    Whole,
    /// One call per 4 KiB page (a port that maps one page at a time, like KVM arm32's
    /// `kmap_atomic_pfn`).
    PerPage,
    /// Like `PerPage`, but no address can be lent at or above `from` (a port without a
    /// virtual address for high memory): the lending fails there.
    Below {
        /// First physical address without a virtual address.
        from: u64,
    },
}

/// What an [`Arena`] adds to a guest physical address to form the virtual address it lends.
pub const GUEST_VA_OFFSET: u64 = 0xffff_0000_0000_0000;

/// An arena of `capacity` fake physical pages starting at `base`.
///
/// It hands out zeroed pages (single, or aligned contiguous runs for concatenated roots),
/// counts them, can be told to fail the N-th allocation, and traces every descriptor write to
/// the per-thread [`log`](super::log), where the break-before-make checker sees it.
///
/// Creating an arena resets the recording of the current thread. Dropping it panics when the
/// checker found a violation (unless the thread is already panicking), and reports pages that
/// are still live only through [`live_pages`](Self::live_pages): tests assert on that.
pub struct Arena {
    base: PhysAddr,
    /// `capacity * 512` words from `Box::into_raw`, zero-initialised lazily by the host OS;
    /// freed in `Drop`.
    mem: *mut u64,
    words: usize,
    capacity: usize,
    inner: RefCell<Inner>,
}

impl Arena {
    /// An arena of `capacity` pages at physical address `base` (page aligned).
    pub fn new(base: PhysAddr, capacity: usize) -> Self {
        assert!(base.0 % 4096 == 0, "arena base must be page aligned");
        super::log::reset();
        let words = capacity * 512;
        let mem = Box::into_raw(std::vec![0u64; words].into_boxed_slice()) as *mut u64;
        Self {
            base,
            mem,
            words,
            capacity,
            inner: RefCell::new(Inner {
                used: std::vec![false; capacity],
                free: Vec::new(),
                next: 0,
                allocations: 0,
                fail_at: None,
                allocated: 0,
                freed: 0,
                guest: GuestLending::Whole,
            }),
        }
    }

    /// An arena of 64 Ki pages (256 MiB of fake memory, allocated lazily) at 0x8000_0000.
    pub fn standard() -> Self {
        Self::new(PhysAddr(0x8000_0000), 1 << 16)
    }

    /// Sets how guest memory is lent from now on (initially [`GuestLending::Whole`]).
    pub fn lend_guest_memory(&self, how: GuestLending) {
        self.inner.borrow_mut().guest = how;
    }

    /// Makes the `n`-th allocation from now fail (1 = the next one), and the ones after it
    /// succeed again.
    pub fn fail_nth(&self, n: u64) {
        let mut i = self.inner.borrow_mut();
        i.fail_at = Some(i.allocations + n);
    }

    /// Stops injecting failures.
    pub fn stop_failing(&self) {
        self.inner.borrow_mut().fail_at = None;
    }

    /// Number of allocation calls so far (successful or not).
    pub fn allocation_calls(&self) -> u64 {
        self.inner.borrow().allocations
    }

    /// Pages handed out and not yet freed.
    pub fn live_pages(&self) -> usize {
        let i = self.inner.borrow();
        i.allocated - i.freed
    }

    /// Pages handed out since creation.
    pub fn allocated_pages(&self) -> usize {
        self.inner.borrow().allocated
    }

    /// Pages freed since creation.
    pub fn freed_pages(&self) -> usize {
        self.inner.borrow().freed
    }

    /// True when `pa` is a page of this arena that is currently allocated.
    pub fn is_live(&self, pa: PhysAddr) -> bool {
        self.index(pa).is_some_and(|i| self.inner.borrow().used[i])
    }

    fn index(&self, pa: PhysAddr) -> Option<usize> {
        let off = pa.0.checked_sub(self.base.0)?;
        let i = (off / 4096) as usize;
        (off % 4096 == 0 && i < self.capacity).then_some(i)
    }

    fn take_failure(i: &mut Inner) -> bool {
        i.allocations += 1;
        if i.fail_at == Some(i.allocations) {
            i.fail_at = None;
            return true;
        }
        false
    }

    fn hand_out(&self, i: &mut Inner, idx: usize, n: usize) -> PhysAddr {
        for p in idx..idx + n {
            debug_assert!(!i.used[p]);
            i.used[p] = true;
            // SAFETY: page p lies inside the `words`-long allocation; no reference to it is
            // live (tables are only accessed through raw pointers).
            unsafe { core::ptr::write_bytes(self.mem.add(p * 512), 0, 512) };
        }
        i.allocated += n;
        let pa = PhysAddr(self.base.0 + idx as u64 * 4096);
        record(Record::Alloc { pa, pages: n });
        pa
    }
}

// SAFETY: every page handed out is a zeroed, 4 KiB-aligned piece of the arena's own host
// allocation, marked used until freed, and `phys_to_virt` returns its host address; contiguous
// runs are contiguous in the allocation.
unsafe impl PageAllocator for Arena {
    const TRACE: bool = true;

    fn alloc_zeroed(&self) -> Option<PhysAddr> {
        let mut i = self.inner.borrow_mut();
        if Self::take_failure(&mut i) {
            return None;
        }
        let idx = match i.free.pop() {
            Some(idx) => idx,
            None if i.next < i.used.len() => {
                i.next += 1;
                i.next - 1
            }
            None => return None,
        };
        Some(self.hand_out(&mut i, idx, 1))
    }

    fn alloc_contiguous_zeroed(&self, pages: usize) -> Option<PhysAddr> {
        if !pages.is_power_of_two() || pages > 16 {
            return None;
        }
        let mut i = self.inner.borrow_mut();
        if Self::take_failure(&mut i) {
            return None;
        }
        let start = i.next.next_multiple_of(pages);
        if start + pages > i.used.len() {
            return None;
        }
        for skipped in i.next..start {
            i.free.push(skipped);
        }
        i.next = start + pages;
        Some(self.hand_out(&mut i, start, pages))
    }

    fn free(&self, pa: PhysAddr, pages: usize) {
        record(Record::Free { pa, pages });
        let mut i = self.inner.borrow_mut();
        for p in 0..pages {
            let idx = self.index(PhysAddr(pa.0 + p as u64 * 4096));
            let idx = idx.unwrap_or_else(|| panic!("free of {pa:?}: not an arena page"));
            assert!(i.used[idx], "double free of page {idx} ({pa:?})");
            i.used[idx] = false;
            i.free.push(idx);
        }
        i.freed += pages;
    }

    fn phys_to_virt(&self, pa: PhysAddr) -> *mut u64 {
        match self.index(pa) {
            Some(idx) => {
                assert!(self.inner.borrow().used[idx], "access to free page {pa:?}");
                // SAFETY: idx < capacity, so the offset stays inside the allocation.
                unsafe { self.mem.add(idx * 512) }
            }
            // pt-core asks only for table pages; guest memory goes through `GuestMemory`.
            None => panic!("phys_to_virt({pa:?}): not an arena page (guest memory?)"),
        }
    }

    fn trace(&self, event: &TraceEvent) {
        record(Record::Table(*event));
    }
}

// SAFETY: the lent addresses are never dereferenced by anyone: on the host the maintenance
// backends only record them.
unsafe impl GuestMemory for Arena {
    fn with_va(
        &self,
        pa: PhysAddr,
        len: u64,
        f: &mut dyn FnMut(usize, usize),
    ) -> Result<(), GuestMemoryError> {
        let how = self.inner.borrow().guest;
        let end = pa.0.saturating_add(len);
        let va = |a: u64| (GUEST_VA_OFFSET | a) as usize;
        match how {
            GuestLending::Whole => {
                f(va(pa.0), (end - pa.0) as usize);
            }
            GuestLending::PerPage | GuestLending::Below { .. } => {
                let limit = match how {
                    GuestLending::Below { from } => from,
                    _ => u64::MAX,
                };
                let mut a = pa.0;
                while a < end {
                    if a >= limit {
                        return Err(GuestMemoryError { pa: PhysAddr(a) });
                    }
                    let next = ((a | 0xfff) + 1).min(end);
                    f(va(a), (next - a) as usize);
                    a = next;
                }
            }
        }
        Ok(())
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: `mem` came from `Box::into_raw` of a `words`-long boxed slice and is freed
        // only here.
        drop(unsafe { Box::from_raw(core::ptr::slice_from_raw_parts_mut(self.mem, self.words)) });
        if std::thread::panicking() {
            return;
        }
        let v = super::log::violations();
        if !v.is_empty() {
            panic!(
                "break-before-make checker: {} violation(s):\n{}",
                v.len(),
                v.join("\n")
            );
        }
    }
}
