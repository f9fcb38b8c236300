//! Trap decoding for the Linux guest (ESR_EL2 exception classes, ARM ARM D17.2.37) and the
//! emulation of the EL1 system-register writes HCR_EL2.TVM traps.

use crate::guest::VcpuRegs;
use aarch64_cpu::registers::{
    Writeable, AFSR0_EL1, AFSR1_EL1, AMAIR_EL1, CONTEXTIDR_EL1, ESR_EL1, FAR_EL1, MAIR_EL1,
    TCR_EL1, TTBR0_EL1, TTBR1_EL1,
};
use hyp_common::{ExitKind, GuestExit, Trap};

/// EC: WFI or WFE.
const EC_WFX: u8 = 0x01;
/// EC: SMC from AArch64 (trapped by HCR_EL2.TSC).
const EC_SMC64: u8 = 0x17;
/// EC: MSR, MRS or system instruction from AArch64.
const EC_SYS64: u8 = 0x18;

/// The fields of an EC 0x18 ISS: Op0, Op1, CRn, CRm, Op2, Rt, direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SysReg {
    op0: u32,
    op1: u32,
    crn: u32,
    crm: u32,
    op2: u32,
    rt: usize,
    read: bool,
}

impl SysReg {
    fn decode(iss: u32) -> Self {
        SysReg {
            op0: (iss >> 20) & 3,
            op2: (iss >> 17) & 7,
            op1: (iss >> 14) & 7,
            crn: (iss >> 10) & 0xf,
            rt: ((iss >> 5) & 0x1f) as usize,
            crm: (iss >> 1) & 0xf,
            read: iss & 1 != 0,
        }
    }

    /// `DC ISW`, `DC CSW`, `DC CISW` (op0 1, op1 0, CRn 7, CRm 6/10/14, op2 2).
    fn is_set_way(&self) -> bool {
        self.op0 == 1
            && self.op1 == 0
            && self.crn == 7
            && self.op2 == 2
            && matches!(self.crm, 6 | 10 | 14)
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
    match exit.ec() {
        EC_WFX if exit.iss() & 1 == 0 => Trap::Wfi,
        EC_WFX => Trap::Wfe,
        EC_SMC64 => Trap::Smc,
        EC_SYS64 => {
            let r = SysReg::decode(exit.iss());
            if r.is_set_way() {
                return Trap::SetWay;
            }
            if r.read || r.op0 != 3 || r.op1 != 0 {
                return Trap::Other(EC_SYS64);
            }
            let value = if r.rt == 31 { 0 } else { vcpu.x[r.rt] };
            match tvm_write(vcpu, r.crn, r.crm, r.op2, value) {
                Some(old_sctlr) => Trap::TvmWrite { old_sctlr },
                None => Trap::Other(EC_SYS64),
            }
        }
        ec => Trap::Other(ec),
    }
}

/// Performs a write trapped by TVM (SCTLR_EL1 into the vcpu, which the world switch loads;
/// the others straight into the EL1 register). `None`: not a TVM register; `Some(old)`:
/// done, with SCTLR_EL1's old value if it was SCTLR_EL1.
fn tvm_write(vcpu: &mut VcpuRegs, crn: u32, crm: u32, op2: u32, v: u64) -> Option<Option<u64>> {
    // Each write goes to the guest's own EL1 register, as the trapped instruction would have
    // done; the hypervisor runs at EL2 and does not use them.
    match (crn, crm, op2) {
        (1, 0, 0) => {
            let old = vcpu.sctlr_el1;
            vcpu.sctlr_el1 = v;
            return Some(Some(old));
        }
        (2, 0, 0) => TTBR0_EL1.set(v),
        (2, 0, 1) => TTBR1_EL1.set(v),
        (2, 0, 2) => TCR_EL1.set(v),
        (5, 1, 0) => AFSR0_EL1.set(v),
        (5, 1, 1) => AFSR1_EL1.set(v),
        (5, 2, 0) => ESR_EL1.set(v),
        (6, 0, 0) => FAR_EL1.set(v),
        (10, 2, 0) => MAIR_EL1.set(v),
        (10, 3, 0) => AMAIR_EL1.set(v),
        (13, 0, 1) => CONTEXTIDR_EL1.set(v),
        _ => return None,
    }
    Some(None)
}
