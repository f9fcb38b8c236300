//! HYP-mode stage-1 MMU enable (LPAE), with the register values from pt-hyp.

use core::arch::asm;

/// Register values for the HYP (PL2) stage-1 translation regime.
#[derive(Clone, Copy, Debug)]
pub struct HypMmuRegs {
    pub hmair0: u32,
    pub hmair1: u32,
    pub htcr: u32,
    /// 64-bit, written with MCRR.
    pub httbr: u64,
    /// The whole HSCTLR value to write: pt-armv7's `hsctlr_mmu_on()` (its RES1 bits,
    /// CP15BEN, I, C, M), nothing added here.
    pub hsctlr_set: u32,
}

pub const SCTLR_M: u32 = 1 << 0;
pub const SCTLR_C: u32 = 1 << 2;
pub const SCTLR_I: u32 = 1 << 12;

/// Invalidates HYP TLBs and the I-cache, programs HMAIR0/1, HTCR, HTTBR and
/// writes HSCTLR with the crate's value.
///
/// # Safety
/// The tables must map the running code, stack, data and the UART at their
/// current (identity) addresses with suitable attributes.
pub unsafe fn enable_hyp_mmu(regs: &HypMmuRegs) {
    // SAFETY: HYP-mode CP15 writes as required by the caller's contract; the
    // barriers order the table writes before the walk.
    unsafe {
        asm!(
            "dsb ish",
            "mcr p15, 4, {zero}, c8, c7, 0", // TLBIALLH
            "mcr p15, 0, {zero}, c7, c5, 0", // ICIALLU
            "dsb ish",
            "isb",
            "mcr p15, 4, {mair0}, c10, c2, 0", // HMAIR0
            "mcr p15, 4, {mair1}, c10, c2, 1", // HMAIR1
            "mcr p15, 4, {htcr}, c2, c0, 2",   // HTCR
            "mcrr p15, 4, {lo}, {hi}, c2",     // HTTBR
            "isb",
            "mcr p15, 4, {set}, c1, c0, 0", // HSCTLR
            "isb",
            zero = in(reg) 0u32,
            mair0 = in(reg) regs.hmair0,
            mair1 = in(reg) regs.hmair1,
            htcr = in(reg) regs.htcr,
            lo = in(reg) regs.httbr as u32,
            hi = in(reg) (regs.httbr >> 32) as u32,
            set = in(reg) regs.hsctlr_set,
            options(nostack),
        );
    }
}

pub fn hsctlr() -> u32 {
    let v;
    // SAFETY: reading HSCTLR in HYP mode has no side effects.
    unsafe { asm!("mrc p15, 4, {}, c1, c0, 0", out(reg) v, options(nomem, nostack)) };
    v
}
