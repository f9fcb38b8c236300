//! TLB maintenance, cache maintenance and barriers at EL2 ([`Maint`]).
//!
//! Each instruction is one small private function (module `insn`) whose body is the inline assembly
//! on `aarch64` and, on every other target (the host), a [`Record::Insn`] with the same mnemonic
//! and operand. The sequencing logic above it (which instructions, in which order, with which
//! operands) is the same code on both, so host tests pin what the CPU executes.
//!
//! Every [`Maintenance`] method first records the semantic operation ([`Record::Tlb`],
//! [`Record::Barrier`], ...); [`record`] compiles to nothing without pt-core's `testkit`.
//!
//! Stage-2 invalidations act on the VMID in `VTTBR_EL2`, so they load the VM's `VTTBR` first
//! and restore the previous value afterwards (KVM's `__tlb_switch_to_guest` /
//! `__tlb_switch_to_host`), each write followed by `ISB`. When `VTTBR_EL2` already holds the
//! VM's value (the hypervisor handles a fault of the guest it runs), nothing is switched; this
//! relies on every writer of `VTTBR_EL2` following the write with `ISB`, as the architecture
//! requires anyway.

use pt_core::trace::{record, Record};
use pt_core::{Barrier, CacheOp, Maintenance, TlbOp, VirtAddr};

/// The ARMv8 EL2 maintenance backend: `TLBI`, `DC`, `IC`, `DSB`, `ISB` (KVM's
/// `__kvm_tlb_flush_vmid_ipa`, `__kvm_tlb_flush_vmid`, `__kvm_flush_vm_context` and the hyp
/// TLB flushes, `__flush_dcache_area`, `__flush_icache_all`).
///
/// Stage 2 can be invalidated by IPA ([`Maintenance::S2_BY_IPA`] is true). The caller brackets a
/// batch with `DSB ISHST` before and `DSB ISH` after; the methods add no barrier of their own
/// except `ISB` after `VTTBR_EL2` writes. KVM also waits (`DSB ISH`) between the last
/// `TLBI IPAS2E1IS` and the `TLBI VMALLE1IS` that completes a batch, so that no walker can
/// refill a combined entry from the old stage-2 entry: the caller owes that barrier too
/// (pt-core's `TlbBatch::sync` issues it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Maint;

impl Maint {
    /// Translates the guest virtual address `va` through the guest's current stage 1, as an
    /// EL1 read (`AT S1E1R`, then `ISB`), and returns the `PAR_EL1` it produced; the previous
    /// `PAR_EL1` is restored, since it belongs to the guest (KVM's `__translate_far_to_hpfar`).
    /// Run it at EL2 while the guest's EL1 translation registers and `VTTBR_EL2` are still
    /// loaded (on the guest-exit path). `PAR_EL1.F` (bit 0) set means the walk failed;
    /// otherwise `PA[47:12]` is in bits `[47:12]` (the IPA: stage 2 is not applied).
    pub fn translate_guest_read(&self, va: u64) -> u64 {
        let saved = insn::mrs_par_el1();
        let par = insn::at_s1e1r(va);
        insn::msr_par_el1(saved);
        par
    }
}

/// Data-cache line size used on the host, where there is no `CTR_EL0`.
pub const HOST_DCACHE_LINE: u64 = 64;

/// The instructions, one function each.
mod insn {
    #[cfg(not(target_arch = "aarch64"))]
    use super::emit;
    #[cfg(not(target_arch = "aarch64"))]
    use pt_core::trace::Record;

    /// Defines a function per instruction with no operand.
    macro_rules! no_operand {
        ($($(#[$m:meta])* $name:ident => $text:literal;)*) => {$(
            $(#[$m])*
            #[inline(always)]
            pub(super) fn $name() {
                cfg_if::cfg_if! {
                    if #[cfg(target_arch = "aarch64")] {
                        // SAFETY: a TLB/cache maintenance or barrier instruction at EL2: it
                        // touches no memory the compiler knows of and no register but the
                        // system state it maintains; it is not `nomem`, so it also orders the
                        // compiler's memory accesses like the barrier it is.
                        unsafe { core::arch::asm!($text, options(nostack, preserves_flags)) }
                    } else {
                        emit(Record::Insn { mnemonic: $text, operand: 0 });
                    }
                }
            }
        )*};
    }

    /// Defines a function per instruction with one register operand.
    macro_rules! one_operand {
        ($($(#[$m:meta])* $name:ident => $text:literal;)*) => {$(
            $(#[$m])*
            #[inline(always)]
            pub(super) fn $name(x: u64) {
                cfg_if::cfg_if! {
                    if #[cfg(target_arch = "aarch64")] {
                        // SAFETY: as for the operand-less instructions; `x` is a VA/IPA page
                        // number or line address the instruction only uses to select entries.
                        unsafe {
                            core::arch::asm!(concat!($text, ", {x}"), x = in(reg) x,
                                options(nostack, preserves_flags))
                        }
                    } else {
                        emit(Record::Insn { mnemonic: $text, operand: x });
                    }
                }
            }
        )*};
    }

    no_operand! {
        /// Invalidates the combined stage-1+2 entries of the current VMID, inner shareable.
        tlbi_vmalle1is => "tlbi vmalle1is";
        /// Invalidates all stage-1 and stage-2 entries of the current VMID, inner shareable.
        tlbi_vmalls12e1is => "tlbi vmalls12e1is";
        /// Invalidates every EL2 entry, inner shareable.
        tlbi_alle2is => "tlbi alle2is";
        /// Invalidates every EL1&0 entry of every VMID (stage 1, stage 2 and combined), inner
        /// shareable.
        tlbi_alle1is => "tlbi alle1is";
        /// Waits for prior stores, inner shareable.
        dsb_ishst => "dsb ishst";
        /// Waits for prior accesses and maintenance, inner shareable.
        dsb_ish => "dsb ish";
        /// Context synchronisation.
        isb => "isb";
        /// Invalidates all instruction caches to PoU, inner shareable.
        ic_ialluis => "ic ialluis";
    }

    one_operand! {
        /// Invalidates stage-2 entries for IPA page number `x` (`IPA[47:12]` in `[35:0]`) of the
        /// current VMID, inner shareable.
        tlbi_ipas2e1is => "tlbi ipas2e1is";
        /// Invalidates EL2 entries for VA page number `x` (`VA[55:12]` in `[43:0]`), inner
        /// shareable.
        tlbi_vae2is => "tlbi vae2is";
        /// Cleans and invalidates the data-cache line at VA `x` to PoC.
        dc_civac => "dc civac";
        /// Cleans the data-cache line at VA `x` to PoC.
        dc_cvac => "dc cvac";
        /// Cleans the data-cache line at VA `x` to PoU.
        dc_cvau => "dc cvau";
    }

    /// Writes `VTTBR_EL2`.
    #[inline(always)]
    pub(super) fn msr_vttbr_el2(x: u64) {
        cfg_if::cfg_if! {
            if #[cfg(target_arch = "aarch64")] {
                // SAFETY: at EL2, VTTBR_EL2 selects the VMID and stage-2 root of EL1&0; changing
                // it affects no EL2 access, and the callers restore the previous value.
                unsafe {
                    core::arch::asm!("msr vttbr_el2, {x}", x = in(reg) x,
                        options(nostack, preserves_flags))
                }
            } else {
                emit(Record::Insn { mnemonic: "msr vttbr_el2", operand: x });
            }
        }
    }

    /// Reads `PAR_EL1` (0 on the host).
    #[inline(always)]
    pub(super) fn mrs_par_el1() -> u64 {
        cfg_if::cfg_if! {
            if #[cfg(target_arch = "aarch64")] {
                let x: u64;
                // SAFETY: reading a system register at EL2 has no side effect.
                unsafe {
                    core::arch::asm!("mrs {x}, par_el1", x = out(reg) x,
                        options(nomem, nostack, preserves_flags))
                }
                x
            } else {
                emit(Record::Insn { mnemonic: "mrs par_el1", operand: 0 });
                0
            }
        }
    }

    /// Writes `PAR_EL1`.
    #[inline(always)]
    pub(super) fn msr_par_el1(x: u64) {
        cfg_if::cfg_if! {
            if #[cfg(target_arch = "aarch64")] {
                // SAFETY: PAR_EL1 only holds the result of address translations; restoring the
                // guest's value affects nothing else.
                unsafe {
                    core::arch::asm!("msr par_el1, {x}", x = in(reg) x,
                        options(nostack, preserves_flags))
                }
            } else {
                emit(Record::Insn { mnemonic: "msr par_el1", operand: x });
            }
        }
    }

    /// `AT S1E1R, x`: stage-1 EL1 read translation of VA `x` into `PAR_EL1`, then `ISB`; returns
    /// the new `PAR_EL1` (on the host: the value a test queued, else a failed walk).
    #[inline(always)]
    pub(super) fn at_s1e1r(x: u64) -> u64 {
        cfg_if::cfg_if! {
            if #[cfg(target_arch = "aarch64")] {
                // SAFETY: an address translation only writes PAR_EL1 (saved and restored by the
                // caller); it walks the current EL1&0 stage-1 tables (the guest's) and never
                // faults at EL2.
                unsafe {
                    core::arch::asm!("at s1e1r, {x}", x = in(reg) x,
                        options(nostack, preserves_flags))
                }
                isb();
                mrs_par_el1()
            } else {
                emit(Record::Insn { mnemonic: "at s1e1r", operand: x });
                isb();
                mrs_par_el1();
                pt_core::trace::host_par()
            }
        }
    }

    /// Reads `VTTBR_EL2` (0 on the host, its reset value there).
    #[inline(always)]
    pub(super) fn mrs_vttbr_el2() -> u64 {
        cfg_if::cfg_if! {
            if #[cfg(target_arch = "aarch64")] {
                let x: u64;
                // SAFETY: reading a system register at EL2 has no side effect.
                unsafe {
                    core::arch::asm!("mrs {x}, vttbr_el2", x = out(reg) x,
                        options(nomem, nostack, preserves_flags))
                }
                x
            } else {
                emit(Record::Insn { mnemonic: "mrs vttbr_el2", operand: 0 });
                0
            }
        }
    }

    /// The smallest data-cache line in bytes (`CTR_EL0.DminLine`, `4 << [19:16]`; 64 on the
    /// host, which records nothing for it).
    #[inline(always)]
    pub(super) fn dcache_line() -> u64 {
        cfg_if::cfg_if! {
            if #[cfg(target_arch = "aarch64")] {
                let ctr: u64;
                // SAFETY: reading CTR_EL0 has no side effect.
                unsafe {
                    core::arch::asm!("mrs {x}, ctr_el0", x = out(reg) ctr,
                        options(nomem, nostack, preserves_flags))
                }
                4 << ((ctr >> 16) & 0xf)
            } else {
                super::HOST_DCACHE_LINE
            }
        }
    }
}

/// Reports `r` to pt-core's recorder (nothing unless pt-core's `testkit` is on).
#[inline(always)]
fn emit(r: Record) {
    record(r);
}

/// `TLBI IPAS2E1IS` operand: `IPA[47:12]` in bits `[35:0]` (TTL, bits `[47:44]`, is RES0 on
/// ARMv8.0 and left 0).
#[inline]
const fn ipas2_operand(ipa: u64) -> u64 {
    (ipa >> 12) & ((1 << 36) - 1)
}

/// `TLBI VAE2IS` operand: `VA[55:12]` in bits `[43:0]`.
#[inline]
const fn vae2_operand(va: u64) -> u64 {
    (va >> 12) & ((1 << 44) - 1)
}

/// Runs `f` with `VTTBR_EL2` = `vttbr` (KVM's `__tlb_switch_to_guest` /
/// `__tlb_switch_to_host`).
#[inline(always)]
fn with_vttbr(vttbr: u64, f: impl FnOnce()) {
    let saved = insn::mrs_vttbr_el2();
    let switch = saved != vttbr;
    if switch {
        insn::msr_vttbr_el2(vttbr);
        insn::isb();
    }
    f();
    if switch {
        insn::msr_vttbr_el2(saved);
        insn::isb();
    }
}

impl Maint {
    /// Invalidates the TLB entries of every VM, whatever its VMID, and the instruction caches:
    /// KVM's `__kvm_flush_vm_context` (arm64 `hyp/tlb.c`, 4.x), run once when the VMIDs roll over
    /// and a new generation starts handing out VMIDs that older entries may still carry.
    ///
    /// The sequence is `DSB ISHST` (table writes made before the rollover complete before the
    /// invalidation), `TLBI ALLE1IS` (every EL1&0 entry of every VMID, inner shareable),
    /// `IC IALLUIS` (instruction caches to PoU, inner shareable: a VMID-tagged (VPIPT)
    /// instruction cache may otherwise hit lines of a recycled VMID; cheap and rare anyway),
    /// then `DSB ISH` (the invalidations complete). KVM issues no `ISB` here: the next guest
    /// entry (`ERET`) is the context synchronisation.
    pub fn flush_vm_context(&self) {
        insn::dsb_ishst();
        insn::tlbi_alle1is();
        insn::ic_ialluis();
        insn::dsb_ish();
    }
}

impl Maintenance for Maint {
    const S2_BY_IPA: bool = true;

    fn tlb(&self, op: TlbOp) {
        emit(Record::Tlb(op));
        match op {
            TlbOp::S2Ipa {
                vttbr,
                ipa,
                level: _,
            } => with_vttbr(vttbr, || insn::tlbi_ipas2e1is(ipas2_operand(ipa.0))),
            TlbOp::S2CombinedForVmid { vttbr } => with_vttbr(vttbr, insn::tlbi_vmalle1is),
            TlbOp::S2Vmid { vttbr } => with_vttbr(vttbr, insn::tlbi_vmalls12e1is),
            TlbOp::HypVa { va } => insn::tlbi_vae2is(vae2_operand(va.0)),
            TlbOp::HypAll => insn::tlbi_alle2is(),
        }
    }

    fn barrier(&self, barrier: Barrier) {
        emit(Record::Barrier(barrier));
        match barrier {
            Barrier::DsbIshSt => insn::dsb_ishst(),
            Barrier::DsbIsh => insn::dsb_ish(),
            Barrier::Isb => insn::isb(),
        }
    }

    /// Cleans (and invalidates) every line touching `[va, va + len)` to the point of coherency
    /// (`DC CIVAC` / `DC CVAC`) or cleans it to the point of unification (`DC CVAU`), then
    /// `DSB ISH` (KVM's `__flush_dcache_area` / `kvm_flush_dcache_to_poc`, `__clean_dcache_area_pou`).
    /// A range running past the top of the address space stops there.
    fn dcache(&self, op: CacheOp, va: usize, len: usize) {
        emit(Record::DCache {
            op,
            va: VirtAddr(va as u64),
            len: len as u64,
        });
        let line = insn::dcache_line();
        let end = (va as u64).saturating_add(len as u64);
        let mut addr = va as u64 & !(line - 1);
        while addr < end {
            match op {
                CacheOp::CleanInvalidate => insn::dc_civac(addr),
                CacheOp::Clean => insn::dc_cvac(addr),
                CacheOp::CleanToPou => insn::dc_cvau(addr),
            }
            addr = match addr.checked_add(line) {
                Some(next) => next,
                None => break,
            };
        }
        insn::dsb_ish();
    }

    /// `IC IALLUIS; DSB ISH; ISB` (KVM's `__flush_icache_all`).
    fn icache_invalidate_all(&self) {
        emit(Record::ICacheInvalidateAll);
        insn::ic_ialluis();
        insn::dsb_ish();
        insn::isb();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pt_core::testkit::log;
    use pt_core::Ipa;
    use std::vec::Vec;

    fn insn(mnemonic: &'static str, operand: u64) -> Record {
        Record::Insn { mnemonic, operand }
    }

    fn run(f: impl FnOnce(&Maint)) -> Vec<Record> {
        log::reset();
        f(&Maint);
        log::records()
    }

    const VTTBR: u64 = (7 << 48) | 0x4010_0000;

    #[test]
    fn s2_ipa_switches_vttbr_invalidates_by_ipa_page_and_restores() {
        let op = TlbOp::S2Ipa {
            vttbr: VTTBR,
            ipa: Ipa(0x80_4020_3000),
            level: 3,
        };
        assert_eq!(
            run(|m| m.tlb(op)),
            [
                Record::Tlb(op),
                insn("mrs vttbr_el2", 0),
                insn("msr vttbr_el2", VTTBR),
                insn("isb", 0),
                insn("tlbi ipas2e1is", 0x80_4020_3000 >> 12),
                insn("msr vttbr_el2", 0),
                insn("isb", 0),
            ]
        );
    }

    #[test]
    fn s2_ipa_operand_is_ipa_47_12_in_35_0() {
        assert_eq!(ipas2_operand(0xffff_ffff_ffff_f000), (1 << 36) - 1);
        assert_eq!(ipas2_operand(0x1000), 1);
        assert_eq!(ipas2_operand(0x1fff), 1);
    }

    #[test]
    fn s2_combined_for_vmid_is_vmalle1is_under_the_vms_vttbr() {
        let op = TlbOp::S2CombinedForVmid { vttbr: VTTBR };
        assert_eq!(
            run(|m| m.tlb(op)),
            [
                Record::Tlb(op),
                insn("mrs vttbr_el2", 0),
                insn("msr vttbr_el2", VTTBR),
                insn("isb", 0),
                insn("tlbi vmalle1is", 0),
                insn("msr vttbr_el2", 0),
                insn("isb", 0),
            ]
        );
    }

    #[test]
    fn s2_vmid_is_vmalls12e1is_under_the_vms_vttbr() {
        let op = TlbOp::S2Vmid { vttbr: VTTBR };
        assert_eq!(
            run(|m| m.tlb(op)),
            [
                Record::Tlb(op),
                insn("mrs vttbr_el2", 0),
                insn("msr vttbr_el2", VTTBR),
                insn("isb", 0),
                insn("tlbi vmalls12e1is", 0),
                insn("msr vttbr_el2", 0),
                insn("isb", 0),
            ]
        );
    }

    #[test]
    fn vttbr_already_loaded_is_not_switched() {
        // The host's VTTBR_EL2 reads as 0, so a VM whose VTTBR is 0 is "already loaded".
        let op = TlbOp::S2Vmid { vttbr: 0 };
        assert_eq!(
            run(|m| m.tlb(op)),
            [
                Record::Tlb(op),
                insn("mrs vttbr_el2", 0),
                insn("tlbi vmalls12e1is", 0)
            ]
        );
    }

    #[test]
    fn hyp_va_is_vae2is_with_va_page_number() {
        let op = TlbOp::HypVa {
            va: VirtAddr(0xffff_8000_4000_2000),
        };
        assert_eq!(
            run(|m| m.tlb(op)),
            [
                Record::Tlb(op),
                insn(
                    "tlbi vae2is",
                    (0xffff_8000_4000_2000u64 >> 12) & ((1 << 44) - 1)
                )
            ]
        );
        assert_eq!(vae2_operand(0x4000_2000), 0x4_0002);
    }

    #[test]
    fn hyp_all_is_alle2is() {
        assert_eq!(
            run(|m| m.tlb(TlbOp::HypAll)),
            [Record::Tlb(TlbOp::HypAll), insn("tlbi alle2is", 0)]
        );
    }

    #[test]
    fn barriers_are_dsb_ishst_dsb_ish_isb() {
        for (b, text) in [
            (Barrier::DsbIshSt, "dsb ishst"),
            (Barrier::DsbIsh, "dsb ish"),
            (Barrier::Isb, "isb"),
        ] {
            assert_eq!(run(|m| m.barrier(b)), [Record::Barrier(b), insn(text, 0)]);
        }
    }

    #[test]
    fn dcache_clean_invalidate_walks_every_touched_line_then_dsb_ish() {
        let va = VirtAddr(0x4000_0030);
        let got = run(|m| m.dcache(CacheOp::CleanInvalidate, 0x4000_0030, 0x60));
        assert_eq!(
            got,
            [
                Record::DCache {
                    op: CacheOp::CleanInvalidate,
                    va,
                    len: 0x60
                },
                insn("dc civac", 0x4000_0000),
                insn("dc civac", 0x4000_0040),
                insn("dc civac", 0x4000_0080),
                insn("dsb ish", 0),
            ]
        );
    }

    #[test]
    fn dcache_clean_uses_dc_cvac() {
        let va = VirtAddr(0x8000);
        let got = run(|m| m.dcache(CacheOp::Clean, 0x8000, 0x40));
        assert_eq!(
            got,
            [
                Record::DCache {
                    op: CacheOp::Clean,
                    va,
                    len: 0x40
                },
                insn("dc cvac", 0x8000),
                insn("dsb ish", 0)
            ]
        );
    }

    #[test]
    fn dcache_empty_range_is_only_the_barrier() {
        let va = VirtAddr(0x8000);
        let got = run(|m| m.dcache(CacheOp::Clean, 0x8000, 0));
        assert_eq!(
            got,
            [
                Record::DCache {
                    op: CacheOp::Clean,
                    va,
                    len: 0
                },
                insn("dsb ish", 0)
            ]
        );
    }

    #[test]
    fn dcache_range_at_the_top_of_the_address_space_stops_without_overflow() {
        let va = VirtAddr(u64::MAX - 0x3f);
        let got = run(|m| m.dcache(CacheOp::CleanInvalidate, usize::MAX - 0x3f, 0x1000));
        assert_eq!(
            got,
            [
                Record::DCache {
                    op: CacheOp::CleanInvalidate,
                    va,
                    len: 0x1000
                },
                insn("dc civac", u64::MAX - 0x3f),
                insn("dsb ish", 0),
            ]
        );
    }

    #[test]
    fn dcache_clean_to_pou_uses_dc_cvau() {
        // ARM ARM C5.3: DC CVAU, clean by VA to the point of unification (SYS #3, C7, C11, #1).
        let got = run(|m| m.dcache(CacheOp::CleanToPou, 0x4000_0010, 0x40));
        assert_eq!(
            got,
            [
                Record::DCache {
                    op: CacheOp::CleanToPou,
                    va: VirtAddr(0x4000_0010),
                    len: 0x40
                },
                insn("dc cvau", 0x4000_0000),
                insn("dc cvau", 0x4000_0040),
                insn("dsb ish", 0)
            ]
        );
    }

    #[test]
    fn translate_guest_read_is_at_s1e1r_with_par_el1_saved_and_restored() {
        // KVM's `__translate_far_to_hpfar`: read PAR_EL1, AT S1E1R, ISB, read PAR_EL1, write
        // the old value back. On the host PAR_EL1 reads as 0 and the result is the queued one.
        pt_core::testkit::log::reset();
        pt_core::testkit::log::queue_par(0x0000_0080_4020_3000);
        assert_eq!(
            Maint.translate_guest_read(0xffff_0000_1234_5678),
            0x0000_0080_4020_3000
        );
        assert_eq!(
            pt_core::testkit::log::records(),
            [
                insn("mrs par_el1", 0),
                insn("at s1e1r", 0xffff_0000_1234_5678),
                insn("isb", 0),
                insn("mrs par_el1", 0),
                insn("msr par_el1", 0),
            ]
        );
        // Nothing queued: the walk fails (PAR_EL1.F set).
        assert_eq!(Maint.translate_guest_read(0x1000) & 1, 1);
    }

    #[test]
    fn icache_invalidate_all_is_ic_ialluis_dsb_isb() {
        assert_eq!(
            run(|m| m.icache_invalidate_all()),
            [
                Record::ICacheInvalidateAll,
                insn("ic ialluis", 0),
                insn("dsb ish", 0),
                insn("isb", 0)
            ]
        );
    }

    #[test]
    fn flush_vm_context_is_dsb_ishst_tlbi_alle1is_ic_ialluis_dsb_ish() {
        // KVM arm64 `__kvm_flush_vm_context`: dsb(ishst); tlbi alle1is; ic ialluis; dsb(ish).
        assert_eq!(
            run(|m| m.flush_vm_context()),
            [
                insn("dsb ishst", 0),
                insn("tlbi alle1is", 0),
                insn("ic ialluis", 0),
                insn("dsb ish", 0),
            ]
        );
    }

    #[test]
    fn stage2_can_be_invalidated_by_ipa() {
        const { assert!(Maint::S2_BY_IPA) };
    }
}
