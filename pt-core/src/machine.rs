//! The seams to the machine: page allocation, TLB maintenance, cache maintenance, barriers.
//!
//! pt-core never touches hardware itself. A hypervisor (or a test) passes in a
//! [`PageAllocator`]; the backends (pt-armv7, pt-armv8) implement [`Maintenance`] with the real
//! instructions on their target and with the recorder of [`trace`](crate::trace) on the host.

use crate::addr::{Ipa, PhysAddr, VirtAddr};
use crate::geometry::Stage;

/// A source of zeroed 4 KiB pages for translation tables, with the hypervisor's
/// physical-to-virtual conversion.
///
/// Methods take `&self`: allocators are shared by every tree and hold their state in cells or
/// behind a lock, like a kernel's page allocator.
///
/// The allocator is used for table pages only: guest memory (for cache maintenance) is reached
/// through [`GuestMemory`], never through [`phys_to_virt`](Self::phys_to_virt).
///
/// # Safety
///
/// pt-core reads and writes the pages this allocator hands out through the pointers
/// [`phys_to_virt`](Self::phys_to_virt) returns, from safe code. An implementation must
/// guarantee, for every page it hands out and until that page is given back with
/// [`free`](Self::free):
///
/// - the page is 4 KiB aligned, zeroed, and owned by nobody else (not handed out twice, not in
///   use by the hypervisor);
/// - `phys_to_virt` of any address inside it returns a pointer to that byte of the page, valid
///   for 8-byte aligned reads and writes, mapped as normal write-back cacheable memory in the
///   hypervisor's address space (the same attributes the table walker uses);
/// - a contiguous run from [`alloc_contiguous_zeroed`](Self::alloc_contiguous_zeroed) is
///   physically contiguous and contiguous in the virtual addresses `phys_to_virt` returns.
pub unsafe trait PageAllocator {
    /// When true, every descriptor write and tree retirement is reported to
    /// [`trace`](Self::trace). Real allocators leave it false, which compiles the reports out.
    const TRACE: bool = false;

    /// One zeroed page, or `None` when memory is exhausted.
    fn alloc_zeroed(&self) -> Option<PhysAddr>;

    /// `pages` physically contiguous zeroed pages aligned to `pages * 4 KiB` (`pages` is a
    /// power of two, at most 16): the concatenated root tables of stage 2.
    fn alloc_contiguous_zeroed(&self, pages: usize) -> Option<PhysAddr>;

    /// Returns `pages` pages starting at `pa`, as obtained from one of the allocation methods.
    fn free(&self, pa: PhysAddr, pages: usize);

    /// The hypervisor's virtual address of physical address `pa`. pt-core calls it only for
    /// table pages this allocator handed out (never for guest memory).
    fn phys_to_virt(&self, pa: PhysAddr) -> *mut u64;

    /// Receives trace events when [`TRACE`](Self::TRACE) is true.
    fn trace(&self, event: &TraceEvent) {
        let _ = event;
    }
}

// SAFETY: forwards every method to `T`, whose contract carries over unchanged.
unsafe impl<T: PageAllocator + ?Sized> PageAllocator for &T {
    const TRACE: bool = T::TRACE;
    fn alloc_zeroed(&self) -> Option<PhysAddr> {
        (**self).alloc_zeroed()
    }
    fn alloc_contiguous_zeroed(&self, pages: usize) -> Option<PhysAddr> {
        (**self).alloc_contiguous_zeroed(pages)
    }
    fn free(&self, pa: PhysAddr, pages: usize) {
        (**self).free(pa, pages)
    }
    fn phys_to_virt(&self, pa: PhysAddr) -> *mut u64 {
        (**self).phys_to_virt(pa)
    }
    fn trace(&self, event: &TraceEvent) {
        (**self).trace(event)
    }
}

/// The host memory behind guest RAM could not be reached for cache maintenance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestMemoryError {
    /// First physical address the port could not lend a virtual address for.
    pub pa: PhysAddr,
}

impl core::fmt::Display for GuestMemoryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "no hypervisor virtual address for guest memory at {:#x}",
            self.pa.0
        )
    }
}

impl core::error::Error for GuestMemoryError {}

/// Access to the host memory behind guest RAM, for data- and instruction-cache maintenance.
///
/// Cache maintenance by address needs a hypervisor virtual address of every guest page it
/// cleans. Guest RAM is not table memory: a hypervisor may not map all of it (on the
/// Cortex-A15, guest RAM may lie above 4 GiB, where no 32-bit virtual address exists; KVM arm32
/// maps each page for the moment with `kmap_atomic_pfn`). So the crates ask for a virtual
/// address only for the length of one closure call: [`with_va`](Self::with_va) lends one (or
/// several, piece by piece), and the port may map the memory just for that call and unmap it
/// afterwards. pt-core never dereferences a lent address; it only issues cache maintenance
/// instructions on it.
///
/// # Safety
///
/// Every `(va, len)` passed to `f` must map the physical range the call stands for, as normal
/// cacheable memory, in the hypervisor's current address space for the whole call (a cache
/// maintenance instruction on an unmapped address takes a translation fault in the
/// hypervisor, and on another physical page it maintains the wrong memory).
pub unsafe trait GuestMemory {
    /// Calls `f(va, len)` with virtual addresses that together cover the physical range
    /// `[pa, pa + len)` in order (one call for a port that maps all guest RAM, one call per
    /// page for a port that maps pages one at a time), each valid for the duration of its call.
    /// If any part cannot be mapped, returns [`GuestMemoryError`] naming its first address
    /// (the parts before it were lent and maintained).
    fn with_va(
        &self,
        pa: PhysAddr,
        len: u64,
        f: &mut dyn FnMut(usize, usize),
    ) -> Result<(), GuestMemoryError>;
}

// SAFETY: forwards to `T`, whose contract carries over unchanged.
unsafe impl<T: GuestMemory + ?Sized> GuestMemory for &T {
    fn with_va(
        &self,
        pa: PhysAddr,
        len: u64,
        f: &mut dyn FnMut(usize, usize),
    ) -> Result<(), GuestMemoryError> {
        (**self).with_va(pa, len, f)
    }
}

/// Issues `op` on the data cache of the guest memory `[pa, pa + len)`, through the virtual
/// addresses `mem` lends (each piece ends with the backend's `DSB`).
pub fn guest_dcache<M: Maintenance + ?Sized, G: GuestMemory + ?Sized>(
    maint: &M,
    mem: &G,
    op: CacheOp,
    pa: PhysAddr,
    len: u64,
) -> Result<(), GuestMemoryError> {
    mem.with_va(pa, len, &mut |va, n| maint.dcache(op, va, n))
}

/// What a descriptor means, without its regime's attribute type (for tracing and checking).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescKind {
    /// Invalid.
    Invalid,
    /// Table pointing at the given page.
    Table(PhysAddr),
    /// Leaf (block or page) mapping the given output address.
    Leaf(PhysAddr),
}

/// A traced event, for the host checker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    /// One descriptor store.
    Write {
        /// Stage of the tree.
        stage: Stage,
        /// Table page holding the entry.
        table: PhysAddr,
        /// Index of the entry in the table (across concatenated root pages).
        index: usize,
        /// Level of the table.
        level: u8,
        /// First input address the entry covers.
        ia: u64,
        /// Raw old and new descriptor.
        old: u64,
        /// Raw new descriptor.
        new: u64,
        /// Decoded old descriptor.
        old_kind: DescKind,
        /// Decoded new descriptor.
        new_kind: DescKind,
    },
    /// A tree's root is retired: everything below it was made unreachable by a whole-regime
    /// invalidation and is about to be freed.
    RetireRoot {
        /// Stage of the tree.
        stage: Stage,
        /// Root table page.
        root: PhysAddr,
    },
}

/// A TLB invalidation, as the page-table code asks for it. Backends turn each into their
/// architecture's instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlbOp {
    /// Stage-2 entries for one IPA of the VM whose VTTBR (VMID and base) is given
    /// (ARMv8 `TLBI IPAS2E1IS`). Only issued when [`Maintenance::S2_BY_IPA`] is true.
    S2Ipa {
        /// VTTBR value of the VM (the VMID is taken from it).
        vttbr: u64,
        /// The IPA.
        ipa: Ipa,
        /// Level of the entry that changed (3 = page).
        level: u8,
    },
    /// Completes a batch of [`TlbOp::S2Ipa`]: the combined stage-1+2 entries of the VM
    /// (ARMv8 `TLBI VMALLE1IS`).
    S2CombinedForVmid {
        /// VTTBR value of the VM.
        vttbr: u64,
    },
    /// Every stage-1 and stage-2 entry of the VM (ARMv8 `TLBI VMALLS12E1IS`,
    /// ARMv7 `TLBIALLIS` in HYP mode with the VM's VTTBR loaded): `kvm_flush_remote_tlbs`.
    S2Vmid {
        /// VTTBR value of the VM.
        vttbr: u64,
    },
    /// Hyp-mode entries for one VA (ARMv8 `TLBI VAE2IS`, ARMv7 `TLBIMVAHIS`).
    HypVa {
        /// The virtual address.
        va: VirtAddr,
    },
    /// Every hyp-mode entry (ARMv8 `TLBI ALLE2IS`, ARMv7 `TLBIALLHIS`).
    HypAll,
}

/// A barrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Barrier {
    /// Make prior stores visible to the table walkers of the inner shareable domain, before TLB
    /// maintenance (`DSB ISHST`; `DSB ISHST` on ARMv7 too).
    DsbIshSt,
    /// Wait for prior TLB and cache maintenance to complete in the inner shareable domain
    /// (`DSB ISH`).
    DsbIsh,
    /// Synchronise the context of this CPU (`ISB`).
    Isb,
}

/// A data-cache operation by virtual address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOp {
    /// Clean and invalidate to the point of coherency (`DC CIVAC`, ARMv7 `DCCIMVAC`).
    CleanInvalidate,
    /// Clean to the point of coherency (`DC CVAC`, ARMv7 `DCCMVAC`).
    Clean,
    /// Clean to the point of unification (`DC CVAU`, ARMv7 `DCCMVAU`): what instruction fetches
    /// need to see data written through the data cache, before the instruction cache is
    /// invalidated.
    CleanToPou,
}

/// TLB maintenance, cache maintenance and barriers of one architecture.
///
/// Implemented by the backends; the real instructions run on their target, and on the host the
/// same code path reports to [`trace`](crate::trace) so tests can assert on the sequence.
pub trait Maintenance {
    /// Whether the architecture can invalidate stage-2 entries by IPA (ARMv8 yes, ARMv7 no: an
    /// ARMv7 batch always ends in one whole-VMID invalidation).
    const S2_BY_IPA: bool;

    /// Issues one TLB invalidation (no barrier).
    fn tlb(&self, op: TlbOp);

    /// Issues one barrier.
    fn barrier(&self, barrier: Barrier);

    /// Data-cache maintenance over the hypervisor virtual addresses `[va, va + len)` (line by
    /// line), then `DSB ISH`. The range is one the caller may access (a table page, or a piece
    /// of guest memory lent by [`GuestMemory::with_va`]); it is a `usize` range, so it always
    /// fits the hypervisor's address space.
    fn dcache(&self, op: CacheOp, va: usize, len: usize);

    /// Invalidates the whole instruction cache to the point of unification, inner shareable
    /// (`IC IALLUIS`; ARMv7 `ICIALLUIS` + `BPIALLIS`), then `DSB ISH; ISB`.
    fn icache_invalidate_all(&self);
}

impl<T: Maintenance + ?Sized> Maintenance for &T {
    const S2_BY_IPA: bool = T::S2_BY_IPA;
    fn tlb(&self, op: TlbOp) {
        (**self).tlb(op)
    }
    fn barrier(&self, barrier: Barrier) {
        (**self).barrier(barrier)
    }
    fn dcache(&self, op: CacheOp, va: usize, len: usize) {
        (**self).dcache(op, va, len)
    }
    fn icache_invalidate_all(&self) {
        (**self).icache_invalidate_all()
    }
}
