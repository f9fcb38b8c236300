//! Trap decoding for the Linux guest (HSR exception classes, ARM ARM B3.13.6) and the
//! emulation of the PL1 register writes HCR.TVM traps.

use crate::guest::VcpuRegs;
use core::arch::asm;
use hyp_common::{ExitKind, GuestExit, Trap};

/// EC: WFI or WFE.
const EC_WFX: u8 = 0x01;
/// EC: MCR or MRC to CP15.
const EC_CP15_32: u8 = 0x03;
/// EC: MCRR or MRRC to CP15.
const EC_CP15_64: u8 = 0x04;
/// EC: SMC (trapped by HCR.TSC).
const EC_SMC: u8 = 0x13;

/// Whether a trapped conditional instruction passes its condition (ISS.CV and ISS.COND,
/// against the guest's APSR flags in `cpsr`); instructions without a valid COND pass.
pub fn condition_passes(iss: u32, cpsr: u32) -> bool {
    if iss & (1 << 24) == 0 {
        return true;
    }
    let (n, z, c, v) = (
        cpsr & (1 << 31) != 0,
        cpsr & (1 << 30) != 0,
        cpsr & (1 << 29) != 0,
        cpsr & (1 << 28) != 0,
    );
    let cond = (iss >> 20) & 0xf;
    let base = match cond >> 1 {
        0 => z,
        1 => c,
        2 => n,
        3 => v,
        4 => c && !z,
        5 => n == v,
        6 => n == v && !z,
        _ => true,
    };
    if cond & 1 == 1 && cond != 0xf {
        !base
    } else {
        base
    }
}

/// Decodes a guest exit; a TVM-trapped register write is performed here.
pub fn classify(vcpu: &mut VcpuRegs, exit: &GuestExit) -> Trap {
    match exit.kind() {
        ExitKind::Async(v) => return Trap::Async(v),
        ExitKind::Hvc(imm) => return Trap::Hvc(imm),
        ExitKind::DataAbort | ExitKind::InstructionAbort => return Trap::Abort,
        ExitKind::Other(_) => {}
    }
    let iss = exit.iss();
    let ec = exit.ec();
    if matches!(ec, EC_WFX | EC_CP15_32 | EC_CP15_64 | EC_SMC) && !condition_passes(iss, vcpu.cpsr)
    {
        return Trap::ConditionFailed;
    }
    match ec {
        EC_WFX if iss & 1 == 0 => Trap::Wfi,
        EC_WFX => Trap::Wfe,
        EC_SMC => Trap::Smc,
        EC_CP15_32 => {
            // ISS: Opc2 [19:17], Opc1 [16:14], CRn [13:10], Rt [8:5], CRm [4:1], read [0].
            let opc2 = (iss >> 17) & 7;
            let opc1 = (iss >> 14) & 7;
            let crn = (iss >> 10) & 0xf;
            let rt = ((iss >> 5) & 0xf) as usize;
            let crm = (iss >> 1) & 0xf;
            let read = iss & 1 != 0;
            // DCISW, DCCSW, DCCISW: c7, {c6, c10, c14}, 2.
            if !read && opc1 == 0 && crn == 7 && opc2 == 2 && matches!(crm, 6 | 10 | 14) {
                return Trap::SetWay;
            }
            if read || opc1 != 0 || rt > 14 {
                return Trap::Other(ec);
            }
            let value = vcpu.get(rt);
            match tvm_write32(vcpu, crn, crm, opc2, value) {
                Some(old_sctlr) => Trap::TvmWrite { old_sctlr },
                None => Trap::Other(ec),
            }
        }
        EC_CP15_64 => {
            // ISS: Opc1 [19:16], Rt2 [13:10], Rt [8:5], CRm [4:1], read [0].
            let opc1 = (iss >> 16) & 0xf;
            let rt2 = ((iss >> 10) & 0xf) as usize;
            let rt = ((iss >> 5) & 0xf) as usize;
            let crm = (iss >> 1) & 0xf;
            if iss & 1 != 0 || crm != 2 || rt > 14 || rt2 > 14 {
                return Trap::Other(ec);
            }
            let (lo, hi) = (vcpu.get(rt), vcpu.get(rt2));
            // SAFETY: writes the guest's own 64-bit TTBR0/TTBR1, as the trapped MCRR would
            // have; HYP mode does not use them.
            unsafe {
                match opc1 {
                    0 => asm!("mcrr p15, 0, {}, {}, c2", in(reg) lo, in(reg) hi, options(nostack)),
                    1 => asm!("mcrr p15, 1, {}, {}, c2", in(reg) lo, in(reg) hi, options(nostack)),
                    _ => return Trap::Other(ec),
                }
            }
            Trap::TvmWrite { old_sctlr: None }
        }
        ec => Trap::Other(ec),
    }
}

/// Performs an MCR trapped by TVM (SCTLR into the vcpu, which the world switch loads; the
/// others straight into the PL1 register). `None`: not a TVM register; `Some(old)`: done,
/// with SCTLR's old value if it was SCTLR.
fn tvm_write32(vcpu: &mut VcpuRegs, crn: u32, crm: u32, opc2: u32, v: u32) -> Option<Option<u64>> {
    macro_rules! mcr {
        ($crn:literal, $crm:literal, $opc2:literal) => {
            // SAFETY: writes the guest's own PL1 register, as the trapped MCR would have;
            // HYP mode does not use it.
            unsafe {
                asm!(
                    concat!("mcr p15, 0, {}, ", $crn, ", ", $crm, ", ", $opc2),
                    in(reg) v,
                    options(nostack)
                )
            }
        };
    }
    match (crn, crm, opc2) {
        (1, 0, 0) => {
            let old = vcpu.sctlr;
            vcpu.sctlr = v;
            return Some(Some(old.into()));
        }
        (2, 0, 0) => mcr!("c2", "c0", "0"),   // TTBR0
        (2, 0, 1) => mcr!("c2", "c0", "1"),   // TTBR1
        (2, 0, 2) => mcr!("c2", "c0", "2"),   // TTBCR
        (3, 0, 0) => mcr!("c3", "c0", "0"),   // DACR
        (5, 0, 0) => mcr!("c5", "c0", "0"),   // DFSR
        (5, 0, 1) => mcr!("c5", "c0", "1"),   // IFSR
        (5, 1, 0) => mcr!("c5", "c1", "0"),   // ADFSR
        (5, 1, 1) => mcr!("c5", "c1", "1"),   // AIFSR
        (6, 0, 0) => mcr!("c6", "c0", "0"),   // DFAR
        (6, 0, 2) => mcr!("c6", "c0", "2"),   // IFAR
        (10, 2, 0) => mcr!("c10", "c2", "0"), // PRRR / MAIR0
        (10, 2, 1) => mcr!("c10", "c2", "1"), // NMRR / MAIR1
        (10, 3, 0) => mcr!("c10", "c3", "0"), // AMAIR0
        (10, 3, 1) => mcr!("c10", "c3", "1"), // AMAIR1
        (13, 0, 1) => mcr!("c13", "c0", "1"), // CONTEXTIDR
        _ => return None,
    }
    Some(None)
}

/// The ITSTATE of `cpsr` advanced past one instruction (the ARM ARM's `ITAdvance()`), for
/// skipping a trapped instruction inside a Thumb IT block.
pub fn it_advance(cpsr: u32) -> u32 {
    let it = ((cpsr >> 8) & 0xfc) | ((cpsr >> 25) & 0x3);
    if it == 0 {
        return cpsr;
    }
    let next = if it & 0x7 == 0 {
        0
    } else {
        (it & 0xe0) | ((it << 1) & 0x1f)
    };
    (cpsr & !((0x3f << 10) | (0x3 << 25))) | ((next & 0xfc) << 8) | ((next & 0x3) << 25)
}
