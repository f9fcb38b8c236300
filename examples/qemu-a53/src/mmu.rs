//! EL2 stage-1 MMU enable, with the register values from pt-hyp.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{Readable, Writeable, MAIR_EL2, SCTLR_EL2, TCR_EL2, TTBR0_EL2};
use core::arch::asm;

/// Register values for the EL2 stage-1 translation regime.
#[derive(Clone, Copy, Debug)]
pub struct HypMmuRegs {
    pub mair_el2: u64,
    pub tcr_el2: u64,
    pub ttbr0_el2: u64,
    /// Bits OR-ed into SCTLR_EL2 (normally M | C | I).
    pub sctlr_el2_set: u64,
}

/// SCTLR_EL2.M, .C, .I: the MMU, the data cache and the instruction cache on.
pub const SCTLR_M: u64 = SCTLR_EL2::M::Enable.value;
pub const SCTLR_C: u64 = SCTLR_EL2::C::Cacheable.value;
pub const SCTLR_I: u64 = SCTLR_EL2::I::Cacheable.value;
/// SCTLR_EL2 RES1 bits (ARMv8.0, HCR_EL2.E2H = 0: bits 4, 5, 11, 16, 18, 22, 23, 28, 29);
/// always set as well (aarch64-cpu names fields, not RES1 bits).
pub const SCTLR_EL2_RES1: u64 = 0x30c5_0830;

/// Invalidates EL2 TLBs and the I-cache, programs MAIR/TCR/TTBR0_EL2 and sets
/// the requested SCTLR_EL2 bits (plus its RES1 bits).
///
/// # Safety
/// The tables must map the running code, stack, data and the UART at their
/// current (identity) addresses with suitable attributes.
pub unsafe fn enable_hyp_mmu(regs: &HypMmuRegs) {
    // SAFETY: EL2 TLB and I-cache invalidation (aarch64-cpu has no accessor for them): no
    // stale EL2 translation or instruction may survive into the new regime; the first DSB
    // orders the table writes before it.
    unsafe {
        asm!(
            "dsb ish",
            "tlbi alle2",
            "ic iallu",
            "dsb ish",
            "isb",
            options(nostack)
        )
    };
    MAIR_EL2.set(regs.mair_el2);
    TCR_EL2.set(regs.tcr_el2);
    TTBR0_EL2.set(regs.ttbr0_el2);
    barrier::isb(barrier::SY);
    // The caller's contract makes turning the MMU on keep the running code, stack and data
    // at the same addresses.
    SCTLR_EL2.set(SCTLR_EL2.get() | regs.sctlr_el2_set | SCTLR_EL2_RES1);
    barrier::isb(barrier::SY);
}

/// SCTLR_EL2 as it is.
pub fn sctlr_el2() -> u64 {
    SCTLR_EL2.get()
}
