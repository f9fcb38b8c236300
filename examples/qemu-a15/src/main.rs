//! Example hypervisor for QEMU `virt` with a Cortex-A15 in HYP mode.
//!
//! Platform layer: boot (`boot`), PL011 output (`uart`), semihosting exit
//! (`semihosting`), HYP stage-1 MMU enable (`mmu`), guest entry/exit and the
//! guest program (`guest`), tied together as [`A15`] implementing
//! [`hyp_common::Platform`]. `main` currently runs the platform self-tests.
#![no_std]
#![no_main]

#[cfg(not(target_arch = "arm"))]
compile_error!("qemu-a15 builds only for --target armv7a-none-eabi");

mod boot;
mod guest;
mod mmu;
mod semihosting;

use core::arch::asm;
use core::fmt;
use core::panic::PanicInfo;
use hyp_common::{println, selftest, uart, Checks, GuestExit, Platform};

pub use guest::VcpuRegs;
pub use mmu::HypMmuRegs;

/// The Cortex-A15 platform: the hypervisor with its one vcpu.
pub struct A15 {
    pub vcpu: VcpuRegs,
}

impl Platform for A15 {
    type HypMmuRegs = HypMmuRegs;
    type Arch = pt_hyp::Armv7;

    fn abort_regs(exit: &GuestExit) -> pt_hyp::fault::Armv7AbortRegs {
        pt_hyp::fault::Armv7AbortRegs {
            hsr: exit.syndrome as u32,
            hdfar: exit.far as u32,
            hifar: exit.ifar as u32,
            hpfar: exit.hpfar as u32,
        }
    }

    fn hyp_mmu_regs(r: &pt_hyp::hyp::HypMmuRegs) -> HypMmuRegs {
        HypMmuRegs {
            hmair0: r.mair_lo(),
            hmair1: r.mair_hi(),
            htcr: r.tcr as u32,
            httbr: r.ttbr,
            hsctlr_set: r.sctlr as u32,
        }
    }

    const NAME: &'static str = "a15";
    const NUM_REGS: usize = 15;
    const LIST_BASE: usize = 5;

    fn print(args: fmt::Arguments<'_>) {
        uart::_print(args);
    }

    fn exit(code: u32) -> ! {
        semihosting::exit(code)
    }

    unsafe fn enable_hyp_mmu(regs: &HypMmuRegs) {
        // SAFETY: forwarded contract.
        unsafe { mmu::enable_hyp_mmu(regs) }
    }

    /// A register the vCPU does not keep reads as zero (SRT names r0-r14 on a guest abort).
    fn reg(&self, n: usize) -> u64 {
        self.vcpu.r.get(n).copied().map_or(0, u64::from)
    }

    /// Registers are 32-bit: the upper half of `value` is dropped; a register the vCPU does
    /// not keep is ignored.
    fn set_reg(&mut self, n: usize, value: u64) {
        if let Some(r) = self.vcpu.r.get_mut(n) {
            *r = value as u32;
        }
    }

    fn pc(&self) -> u64 {
        self.vcpu.pc.into()
    }

    fn set_pc(&mut self, pc: u64) {
        self.vcpu.pc = pc as u32;
    }

    /// VTCR is 32-bit: the upper half of `vtcr` is dropped.
    fn set_stage2(&mut self, enable: bool, vttbr: u64, vtcr: u64) {
        self.vcpu.stage2 = enable;
        self.vcpu.vttbr = vttbr;
        self.vcpu.vtcr = vtcr as u32;
    }

    fn invalidate_guest_tlb(&mut self) {
        guest::invalidate_guest_tlb();
    }

    fn run_guest(&mut self) -> GuestExit {
        guest::run_guest(&mut self.vcpu)
    }
}

fn cpsr_mode() -> u32 {
    let cpsr: u32;
    // SAFETY: reading CPSR has no side effects.
    unsafe { asm!("mrs {}, cpsr", out(reg) cpsr, options(nomem, nostack)) };
    cpsr & 0x1f
}

/// CPSR.M of HYP mode.
const MODE_HYP: u32 = 0x1a;

#[no_mangle]
extern "C" fn hyp_main() -> ! {
    println!("qemu-a15: Cortex-A15 example hypervisor");
    let mut checks = Checks::<A15>::new();
    checks.check("boot_hyp_mode", cpsr_mode() == MODE_HYP);

    let mut a15 = A15 {
        vcpu: VcpuRegs::new(0),
    };
    selftest::guest_commands(&mut a15, &mut checks);
    hyp_common::scenario::run(&mut a15, &mut checks);
    let sctlr = mmu::hsctlr();
    let mci = mmu::SCTLR_M | mmu::SCTLR_C | mmu::SCTLR_I;
    checks.check("hyp_mmu_enabled", sctlr & mci == mci);
    checks.check("uart_after_mmu", uart::read_reg(uart::PERIPH_ID0) == 0x11);
    checks.finish()
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    println!("PANIC: {}", info);
    semihosting::exit(101)
}
