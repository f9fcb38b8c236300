//! The caller's conversion from its own ("kernel") virtual addresses to hyp VAs and physical
//! addresses, which `create_hyp_mappings` applies (KVM: `kern_hyp_va` and `virt_to_phys`).

use pt_core::{PhysAddr, VirtAddr, PAGE_SIZE};

/// Where a kernel virtual address lives in hyp mode and in physical memory.
///
/// Implemented by [`LinearMap`] (fixed offsets, the common case) and by every
/// `Fn(u64) -> Option<(VirtAddr, PhysAddr)>` closure (any per-page rule, e.g. a walk of the
/// kernel's own tables for a non-linear range).
pub trait VaConversion {
    /// The hyp VA and the physical address of the page-aligned kernel VA `kva`, or `None`
    /// when it has none (the mapping is then refused with
    /// [`HypError::NotConvertible`](super::HypError::NotConvertible)).
    fn convert(&self, kva: u64) -> Option<(VirtAddr, PhysAddr)>;

    /// How many bytes from `kva` (at most `len`) are known to convert linearly, that is page
    /// `kva + n` to `convert(kva) + n` on both sides. The default, one page, makes the caller
    /// compare page by page; a linear conversion answers `len` and is applied once.
    fn linear_bytes(&self, kva: u64, len: u64) -> u64 {
        let _ = (kva, len);
        PAGE_SIZE
    }
}

impl<F: Fn(u64) -> Option<(VirtAddr, PhysAddr)>> VaConversion for F {
    fn convert(&self, kva: u64) -> Option<(VirtAddr, PhysAddr)> {
        self(kva)
    }
}

/// A linear conversion: kernel VA `kernel_base + n` is hyp VA `hyp_base + n` and physical
/// address `phys_base + n` (KVM's `kern_hyp_va` on the linear map: a fixed offset, and
/// `virt_to_phys`). Kernel VAs below `kernel_base` have no conversion; sums that overflow
/// 64 bits have none either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearMap {
    /// First kernel VA of the linear range.
    pub kernel_base: u64,
    /// Hyp VA of `kernel_base`.
    pub hyp_base: VirtAddr,
    /// Physical address of `kernel_base`.
    pub phys_base: PhysAddr,
}

impl LinearMap {
    /// The identity: kernel VA, hyp VA and PA are all equal (a bare-metal hypervisor that
    /// runs with VA == PA before its MMU is on and keeps that layout in hyp mode).
    pub const IDENTITY: LinearMap = LinearMap {
        kernel_base: 0,
        hyp_base: VirtAddr(0),
        phys_base: PhysAddr(0),
    };
}

impl VaConversion for LinearMap {
    fn convert(&self, kva: u64) -> Option<(VirtAddr, PhysAddr)> {
        let off = kva.checked_sub(self.kernel_base)?;
        Some((
            VirtAddr(self.hyp_base.0.checked_add(off)?),
            PhysAddr(self.phys_base.0.checked_add(off)?),
        ))
    }

    fn linear_bytes(&self, _kva: u64, len: u64) -> u64 {
        len
    }
}
