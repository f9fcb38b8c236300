//! The private I/O area: a bump allocator of hyp VAs for device and executable mappings.

use super::HypError;
use pt_core::{AddrRange, VirtAddr, PAGE_SIZE};

/// A window `[base, end)` of hyp VAs that only [`create_io_mappings`] and
/// [`create_exec_mappings`] hand out, upwards from `base`, never reusing a VA (KVM's
/// `io_map_base` for `__create_hyp_private_mapping`, which counts downwards instead).
///
/// No TLB duty: handing out a VA changes no table.
///
/// [`create_io_mappings`]: super::HypTables::create_io_mappings
/// [`create_exec_mappings`]: super::HypTables::create_exec_mappings
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoArea {
    base: u64,
    end: u64,
    next: u64,
}

impl IoArea {
    /// The window `[base, base + size)`, page aligned, inside a VA space of `va_size` bytes.
    pub fn new(base: VirtAddr, size: u64, va_size: u64) -> Result<Self, HypError> {
        let r = AddrRange::new(base, size).map_err(HypError::BadIoArea)?;
        let end = r.end().0;
        if end > va_size {
            return Err(HypError::IoAreaOutsideVa {
                end,
                limit: va_size,
            });
        }
        Ok(Self {
            base: base.0,
            end,
            next: base.0,
        })
    }

    /// First VA of the window.
    pub fn base(&self) -> VirtAddr {
        VirtAddr(self.base)
    }

    /// First VA past the window.
    pub fn end(&self) -> VirtAddr {
        VirtAddr(self.end)
    }

    /// The VA the next allocation starts from (before alignment).
    pub fn next(&self) -> VirtAddr {
        VirtAddr(self.next)
    }

    /// Bytes not handed out yet.
    pub fn remaining(&self) -> u64 {
        self.end - self.next
    }

    /// The first VA of `[start, end)` that lies in the window, if any.
    pub fn overlap(&self, start: u64, end: u64) -> Option<VirtAddr> {
        (start < self.end && self.base < end).then(|| VirtAddr(start.max(self.base)))
    }

    /// Hands out `size` bytes (a non-zero multiple of a page) aligned to `align` (a power of
    /// two, at least a page) when that fits, else page aligned; [`HypError::IoAreaFull`] when
    /// neither fits. Every sum is checked, so a huge `size` cannot wrap past the window.
    pub(super) fn alloc(&mut self, size: u64, align: u64) -> Result<VirtAddr, HypError> {
        debug_assert!(size != 0 && size % PAGE_SIZE == 0);
        debug_assert!(align.is_power_of_two() && align >= PAGE_SIZE);
        let fits = |align: u64| {
            let start = self.next.checked_next_multiple_of(align)?;
            let end = start.checked_add(size)?;
            (end <= self.end).then_some((start, end))
        };
        let (start, end) = fits(align)
            .or_else(|| fits(PAGE_SIZE))
            .ok_or(HypError::IoAreaFull {
                size,
                available: self.remaining(),
            })?;
        self.next = end;
        Ok(VirtAddr(start))
    }

    /// Gives back everything handed out from `mark` (a value of [`next`](Self::next)) on: the
    /// rollback of an allocation whose mapping failed.
    pub(super) fn rewind(&mut self, mark: VirtAddr) {
        debug_assert!(self.base <= mark.0 && mark.0 <= self.next);
        self.next = mark.0;
    }
}
