//! System-register access at EL2 beyond maintenance: the CPU's identification registers that
//! size stage 2 ([`id_aa64mmfr0_el1`], [`id_aa64mmfr1_el1`]), and the two activation sequences
//! a hypervisor runs with the values of [`regs`](crate::regs): loading a VM's stage 2
//! ([`load_stage2`]) and turning the EL2 MMU on ([`enable_el2_mmu`]).
//!
//! As in [`maint`](crate::maint), every instruction is inline assembly on `aarch64` and, on
//! any other target (the host), a [`Record::Insn`] with its mnemonic and operand, so host
//! tests pin the sequence. The identification registers read on the host as the Cortex-A53's
//! values and are not recorded.

#[cfg(not(target_arch = "aarch64"))]
use pt_core::trace::{record, Record};

/// `ID_AA64MMFR0_EL1` of the Cortex-A53 (r0p4, DDI 0500J 4.3.22): PARange `0b0010` (40 bits),
/// ASIDBits `0b0010` (16), BigEnd `0b0001`, SNSMem `0b0001`; what the host build reads.
pub const CORTEX_A53_ID_AA64MMFR0: u64 = 0x1122;
/// `ID_AA64MMFR1_EL1` of the Cortex-A53 (ARMv8.0: VMIDBits `0b0000`, 8-bit VMIDs); what the
/// host build reads.
pub const CORTEX_A53_ID_AA64MMFR1: u64 = 0;

/// Reads `ID_AA64MMFR0_EL1` (PARange in `[3:0]`: [`regs::parange_to_pa_bits`]). On the host:
/// [`CORTEX_A53_ID_AA64MMFR0`].
///
/// [`regs::parange_to_pa_bits`]: crate::regs::parange_to_pa_bits
pub fn id_aa64mmfr0_el1() -> u64 {
    cfg_if::cfg_if! {
        if #[cfg(target_arch = "aarch64")] {
            let x: u64;
            // SAFETY: an identification register, readable at EL1 and EL2, no side effect.
            unsafe {
                core::arch::asm!("mrs {x}, id_aa64mmfr0_el1", x = out(reg) x,
                    options(nomem, nostack, preserves_flags))
            }
            x
        } else {
            CORTEX_A53_ID_AA64MMFR0
        }
    }
}

/// Reads `ID_AA64MMFR1_EL1` (VMIDBits in `[7:4]`: [`regs::vmidbits_to_bits`]). On the host:
/// [`CORTEX_A53_ID_AA64MMFR1`].
///
/// [`regs::vmidbits_to_bits`]: crate::regs::vmidbits_to_bits
pub fn id_aa64mmfr1_el1() -> u64 {
    cfg_if::cfg_if! {
        if #[cfg(target_arch = "aarch64")] {
            let x: u64;
            // SAFETY: an identification register, readable at EL1 and EL2, no side effect.
            unsafe {
                core::arch::asm!("mrs {x}, id_aa64mmfr1_el1", x = out(reg) x,
                    options(nomem, nostack, preserves_flags))
            }
            x
        } else {
            CORTEX_A53_ID_AA64MMFR1
        }
    }
}

/// Writes one EL2 system register (`msr <name>, x`), or records it on the host.
macro_rules! msr {
    ($name:literal, $x:expr) => {{
        let x: u64 = $x;
        cfg_if::cfg_if! {
            if #[cfg(target_arch = "aarch64")] {
                // SAFETY: the caller of the public function upholds its contract for this
                // register write (see the `# Safety` section there).
                unsafe {
                    core::arch::asm!(concat!("msr ", $name, ", {x}"), x = in(reg) x,
                        options(nostack, preserves_flags))
                }
            } else {
                record(Record::Insn { mnemonic: concat!("msr ", $name), operand: x });
            }
        }
    }};
}

/// Runs one operand-less instruction, or records it on the host.
macro_rules! op {
    ($text:literal) => {{
        cfg_if::cfg_if! {
            if #[cfg(target_arch = "aarch64")] {
                // SAFETY: a barrier or a TLB invalidation: no memory the compiler knows of is
                // touched; not `nomem`, so it orders the compiler's accesses too.
                unsafe { core::arch::asm!($text, options(nostack, preserves_flags)) }
            } else {
                record(Record::Insn { mnemonic: $text, operand: 0 });
            }
        }
    }};
}

/// Loads a VM's stage 2 on this CPU: `MSR VTCR_EL2, vtcr`, `MSR VTTBR_EL2, vttbr`, `ISB`
/// (KVM's `__load_guest_stage2`). The `ISB` makes the new values govern the instructions that
/// follow (an address translation, a TLB invalidation of this VMID), as pt-armv8's
/// maintenance expects of every writer of `VTTBR_EL2`.
///
/// `VTCR_EL2` is per CPU: every CPU that runs a vCPU of the VM needs it, not just the first.
/// Stage 2 applies once `HCR_EL2.VM` is set (the caller's, with the rest of `HCR_EL2`).
///
/// # Safety
///
/// Run at EL2 without VHE. `vttbr` must point at a live stage-2 tree whose geometry `vtcr`
/// describes (`regs::vtcr_el2` / `regs::vttbr_el2` of one tree), and the tree must stay
/// allocated while any CPU runs with it. No guest of another VM may be running on this CPU.
pub unsafe fn load_stage2(vtcr: u64, vttbr: u64) {
    msr!("vtcr_el2", vtcr);
    msr!("vttbr_el2", vttbr);
    op!("isb");
}

/// Turns the EL2 stage-1 MMU on with the values of `regs::{MAIR_EL2, tcr_el2, ttbr0_el2,
/// sctlr_el2_mmu_on}` (pt-hyp's `HypMmuRegs`), in the order of KVM's `__kvm_hyp_init`:
/// `MSR MAIR_EL2`, `MSR TCR_EL2`, `MSR TTBR0_EL2`, `ISB`, then `TLBI ALLE2` and `DSB ISH` (no
/// stale EL2 entry from before may survive), then `MSR SCTLR_EL2` and `ISB`.
///
/// `sctlr` is written whole, not OR-ed into the current value: pass a complete `SCTLR_EL2`
/// (RES1 bits included, as `regs::sctlr_el2_mmu_on` gives it).
///
/// # Safety
///
/// Run at EL2 without VHE, once per CPU, from code that is identity mapped by the tables at
/// `ttbr0` (the instructions after `MSR SCTLR_EL2` are fetched through them) and with every
/// memory the hypervisor touches afterwards mapped there (its stack included). The tables must
/// stay allocated for as long as the MMU uses them, and must be visible to the table walker
/// (written with the MMU and caches as the walk attributes in `tcr` expect, or cleaned).
pub unsafe fn enable_el2_mmu(mair: u64, tcr: u64, ttbr0: u64, sctlr: u64) {
    msr!("mair_el2", mair);
    msr!("tcr_el2", tcr);
    msr!("ttbr0_el2", ttbr0);
    op!("isb");
    op!("tlbi alle2");
    op!("dsb ish");
    msr!("sctlr_el2", sctlr);
    op!("isb");
}
