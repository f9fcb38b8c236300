//! Where the map operation takes its new tables from.

use crate::addr::PhysAddr;
use crate::machine::PageAllocator;
use crate::table::{load_unlinked, store_unlinked};

/// A source of zeroed pages for new tables that cannot fail once its size was checked: the
/// map operation counts the tables it needs first and takes them only if
/// [`available`](Self::available) is enough.
pub trait TableSource {
    /// Pages the source can hand out.
    fn available(&self) -> usize;
    /// One zeroed page. Only called after `available()` was checked.
    fn take(&mut self) -> Option<PhysAddr>;
}

/// Marks word 0 of a reserved page as a link to the next one. Bit 0 stays clear, so the word is
/// an invalid descriptor at every level of both LPAE formats (ARMv7 and ARMv8 decide validity
/// by bit 0 alone): a reserved page never looks like a valid table to a walker, even if one
/// reached it by mistake.
pub(crate) const LINK_MARK: u64 = 0b10;

/// Pages reserved from an allocator before a walk, chained through their first word, so any
/// number can be held without memory of our own.
pub struct Reserve<'a, P: PageAllocator> {
    alloc: &'a P,
    head: Option<PhysAddr>,
    len: usize,
}

impl<'a, P: PageAllocator> Reserve<'a, P> {
    /// Reserves `n` pages, or none (every page given back) if the allocator runs out.
    pub fn fill(alloc: &'a P, n: usize) -> Option<Self> {
        let mut r = Self {
            alloc,
            head: None,
            len: 0,
        };
        for _ in 0..n {
            let pa = alloc.alloc_zeroed()?; // `r` is dropped on `?`, freeing what it holds
            let link = r.head.map_or(0, |h| h.0 | LINK_MARK);
            // SAFETY: `pa` was just allocated and is in no tree.
            unsafe { store_unlinked(alloc.phys_to_virt(pa), link) };
            r.head = Some(pa);
            r.len += 1;
        }
        Some(r)
    }
}

impl<P: PageAllocator> TableSource for Reserve<'_, P> {
    fn available(&self) -> usize {
        self.len
    }

    fn take(&mut self) -> Option<PhysAddr> {
        let pa = self.head?;
        let p = self.alloc.phys_to_virt(pa);
        // SAFETY: reserved pages are in no tree until handed out; word 0 holds the link.
        let link = unsafe { load_unlinked(p) };
        // SAFETY: as above; restoring the zero the allocator gave us.
        unsafe { store_unlinked(p, 0) };
        self.head = (link != 0).then_some(PhysAddr(link & !LINK_MARK));
        self.len -= 1;
        Some(pa)
    }
}

impl<P: PageAllocator> Drop for Reserve<'_, P> {
    fn drop(&mut self) {
        while let Some(pa) = self.take() {
            self.alloc.free(pa, 1);
        }
    }
}
