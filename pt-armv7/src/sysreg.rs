//! The activation sequences of HYP mode beyond maintenance: loading a VM's stage 2
//! ([`load_stage2`]) and turning the HYP MMU on ([`enable_hyp_mmu`]) with the values of
//! [`regs`](crate::regs).
//!
//! As in [`maint`](crate::maint), every instruction is a cp15 access on `target_arch = "arm"`
//! and, on any other target (the host), a [`Record::Insn`] with the mnemonic below and the
//! value written, so host tests pin the sequence.
//!
//! | register | instruction (DDI 0406C B4.1) |
//! |----------|-------------|
//! | VTCR | `MCR p15, 4, Rt, c2, c1, 2` |
//! | VTTBR | `MCRR p15, 6, Rt, Rt2, c2` |
//! | HMAIR0 / HMAIR1 | `MCR p15, 4, Rt, c10, c2, 0` / `c10, c2, 1` |
//! | HTCR | `MCR p15, 4, Rt, c2, c0, 2` |
//! | HTTBR | `MCRR p15, 4, Rt, Rt2, c2` |
//! | TLBIALLH | `MCR p15, 4, Rt, c8, c7, 0` |
//! | HSCTLR | `MCR p15, 4, Rt, c1, c0, 0` |

#[cfg(not(target_arch = "arm"))]
use pt_core::trace::{record, Record};

/// The mnemonics recorded on the host (operand: the value written, 0 when ignored).
pub mod mnemonic {
    /// `MCR p15, 4, Rt, c2, c1, 2`: write VTCR.
    pub const MCR_VTCR: &str = "mcr vtcr";
    /// `MCRR p15, 6, Rt, Rt2, c2`: write VTTBR (the same as [`crate::maint::mnemonic::MCRR_VTTBR`]).
    pub const MCRR_VTTBR: &str = crate::maint::mnemonic::MCRR_VTTBR;
    /// `MCR p15, 4, Rt, c10, c2, 0`: write HMAIR0.
    pub const MCR_HMAIR0: &str = "mcr hmair0";
    /// `MCR p15, 4, Rt, c10, c2, 1`: write HMAIR1.
    pub const MCR_HMAIR1: &str = "mcr hmair1";
    /// `MCR p15, 4, Rt, c2, c0, 2`: write HTCR.
    pub const MCR_HTCR: &str = "mcr htcr";
    /// `MCRR p15, 4, Rt, Rt2, c2`: write HTTBR.
    pub const MCRR_HTTBR: &str = "mcrr httbr";
    /// `MCR p15, 4, Rt, c8, c7, 0`: TLBIALLH, this CPU's HYP TLB entries.
    pub const TLBIALLH: &str = "mcr tlbiallh";
    /// `MCR p15, 4, Rt, c1, c0, 0`: write HSCTLR.
    pub const MCR_HSCTLR: &str = "mcr hsctlr";
    /// `DSB ISH`.
    pub const DSB_ISH: &str = crate::maint::mnemonic::DSB_ISH;
    /// `ISB`.
    pub const ISB: &str = crate::maint::mnemonic::ISB;
}

/// `MCR p15, <op1>, Rt, <crn>, <crm>, <op2>` with a 32-bit value, or its record.
macro_rules! mcr {
    ($asm:literal, $mn:expr, $x:expr) => {{
        let x: u32 = $x;
        cfg_if::cfg_if! {
            if #[cfg(target_arch = "arm")] {
                // SAFETY: the caller of the public function upholds its contract for this
                // register write (see the `# Safety` section there).
                unsafe { core::arch::asm!($asm, x = in(reg) x, options(nostack, preserves_flags)) }
            } else {
                record(Record::Insn { mnemonic: $mn, operand: u64::from(x) });
            }
        }
    }};
}

/// `MCRR p15, <op1>, Rt, Rt2, c2` with a 64-bit value, or its record.
macro_rules! mcrr {
    ($asm:literal, $mn:expr, $x:expr) => {{
        let x: u64 = $x;
        cfg_if::cfg_if! {
            if #[cfg(target_arch = "arm")] {
                // SAFETY: as for `mcr!`.
                unsafe {
                    core::arch::asm!($asm, lo = in(reg) x as u32, hi = in(reg) (x >> 32) as u32,
                        options(nostack, preserves_flags))
                }
            } else {
                record(Record::Insn { mnemonic: $mn, operand: x });
            }
        }
    }};
}

/// A barrier, or its record.
macro_rules! barrier {
    ($asm:literal, $mn:expr) => {{
        cfg_if::cfg_if! {
            if #[cfg(target_arch = "arm")] {
                // SAFETY: a barrier has no effect beyond ordering.
                unsafe { core::arch::asm!($asm, options(nostack, preserves_flags)) }
            } else {
                record(Record::Insn { mnemonic: $mn, operand: 0 });
            }
        }
    }};
}

/// Loads a VM's stage 2 on this CPU: VTCR, then VTTBR, then `ISB` (KVM arm32's
/// `__activate_vm`, whose `ISB` the exception return supplies; here it is explicit so that an
/// address translation or TLB invalidation in between already uses the VM's VMID, as
/// [`Maint`](crate::Maint) expects of every writer of VTTBR).
///
/// VTCR is per CPU: every CPU that runs a vCPU of the VM needs it. Stage 2 applies once
/// `HCR.VM` is set (the caller's, with the rest of HCR).
///
/// # Safety
///
/// Run in HYP mode. `vttbr` must point at a live stage-2 tree whose geometry `vtcr` describes
/// (`regs::vtcr` / `regs::vttbr` of one tree), and the tree must stay allocated while any CPU
/// runs with it. No guest of another VM may be running on this CPU.
pub unsafe fn load_stage2(vtcr: u32, vttbr: u64) {
    mcr!("mcr p15, 4, {x}, c2, c1, 2", mnemonic::MCR_VTCR, vtcr);
    mcrr!("mcrr p15, 6, {lo}, {hi}, c2", mnemonic::MCRR_VTTBR, vttbr);
    barrier!("isb", mnemonic::ISB);
}

/// Turns the HYP MMU on with the values of `regs::{HMAIR0, HMAIR1, htcr, httbr,
/// hsctlr_mmu_on}` (pt-hyp's `HypMmuRegs`), in the order of KVM arm32's `__do_hyp_init`:
/// HMAIR0, HMAIR1, HTCR, HTTBR, `ISB`, then TLBIALLH and `DSB ISH` (no stale HYP entry from
/// before may survive), then HSCTLR and `ISB`.
///
/// `hsctlr` is written whole, not OR-ed into the current value: pass a complete HSCTLR (its
/// RES1 bits included, as `regs::hsctlr_mmu_on` gives it).
///
/// # Safety
///
/// Run in HYP mode, once per CPU, from code that is identity mapped by the tables at `httbr`
/// (the instructions after the HSCTLR write are fetched through them) and with every memory
/// the hypervisor touches afterwards mapped there (its stack included). The tables must stay
/// allocated for as long as the MMU uses them and be visible to the table walker.
pub unsafe fn enable_hyp_mmu(hmair0: u32, hmair1: u32, htcr: u32, httbr: u64, hsctlr: u32) {
    mcr!("mcr p15, 4, {x}, c10, c2, 0", mnemonic::MCR_HMAIR0, hmair0);
    mcr!("mcr p15, 4, {x}, c10, c2, 1", mnemonic::MCR_HMAIR1, hmair1);
    mcr!("mcr p15, 4, {x}, c2, c0, 2", mnemonic::MCR_HTCR, htcr);
    mcrr!("mcrr p15, 4, {lo}, {hi}, c2", mnemonic::MCRR_HTTBR, httbr);
    barrier!("isb", mnemonic::ISB);
    mcr!("mcr p15, 4, {x}, c8, c7, 0", mnemonic::TLBIALLH, 0);
    barrier!("dsb ish", mnemonic::DSB_ISH);
    mcr!("mcr p15, 4, {x}, c1, c0, 0", mnemonic::MCR_HSCTLR, hsctlr);
    barrier!("isb", mnemonic::ISB);
}
