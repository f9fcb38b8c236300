//! The register values a hypervisor programs to turn its own (hyp-mode stage-1) MMU on.
//!
//! KVM computes them in `__do_hyp_init` (ARMv7: HTCR, HMAIR0/1, HTTBR, HSCTLR) and
//! `__kvm_hyp_init` (ARMv8: TCR_EL2, MAIR_EL2, TTBR0_EL2, SCTLR_EL2) for the tables that
//! `create_hyp_mappings` filled. Here each architecture's backend `regs` module supplies the
//! values; [`HypArch`] picks them for one tree and [`HypMmuRegs`] carries them, as `u64`s, in a
//! shape common to both architectures.

use crate::arch::{Arch, RegisterError};
use pt_core::{Geometry, PhysAddr};

/// Which architecture's registers a [`HypMmuRegs`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HypRegsArch {
    /// ARMv7 HYP mode: `tcr` is HTCR, `mair` is HMAIR1:HMAIR0, `ttbr` is HTTBR, `sctlr` is
    /// HSCTLR.
    Armv7,
    /// ARMv8 EL2: `tcr` is TCR_EL2, `mair` is MAIR_EL2, `ttbr` is TTBR0_EL2, `sctlr` is
    /// SCTLR_EL2.
    Armv8,
}

/// The values to program, in this order, before setting the MMU-enable bit (the `sctlr` value
/// has it set) while executing from the identity map: the memory-attribute indirection
/// register, the translation-control register, the table base, then the system control
/// register (followed by `ISB`).
///
/// Serves `__do_hyp_init` / `__kvm_hyp_init` after `kvm_mmu_init` built the tables. No TLB
/// duty here: the hyp TLB must be invalidated (`TLBIALLH` / `TLBI ALLE2`) before the MMU is
/// turned on, as both KVM init paths do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HypMmuRegs {
    /// Which architecture the values are for.
    pub arch: HypRegsArch,
    /// HTCR (32-bit register, zero-extended) or TCR_EL2.
    pub tcr: u64,
    /// ARMv7: HMAIR0 in bits `[31:0]` and HMAIR1 in bits `[63:32]`; ARMv8: MAIR_EL2.
    pub mair: u64,
    /// HTTBR (64-bit) or TTBR0_EL2: the root table of the hyp tree.
    pub ttbr: u64,
    /// HSCTLR (32-bit register, zero-extended) or SCTLR_EL2, with the MMU (M) and the data (C)
    /// and instruction (I) caches on; WXN is left clear. A **whole** register value, RES1 bits
    /// included: write it as it is, do not OR it into the register's current (reset or
    /// firmware) value, whose other bits are UNKNOWN or someone else's choice.
    pub sctlr: u64,
}

impl HypMmuRegs {
    /// HMAIR0 (ARMv7) or the low half of MAIR_EL2 (ARMv8).
    pub const fn mair_lo(&self) -> u32 {
        self.mair as u32
    }

    /// HMAIR1 (ARMv7) or the high half of MAIR_EL2 (ARMv8).
    pub const fn mair_hi(&self) -> u32 {
        (self.mair >> 32) as u32
    }
}

/// An architecture that can compute its hyp-mode MMU registers: implemented for
/// [`Armv7`](crate::arch::Armv7) and [`Armv8`](crate::arch::Armv8).
pub trait HypArch: Arch {
    /// The registers enabling hyp-mode translation through the tree rooted at `root` with
    /// geometry `geom`, for `pa_bits`-bit physical addresses (`__do_hyp_init` /
    /// `__kvm_hyp_init`). No TLB duty (see [`HypMmuRegs`]).
    ///
    /// Errors come from the backend's `regs` module: a geometry the translation-control
    /// register cannot express, a root it cannot hold, a PA size it has no encoding for.
    fn hyp_mmu_regs(
        root: PhysAddr,
        geom: &Geometry,
        pa_bits: u8,
    ) -> Result<HypMmuRegs, RegisterError>;

    /// Turns the hyp MMU on with `regs`, in the order the architecture requires (see
    /// [`enable_mmu`](super::enable_mmu)).
    ///
    /// # Safety
    ///
    /// As for [`enable_mmu`](super::enable_mmu).
    unsafe fn enable_mmu(regs: &HypMmuRegs);
}

// Not on an ARMv8 target: there the ARMv7 backend's instructions would not exist (point 7 of
// issue 18: the wrong backend is a compile error, not a silent no-op).
#[cfg(not(target_arch = "aarch64"))]
impl HypArch for crate::arch::Armv7 {
    /// HTCR from the geometry (`pa_bits` is not encoded: ARMv7 LPAE output addresses are
    /// always 40 bits), HMAIR0/HMAIR1, HTTBR = the root, HSCTLR with M, C, I and CP15BEN.
    fn hyp_mmu_regs(
        root: PhysAddr,
        geom: &Geometry,
        _pa_bits: u8,
    ) -> Result<HypMmuRegs, RegisterError> {
        use pt_armv7::regs;
        let tcr = regs::htcr(geom).map_err(RegisterError::Armv7)?;
        let ttbr = regs::httbr(root).map_err(RegisterError::Armv7)?;
        Ok(HypMmuRegs {
            arch: HypRegsArch::Armv7,
            tcr: tcr.into(),
            mair: u64::from(regs::HMAIR0) | u64::from(regs::HMAIR1) << 32,
            ttbr,
            sctlr: regs::hsctlr_mmu_on().into(),
        })
    }

    /// HMAIR0, HMAIR1, HTCR, HTTBR, `ISB`, TLBIALLH, `DSB ISH`, HSCTLR, `ISB`
    /// ([`pt_armv7::sysreg::enable_hyp_mmu`]).
    unsafe fn enable_mmu(r: &HypMmuRegs) {
        // SAFETY: the caller's contract. HTCR and HSCTLR are 32-bit registers: `hyp_mmu_regs`
        // zero-extended them.
        unsafe {
            pt_armv7::sysreg::enable_hyp_mmu(
                r.mair_lo(),
                r.mair_hi(),
                r.tcr as u32,
                r.ttbr,
                r.sctlr as u32,
            )
        }
    }
}

// Not on an ARMv7 target (see the ARMv7 impl).
#[cfg(not(target_arch = "arm"))]
impl HypArch for crate::arch::Armv8 {
    /// TCR_EL2 from the geometry and `pa_bits` (PS), MAIR_EL2, TTBR0_EL2 = the root,
    /// SCTLR_EL2 with M, C and I.
    fn hyp_mmu_regs(
        root: PhysAddr,
        geom: &Geometry,
        pa_bits: u8,
    ) -> Result<HypMmuRegs, RegisterError> {
        use pt_armv8::regs;
        let tcr = regs::tcr_el2(geom, pa_bits).map_err(RegisterError::Armv8)?;
        let ttbr = regs::ttbr0_el2(root).map_err(RegisterError::Armv8)?;
        Ok(HypMmuRegs {
            arch: HypRegsArch::Armv8,
            tcr,
            mair: regs::MAIR_EL2,
            ttbr,
            sctlr: regs::sctlr_el2_mmu_on(),
        })
    }

    /// MAIR_EL2, TCR_EL2, TTBR0_EL2, `ISB`, `TLBI ALLE2`, `DSB ISH`, SCTLR_EL2, `ISB`
    /// ([`pt_armv8::sysreg::enable_el2_mmu`]).
    unsafe fn enable_mmu(r: &HypMmuRegs) {
        // SAFETY: the caller's contract.
        unsafe { pt_armv8::sysreg::enable_el2_mmu(r.mair, r.tcr, r.ttbr, r.sctlr) }
    }
}
