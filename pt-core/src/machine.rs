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
pub trait PageAllocator {
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

    /// The hypervisor's virtual address of physical address `pa`. Only ever dereferenced for
    /// table pages this allocator handed out.
    fn phys_to_virt(&self, pa: PhysAddr) -> *mut u64;

    /// Receives trace events when [`TRACE`](Self::TRACE) is true.
    fn trace(&self, event: &TraceEvent) {
        let _ = event;
    }
}

impl<T: PageAllocator + ?Sized> PageAllocator for &T {
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

    /// Data-cache maintenance over `[va, va + len)` (line by line), then `DSB`.
    fn dcache(&self, op: CacheOp, va: VirtAddr, len: u64);

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
    fn dcache(&self, op: CacheOp, va: VirtAddr, len: u64) {
        (**self).dcache(op, va, len)
    }
    fn icache_invalidate_all(&self) {
        (**self).icache_invalidate_all()
    }
}
