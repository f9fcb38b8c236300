//! TLB maintenance, cache maintenance and barriers of ARMv7 with the Virtualization Extensions,
//! executed in HYP mode.
//!
//! Every instruction is one small private function whose body is either the cp15 instruction
//! (on `target_arch = "arm"`, which this crate takes to be an A-profile ARMv7 CPU with the
//! Virtualization Extensions such as Cortex-A15) or, on any other target, a
//! [`Record::Insn`] with the same mnemonic and operand for the host tests. The sequencing
//! logic around them — which instructions an operation needs, in which order — is the same
//! code on both, so the host tests pin the sequence the hardware runs.
//!
//! Encodings (ARMv7 ARM B4.2.x "cp15 c7/c8" tables, the same in Linux `arch/arm/kvm/hyp/tlb.c`
//! and Xen `arm32/flushtlb.h`):
//!
//! | operation | instruction |
//! |-----------|-------------|
//! | VTTBR read / write | `MRRC/MCRR p15, 6, Rt, Rt2, c2` |
//! | TLBIALLIS (in HYP mode: stage 1+2 of the current VMID, inner shareable) | `MCR p15, 0, Rt, c8, c3, 0` |
//! | TLBIALLNSNHIS (every VMID) | `MCR p15, 4, Rt, c8, c3, 4` |
//! | TLBIMVAHIS (HYP, by VA) | `MCR p15, 4, Rt, c8, c3, 1` |
//! | TLBIALLHIS (HYP, all) | `MCR p15, 4, Rt, c8, c3, 0` |
//! | DCCIMVAC / DCCMVAC / DCCMVAU | `MCR p15, 0, Rt, c7, c14, 1` / `c7, c10, 1` / `c7, c11, 1` |
//! | ATS1CPR (stage-1 PL1 read translation) | `MCR p15, 0, Rt, c7, c8, 0` |
//! | PAR (64-bit) read / write | `MRRC/MCRR p15, 0, Rt, Rt2, c7` |
//! | ICIALLUIS / BPIALLIS | `MCR p15, 0, Rt, c7, c1, 0` / `c7, c1, 6` |
//! | CTR read | `MRC p15, 0, Rt, c0, c0, 1` |
//!
//! Virtual addresses are 32 bits on ARMv7. Cache maintenance takes its range as `usize`, which
//! cannot name an address above 4 GiB on the target (guest memory there is reached through a
//! `GuestMemory` port that lends a 32-bit VA). A HYP TLB invalidation by a VA at or above 4 GiB
//! (which the HYP geometry cannot map) becomes TLBIALLHIS: over-invalidating is always safe.

use cfg_if::cfg_if;
use pt_core::trace::{record, Record};
use pt_core::{Barrier, CacheOp, Maintenance, TlbOp, VirtAddr};

/// The mnemonics recorded on the host for each instruction (the operand is the register
/// value written, or 0 when the register is ignored).
pub mod mnemonic {
    /// `MRRC p15, 6, Rt, Rt2, c2`: read VTTBR (host: reads as 0).
    pub const MRRC_VTTBR: &str = "mrrc vttbr";
    /// `MCRR p15, 6, Rt, Rt2, c2`: write VTTBR (operand: the 64-bit value).
    pub const MCRR_VTTBR: &str = "mcrr vttbr";
    /// `MCR p15, 0, Rt, c8, c3, 0`: TLBIALLIS.
    pub const TLBIALLIS: &str = "mcr tlbiallis";
    /// `MCR p15, 4, Rt, c8, c3, 4`: TLBIALLNSNHIS.
    pub const TLBIALLNSNHIS: &str = "mcr tlbiallnsnhis";
    /// `MCR p15, 4, Rt, c8, c3, 1`: TLBIMVAHIS (operand: the page-aligned VA).
    pub const TLBIMVAHIS: &str = "mcr tlbimvahis";
    /// `MCR p15, 4, Rt, c8, c3, 0`: TLBIALLHIS.
    pub const TLBIALLHIS: &str = "mcr tlbiallhis";
    /// `MCR p15, 0, Rt, c7, c14, 1`: DCCIMVAC (operand: the line-aligned VA).
    pub const DCCIMVAC: &str = "mcr dccimvac";
    /// `MCR p15, 0, Rt, c7, c10, 1`: DCCMVAC (operand: the line-aligned VA).
    pub const DCCMVAC: &str = "mcr dccmvac";
    /// `MCR p15, 0, Rt, c7, c11, 1`: DCCMVAU (operand: the line-aligned VA).
    pub const DCCMVAU: &str = "mcr dccmvau";
    /// `MCR p15, 0, Rt, c7, c8, 0`: ATS1CPR, stage-1 PL1 read translation of the VA operand.
    pub const ATS1CPR: &str = "mcr ats1cpr";
    /// `MRRC p15, 0, Rt, Rt2, c7`: read the 64-bit PAR (host: the queued test value).
    pub const MRRC_PAR: &str = "mrrc par";
    /// `MCRR p15, 0, Rt, Rt2, c7`: write the 64-bit PAR (operand: the value).
    pub const MCRR_PAR: &str = "mcrr par";
    /// `MCR p15, 0, Rt, c7, c1, 0`: ICIALLUIS.
    pub const ICIALLUIS: &str = "mcr icialluis";
    /// `MCR p15, 0, Rt, c7, c1, 6`: BPIALLIS.
    pub const BPIALLIS: &str = "mcr bpiallis";
    /// `DSB ISHST`.
    pub const DSB_ISHST: &str = "dsb ishst";
    /// `DSB ISH`.
    pub const DSB_ISH: &str = "dsb ish";
    /// `ISB`.
    pub const ISB: &str = "isb";
}

/// Data-cache line size assumed on the host build (the target reads CTR.DminLine).
pub const HOST_DCACHE_LINE: u64 = 64;

/// The ARMv7 (Cortex-A15, HYP mode) implementation of [`Maintenance`].
///
/// * [`TlbOp::S2Vmid`] (`__kvm_tlb_flush_vmid`): save VTTBR, load the VM's VTTBR, ISB,
///   TLBIALLIS, restore VTTBR, ISB. In HYP mode TLBIALLIS invalidates the stage-1 and
///   stage-2 entries of the VMID in VTTBR only — exactly one VM. (TLBIALLNSNHIS would
///   ignore the VMID and flush every guest; it is what [`Maint::flush_vm_context`] uses.)
///   The restore cannot affect the invalidation: a direct write to a system register never
///   affects instructions before it in program order.
/// * [`TlbOp::S2Ipa`] and [`TlbOp::S2CombinedForVmid`]: ARMv7 cannot invalidate stage 2 by
///   IPA ([`S2_BY_IPA`](Maintenance::S2_BY_IPA) is false, so pt-core never issues them); if
///   they arrive anyway, each is the same whole-VMID flush.
/// * [`TlbOp::HypVa`] is TLBIMVAHIS with the VA's page (a HYP mapping changed or went away,
///   as in `unmap_hyp_range`).
/// * [`TlbOp::HypAll`] is TLBIALLHIS.
///
/// As the trait says, `tlb` issues no barrier: the caller brackets it with `DSB ISHST` before
/// and `DSB ISH; ISB` after (pt-core's batcher does).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Maint;

impl Maint {
    /// Invalidates the TLB entries of every VM (TLBIALLNSNHIS) and the instruction cache
    /// (ICIALLUIS), then `DSB ISH`: KVM's `__kvm_flush_vm_context`, needed when VMIDs are
    /// recycled (a new VMID generation).
    pub fn flush_vm_context(&self) {
        tlbiallnsnhis();
        icialluis();
        dsb_ish();
    }

    /// Translates the guest virtual address `va` through the guest's current stage 1, as a
    /// PL1 read (`ATS1CPR`, then `ISB`), and returns the PAR it produced; the previous PAR is
    /// restored, since it belongs to the guest (KVM arm32's `__populate_fault_info`). Run it
    /// in HYP mode while the guest's PL1 translation registers and VTTBR are still loaded (on
    /// the guest-exit path). PAR bit 0 (F) set means the walk failed; otherwise, in the 64-bit
    /// (LPAE) format, `PA[39:12]` is in bits `[39:12]` (the IPA: stage 2 is not applied).
    pub fn translate_guest_read(&self, va: u32) -> u64 {
        let saved = read_par();
        let par = ats1cpr(va);
        write_par(saved);
        par
    }

    /// The smallest data-cache line of the caches this CPU maintains by VA, in bytes
    /// (`4 << CTR.DminLine`; [`HOST_DCACHE_LINE`] on the host).
    pub fn dcache_line_size(&self) -> u64 {
        dcache_line_size()
    }
}

impl Maintenance for Maint {
    const S2_BY_IPA: bool = false;

    fn tlb(&self, op: TlbOp) {
        record(Record::Tlb(op));
        match op {
            TlbOp::S2Vmid { vttbr }
            | TlbOp::S2Ipa { vttbr, .. }
            | TlbOp::S2CombinedForVmid { vttbr } => flush_vmid(vttbr),
            TlbOp::HypVa { va } => match u32::try_from(va.0) {
                Ok(va) => tlbimvahis(va & !0xfff),
                Err(_) => tlbiallhis(),
            },
            TlbOp::HypAll => tlbiallhis(),
        }
    }

    fn barrier(&self, barrier: Barrier) {
        record(Record::Barrier(barrier));
        match barrier {
            Barrier::DsbIshSt => dsb_ishst(),
            Barrier::DsbIsh => dsb_ish(),
            Barrier::Isb => isb(),
        }
    }

    fn dcache(&self, op: CacheOp, va: usize, len: usize) {
        record(Record::DCache {
            op,
            va: VirtAddr(va as u64),
            len: len as u64,
        });
        if len != 0 {
            // The line size is at most 2 KiB (CTR.DminLine <= 9), so it fits any usize.
            let line = dcache_line_size() as usize;
            let end = va.saturating_add(len);
            let mut addr = va & !(line - 1);
            while addr < end {
                match op {
                    CacheOp::CleanInvalidate => dccimvac(addr),
                    CacheOp::Clean => dccmvac(addr),
                    CacheOp::CleanToPou => dccmvau(addr),
                }
                addr = match addr.checked_add(line) {
                    Some(next) => next,
                    None => break,
                };
            }
        }
        dsb_ish();
    }

    fn icache_invalidate_all(&self) {
        record(Record::ICacheInvalidateAll);
        icialluis();
        bpiallis();
        dsb_ish();
        isb();
    }
}

/// Whole-VMID stage-1+2 invalidation of the VM whose VTTBR is `vttbr`.
fn flush_vmid(vttbr: u64) {
    let saved = read_vttbr();
    write_vttbr(vttbr);
    isb();
    tlbiallis();
    write_vttbr(saved);
    isb();
}

fn dcache_line_size() -> u64 {
    cfg_if! {
        if #[cfg(target_arch = "arm")] {
            let ctr: u32;
            // SAFETY: reading CTR has no side effects and is permitted at PL2.
            unsafe {
                core::arch::asm!(
                    "mrc p15, 0, {r}, c0, c0, 1",
                    r = out(reg) ctr,
                    options(nomem, nostack, preserves_flags)
                );
            }
            // DminLine [19:16]: log2 of the line size in 4-byte words.
            4u64 << ((ctr >> 16) & 0xf)
        } else {
            HOST_DCACHE_LINE
        }
    }
}

fn read_vttbr() -> u64 {
    cfg_if! {
        if #[cfg(target_arch = "arm")] {
            let lo: u32;
            let hi: u32;
            // SAFETY: reading VTTBR has no side effects; this code runs in HYP mode, where
            // VTTBR is accessible.
            unsafe {
                core::arch::asm!(
                    "mrrc p15, 6, {lo}, {hi}, c2",
                    lo = out(reg) lo,
                    hi = out(reg) hi,
                    options(nostack, preserves_flags)
                );
            }
            (hi as u64) << 32 | lo as u64
        } else {
            record(Record::Insn { mnemonic: mnemonic::MRRC_VTTBR, operand: 0 });
            0
        }
    }
}

fn write_vttbr(vttbr: u64) {
    cfg_if! {
        if #[cfg(target_arch = "arm")] {
            // SAFETY: HYP mode owns VTTBR; HYP-mode accesses never use stage 2, so changing
            // it affects only guest translations, and every caller restores it.
            unsafe {
                core::arch::asm!(
                    "mcrr p15, 6, {lo}, {hi}, c2",
                    lo = in(reg) vttbr as u32,
                    hi = in(reg) (vttbr >> 32) as u32,
                    options(nostack, preserves_flags)
                );
            }
        } else {
            record(Record::Insn { mnemonic: mnemonic::MCRR_VTTBR, operand: vttbr });
        }
    }
}

fn tlbiallis() {
    cfg_if! {
        if #[cfg(target_arch = "arm")] {
            // SAFETY: TLB invalidation only removes cached translations; the register value
            // is ignored.
            unsafe {
                core::arch::asm!(
                    "mcr p15, 0, {r}, c8, c3, 0",
                    r = in(reg) 0u32,
                    options(nostack, preserves_flags)
                );
            }
        } else {
            record(Record::Insn { mnemonic: mnemonic::TLBIALLIS, operand: 0 });
        }
    }
}

fn tlbiallnsnhis() {
    cfg_if! {
        if #[cfg(target_arch = "arm")] {
            // SAFETY: TLB invalidation only removes cached translations; the register value
            // is ignored.
            unsafe {
                core::arch::asm!(
                    "mcr p15, 4, {r}, c8, c3, 4",
                    r = in(reg) 0u32,
                    options(nostack, preserves_flags)
                );
            }
        } else {
            record(Record::Insn { mnemonic: mnemonic::TLBIALLNSNHIS, operand: 0 });
        }
    }
}

fn tlbimvahis(va: u32) {
    cfg_if! {
        if #[cfg(target_arch = "arm")] {
            // SAFETY: TLB invalidation only removes cached translations of the HYP regime.
            unsafe {
                core::arch::asm!(
                    "mcr p15, 4, {r}, c8, c3, 1",
                    r = in(reg) va,
                    options(nostack, preserves_flags)
                );
            }
        } else {
            record(Record::Insn { mnemonic: mnemonic::TLBIMVAHIS, operand: va as u64 });
        }
    }
}

fn tlbiallhis() {
    cfg_if! {
        if #[cfg(target_arch = "arm")] {
            // SAFETY: TLB invalidation only removes cached translations of the HYP regime;
            // the register value is ignored.
            unsafe {
                core::arch::asm!(
                    "mcr p15, 4, {r}, c8, c3, 0",
                    r = in(reg) 0u32,
                    options(nostack, preserves_flags)
                );
            }
        } else {
            record(Record::Insn { mnemonic: mnemonic::TLBIALLHIS, operand: 0 });
        }
    }
}

fn dccimvac(mva: usize) {
    cfg_if! {
        if #[cfg(target_arch = "arm")] {
            // SAFETY: clean+invalidate writes dirty lines back before dropping them, so no
            // data is lost; a fault on an unmapped MVA is the caller's contract (it passes
            // mapped ranges only).
            unsafe {
                core::arch::asm!(
                    "mcr p15, 0, {r}, c7, c14, 1",
                    r = in(reg) mva,
                    options(nostack, preserves_flags)
                );
            }
        } else {
            record(Record::Insn { mnemonic: mnemonic::DCCIMVAC, operand: mva as u64 });
        }
    }
}

fn dccmvac(mva: usize) {
    cfg_if! {
        if #[cfg(target_arch = "arm")] {
            // SAFETY: a clean only writes dirty lines back; the caller passes mapped ranges.
            unsafe {
                core::arch::asm!(
                    "mcr p15, 0, {r}, c7, c10, 1",
                    r = in(reg) mva,
                    options(nostack, preserves_flags)
                );
            }
        } else {
            record(Record::Insn { mnemonic: mnemonic::DCCMVAC, operand: mva as u64 });
        }
    }
}

fn dccmvau(mva: usize) {
    cfg_if! {
        if #[cfg(target_arch = "arm")] {
            // SAFETY: a clean only writes dirty lines back; the caller passes mapped ranges.
            unsafe {
                core::arch::asm!(
                    "mcr p15, 0, {r}, c7, c11, 1",
                    r = in(reg) mva,
                    options(nostack, preserves_flags)
                );
            }
        } else {
            record(Record::Insn { mnemonic: mnemonic::DCCMVAU, operand: mva as u64 });
        }
    }
}

/// Reads the 64-bit PAR (`MRRC p15, 0, Rt, Rt2, c7`).
fn read_par() -> u64 {
    cfg_if! {
        if #[cfg(target_arch = "arm")] {
            let lo: u32;
            let hi: u32;
            // SAFETY: reading PAR has no side effect.
            unsafe {
                core::arch::asm!(
                    "mrrc p15, 0, {lo}, {hi}, c7",
                    lo = out(reg) lo,
                    hi = out(reg) hi,
                    options(nomem, nostack, preserves_flags)
                );
            }
            (u64::from(hi) << 32) | u64::from(lo)
        } else {
            record(Record::Insn { mnemonic: mnemonic::MRRC_PAR, operand: 0 });
            0
        }
    }
}

/// Writes the 64-bit PAR (`MCRR p15, 0, Rt, Rt2, c7`).
fn write_par(par: u64) {
    cfg_if! {
        if #[cfg(target_arch = "arm")] {
            // SAFETY: PAR only holds the result of address translations; restoring the
            // guest's value affects nothing else.
            unsafe {
                core::arch::asm!(
                    "mcrr p15, 0, {lo}, {hi}, c7",
                    lo = in(reg) par as u32,
                    hi = in(reg) (par >> 32) as u32,
                    options(nostack, preserves_flags)
                );
            }
        } else {
            record(Record::Insn { mnemonic: mnemonic::MCRR_PAR, operand: par });
        }
    }
}

/// `ATS1CPR` of `va` (`MCR p15, 0, Rt, c7, c8, 0`), `ISB`, and the PAR it produced.
fn ats1cpr(va: u32) -> u64 {
    cfg_if! {
        if #[cfg(target_arch = "arm")] {
            // SAFETY: an address translation only writes PAR (saved and restored by the
            // caller); it reads the current PL1&0 stage-1 tables (the guest's) and never
            // faults.
            unsafe {
                core::arch::asm!(
                    "mcr p15, 0, {r}, c7, c8, 0",
                    r = in(reg) va,
                    options(nostack, preserves_flags)
                );
            }
            isb();
            read_par()
        } else {
            record(Record::Insn { mnemonic: mnemonic::ATS1CPR, operand: u64::from(va) });
            isb();
            read_par();
            pt_core::trace::host_par()
        }
    }
}

fn icialluis() {
    cfg_if! {
        if #[cfg(target_arch = "arm")] {
            // SAFETY: invalidating the instruction cache only forces refetches.
            unsafe {
                core::arch::asm!(
                    "mcr p15, 0, {r}, c7, c1, 0",
                    r = in(reg) 0u32,
                    options(nostack, preserves_flags)
                );
            }
        } else {
            record(Record::Insn { mnemonic: mnemonic::ICIALLUIS, operand: 0 });
        }
    }
}

fn bpiallis() {
    cfg_if! {
        if #[cfg(target_arch = "arm")] {
            // SAFETY: invalidating the branch predictor only costs predictions.
            unsafe {
                core::arch::asm!(
                    "mcr p15, 0, {r}, c7, c1, 6",
                    r = in(reg) 0u32,
                    options(nostack, preserves_flags)
                );
            }
        } else {
            record(Record::Insn { mnemonic: mnemonic::BPIALLIS, operand: 0 });
        }
    }
}

fn dsb_ishst() {
    cfg_if! {
        if #[cfg(target_arch = "arm")] {
            // SAFETY: a barrier has no effect beyond ordering.
            unsafe { core::arch::asm!("dsb ishst", options(nostack, preserves_flags)) }
        } else {
            record(Record::Insn { mnemonic: mnemonic::DSB_ISHST, operand: 0 });
        }
    }
}

fn dsb_ish() {
    cfg_if! {
        if #[cfg(target_arch = "arm")] {
            // SAFETY: a barrier has no effect beyond ordering.
            unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) }
        } else {
            record(Record::Insn { mnemonic: mnemonic::DSB_ISH, operand: 0 });
        }
    }
}

fn isb() {
    cfg_if! {
        if #[cfg(target_arch = "arm")] {
            // SAFETY: a context synchronisation has no effect beyond ordering.
            unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) }
        } else {
            record(Record::Insn { mnemonic: mnemonic::ISB, operand: 0 });
        }
    }
}
