//! A `Sync` allocator of fake physical pages, for tests where several threads fault into one
//! stage 2 at once (each with its own page cache topped up from this arena) the way several
//! vCPUs do.

use crate::addr::PhysAddr;
use crate::machine::{GuestMemory, GuestMemoryError, PageAllocator};
use std::boxed::Box;
use std::sync::Mutex;
use std::vec::Vec;

use super::GUEST_VA_OFFSET;

/// The bookkeeping of a [`SyncArena`], behind its mutex.
struct Inner {
    used: Vec<bool>,
    free: Vec<usize>,
    next: usize,
    allocated: usize,
    freed: usize,
}

/// An arena of `capacity` fake physical pages starting at `base` that any number of threads
/// may allocate from and free to at once.
///
/// Unlike [`Arena`](super::Arena) it does not trace descriptor writes to the per-thread log
/// (each thread would see only its own share of a shared tree), so the break-before-make
/// checker does not run on it: tests with it check the tree against a model instead. Guest
/// memory is lent whole at [`GUEST_VA_OFFSET`] + the physical address, never dereferenced.
/// Freeing a page that is not live panics (double free, foreign page), as a test wants.
pub struct SyncArena {
    base: PhysAddr,
    /// `capacity * 512` words from `Box::into_raw`; freed in `Drop`.
    mem: *mut u64,
    words: usize,
    capacity: usize,
    inner: Mutex<Inner>,
}

// SAFETY: `mem` is an allocation the arena owns for its whole life; every page of it belongs
// to at most one holder at a time (handed out under the mutex, taken back under it), and the
// holder synchronises its own accesses (the tables of a stage 2 are touched under the VM's
// lock). The bookkeeping is behind the mutex.
unsafe impl Sync for SyncArena {}
// SAFETY: as above; nothing in the arena is tied to the thread that created it.
unsafe impl Send for SyncArena {}

impl SyncArena {
    /// An arena of `capacity` pages at physical address `base` (page aligned).
    pub fn new(base: PhysAddr, capacity: usize) -> Self {
        assert!(base.0 % 4096 == 0, "arena base must be page aligned");
        let words = capacity * 512;
        let mem = Box::into_raw(std::vec![0u64; words].into_boxed_slice()) as *mut u64;
        Self {
            base,
            mem,
            words,
            capacity,
            inner: Mutex::new(Inner {
                used: std::vec![false; capacity],
                free: Vec::new(),
                next: 0,
                allocated: 0,
                freed: 0,
            }),
        }
    }

    /// Pages handed out and not yet freed.
    pub fn live_pages(&self) -> usize {
        let i = self.lock();
        i.allocated - i.freed
    }

    /// Pages handed out since creation.
    pub fn allocated_pages(&self) -> usize {
        self.lock().allocated
    }

    /// True when `pa` is a page of this arena that is currently allocated.
    pub fn is_live(&self, pa: PhysAddr) -> bool {
        self.index(pa).is_some_and(|i| self.lock().used[i])
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A thread that panicked while holding the lock left consistent bookkeeping (every
        // update is complete before any call that could panic), so a poisoned lock is usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn index(&self, pa: PhysAddr) -> Option<usize> {
        let off = pa.0.checked_sub(self.base.0)?;
        let i = (off / 4096) as usize;
        (off % 4096 == 0 && i < self.capacity).then_some(i)
    }

    /// Marks pages `idx..idx + n` used (with the lock held), then returns their address; the
    /// caller zeroes them after releasing the lock.
    fn mark(i: &mut Inner, idx: usize, n: usize) {
        for p in idx..idx + n {
            i.used[p] = true;
        }
        i.allocated += n;
    }

    fn zeroed(&self, idx: usize, n: usize) -> PhysAddr {
        // SAFETY: pages idx..idx + n lie inside the `words`-long allocation and were just
        // marked used for this caller alone: nobody else accesses them.
        unsafe { core::ptr::write_bytes(self.mem.add(idx * 512), 0, n * 512) };
        PhysAddr(self.base.0 + idx as u64 * 4096)
    }
}

// SAFETY: every page handed out is a zeroed, 4 KiB-aligned piece of the arena's own host
// allocation, marked used (under the mutex, so never to two callers) until freed, and
// `phys_to_virt` returns its host address; contiguous runs are contiguous in the allocation.
unsafe impl PageAllocator for SyncArena {
    fn alloc_zeroed(&self) -> Option<PhysAddr> {
        let idx = {
            let mut i = self.lock();
            let idx = match i.free.pop() {
                Some(idx) => idx,
                None if i.next < i.used.len() => {
                    i.next += 1;
                    i.next - 1
                }
                None => return None,
            };
            Self::mark(&mut i, idx, 1);
            idx
        };
        Some(self.zeroed(idx, 1))
    }

    fn alloc_contiguous_zeroed(&self, pages: usize) -> Option<PhysAddr> {
        if !pages.is_power_of_two() || pages > 16 {
            return None;
        }
        let start = {
            let mut i = self.lock();
            let start = i.next.next_multiple_of(pages);
            if start + pages > i.used.len() {
                return None;
            }
            for skipped in i.next..start {
                i.free.push(skipped);
            }
            i.next = start + pages;
            Self::mark(&mut i, start, pages);
            start
        };
        Some(self.zeroed(start, pages))
    }

    fn free(&self, pa: PhysAddr, pages: usize) {
        let mut i = self.lock();
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
            // SAFETY: idx < capacity, so the offset stays inside the allocation.
            Some(idx) => unsafe { self.mem.add(idx * 512) },
            // pt-core asks only for table pages; guest memory goes through `GuestMemory`.
            None => panic!("phys_to_virt({pa:?}): not an arena page (guest memory?)"),
        }
    }
}

// SAFETY: the lent addresses are never dereferenced by anyone: on the host the maintenance
// backends only record them.
unsafe impl GuestMemory for SyncArena {
    fn with_va(
        &self,
        pa: PhysAddr,
        len: u64,
        f: &mut dyn FnMut(usize, usize),
    ) -> Result<(), GuestMemoryError> {
        let end = pa.0.saturating_add(len);
        f((GUEST_VA_OFFSET | pa.0) as usize, (end - pa.0) as usize);
        Ok(())
    }
}

impl Drop for SyncArena {
    fn drop(&mut self) {
        // SAFETY: `mem` came from `Box::into_raw` of a `words`-long boxed slice and is freed
        // only here.
        drop(unsafe { Box::from_raw(core::ptr::slice_from_raw_parts_mut(self.mem, self.words)) });
    }
}
