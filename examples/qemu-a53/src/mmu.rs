//! EL2 stage-1 MMU enable, with the register values from pt-hyp.

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

pub const SCTLR_M: u64 = 1 << 0;
pub const SCTLR_C: u64 = 1 << 2;
pub const SCTLR_I: u64 = 1 << 12;
/// SCTLR_EL2 RES1 bits (ARMv8.0, HCR_EL2.E2H = 0); always set as well.
pub const SCTLR_EL2_RES1: u64 = 0x30c5_0830;

/// Invalidates EL2 TLBs and the I-cache, programs MAIR/TCR/TTBR0_EL2 and sets
/// the requested SCTLR_EL2 bits (plus its RES1 bits).
///
/// # Safety
/// The tables must map the running code, stack, data and the UART at their
/// current (identity) addresses with suitable attributes.
pub unsafe fn enable_hyp_mmu(regs: &HypMmuRegs) {
    // SAFETY: EL2 system register writes as required by the caller's
    // contract; the barriers order the table writes before the walk.
    unsafe {
        asm!(
            "dsb ish",
            "tlbi alle2",
            "ic iallu",
            "dsb ish",
            "isb",
            "msr mair_el2, {mair}",
            "msr tcr_el2, {tcr}",
            "msr ttbr0_el2, {ttbr}",
            "isb",
            "mrs {tmp}, sctlr_el2",
            "orr {tmp}, {tmp}, {set}",
            "msr sctlr_el2, {tmp}",
            "isb",
            mair = in(reg) regs.mair_el2,
            tcr = in(reg) regs.tcr_el2,
            ttbr = in(reg) regs.ttbr0_el2,
            set = in(reg) regs.sctlr_el2_set | SCTLR_EL2_RES1,
            tmp = out(reg) _,
            options(nostack),
        );
    }
}

pub fn sctlr_el2() -> u64 {
    let v;
    // SAFETY: reading SCTLR_EL2 at EL2 has no side effects.
    unsafe { asm!("mrs {}, sctlr_el2", out(reg) v, options(nomem, nostack)) };
    v
}
