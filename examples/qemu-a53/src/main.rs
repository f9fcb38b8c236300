//! Example hypervisor for QEMU `virt` with a Cortex-A53 at EL2.
//!
//! Platform layer: boot (`boot`), PL011 output (`uart`), semihosting exit
//! (the `semihosting` crate), EL2 stage-1 MMU enable (`mmu`), guest entry/exit and the
//! guest program (`guest`), tied together as [`A53`] implementing
//! [`hyp_common::Platform`], with the Linux guest's trap decoding and system registers in
//! `traps`. `main` runs the platform self-tests, the check scenario, then the Linux guest.
#![no_std]
#![no_main]

#[cfg(not(target_arch = "aarch64"))]
compile_error!("qemu-a53 builds only for --target aarch64-unknown-none");

mod boot;
mod guest;
mod mmu;
mod traps;

use aarch64_cpu::registers::{CurrentEL, Readable};
use core::fmt;
use core::panic::PanicInfo;
use hyp_common::linux::Shared;
use hyp_common::{println, selftest, uart, Checks, GuestExit, Platform, Trap};

pub use guest::VcpuRegs;
pub use mmu::HypMmuRegs;

/// The Cortex-A53 platform: the hypervisor on one physical CPU with the vCPU it runs.
pub struct A53 {
    pub vcpu: VcpuRegs,
}

/// What the Linux guest's vCPUs share (one per CPU crate: statics cannot be generic).
static LINUX: Shared<pt_hyp::Armv8> = Shared::new();

/// The hyp MMU registers the boot CPU turned its MMU on with, for the secondaries.
static HYP_MMU: spin::Once<HypMmuRegs> = spin::Once::new();

impl Platform for A53 {
    type HypMmuRegs = HypMmuRegs;
    type Arch = pt_hyp::Armv8;

    fn abort_regs(exit: &GuestExit) -> pt_hyp::fault::Armv8AbortRegs {
        pt_hyp::fault::Armv8AbortRegs {
            esr: exit.syndrome,
            far: exit.far,
            hpfar: exit.hpfar,
        }
    }

    fn hyp_mmu_regs(r: &pt_hyp::hyp::HypMmuRegs) -> HypMmuRegs {
        HypMmuRegs {
            mair_el2: r.mair,
            tcr_el2: r.tcr,
            ttbr0_el2: r.ttbr,
            sctlr_el2_set: r.sctlr,
        }
    }

    const NAME: &'static str = "a53";
    const NUM_REGS: usize = 31;
    const LIST_BASE: usize = 8;

    fn print(args: fmt::Arguments<'_>) {
        uart::_print(args);
    }

    fn exit(code: u32) -> ! {
        exit_qemu(code)
    }

    unsafe fn enable_hyp_mmu(regs: &HypMmuRegs) {
        HYP_MMU.call_once(|| *regs);
        // SAFETY: forwarded contract.
        unsafe { mmu::enable_hyp_mmu(regs) }
    }

    /// Register 31 of a load/store's transfer register (SRT) is XZR/WZR: it reads as zero
    /// (`str wzr, [x0]` stores 0) and a load into it is discarded.
    fn reg(&self, n: usize) -> u64 {
        self.vcpu.x.get(n).copied().unwrap_or(0)
    }

    fn set_reg(&mut self, n: usize, value: u64) {
        if let Some(x) = self.vcpu.x.get_mut(n) {
            *x = value;
        }
    }

    fn pc(&self) -> u64 {
        self.vcpu.pc
    }

    fn set_pc(&mut self, pc: u64) {
        self.vcpu.pc = pc;
    }

    fn set_stage2(&mut self, enable: bool, vttbr: u64, vtcr: u64) {
        self.vcpu.stage2 = enable;
        self.vcpu.vttbr = vttbr;
        self.vcpu.vtcr = vtcr;
    }

    fn invalidate_guest_tlb(&mut self) {
        guest::invalidate_guest_tlb(self.vcpu.vttbr);
    }

    fn run_guest(&mut self) -> GuestExit {
        guest::run_guest(&mut self.vcpu)
    }

    /// The arm64 `Image` at 2 MiB into RAM (its `text_offset` is 0 since Linux 5.8).
    const KERNEL_IPA: u64 = 0x4020_0000;
    /// `Image` header: magic "ARM\x64" at offset 0x38.
    const KERNEL_MAGIC: (usize, u32) = (0x38, 0x644d_5241);
    const MAX_MMIO_SIZE: u8 = 8;
    const EXPECT_SET_WAY: bool = false;
    const SET_WAY_TRAPS: bool = true;

    fn boot_linux(&mut self, kernel: u64, dtb: u64) {
        self.vcpu.boot_linux(kernel, dtb);
        guest::setup_linux_el2();
    }

    fn set_tvm(&mut self, on: bool) {
        if on {
            self.vcpu.hcr |= guest::HCR_TVM;
        } else {
            self.vcpu.hcr &= !guest::HCR_TVM;
        }
    }

    fn classify(&mut self, exit: &GuestExit) -> Trap {
        traps::classify(&mut self.vcpu, exit)
    }

    fn guest_sctlr(&self) -> u64 {
        self.vcpu.sctlr_el1
    }

    fn guest_mpidr(&self) -> u64 {
        guest::mpidr()
    }

    fn counter() -> u64 {
        guest::counter().0
    }

    fn counter_freq() -> u64 {
        guest::counter().1
    }

    fn linux_shared() -> &'static Shared<pt_hyp::Armv8> {
        &LINUX
    }

    fn cpu_index() -> usize {
        (guest::mpidr() & 0xff) as usize
    }

    fn cpu_exists(index: usize) -> bool {
        guest::cpu_exists(index)
    }

    fn start_cpu(index: usize) -> i32 {
        guest::cpu_on(index, boot::_secondary_start as *const () as usize as u64)
    }

    fn boot_secondary(&mut self, entry: u64, context: u64) {
        self.vcpu.boot_secondary(entry, context);
        guest::setup_linux_el2();
    }

    fn wait_for_interrupt() {
        guest::wait_for_interrupt();
    }
}

fn current_el() -> u64 {
    CurrentEL.read(CurrentEL::EL)
}

#[no_mangle]
extern "C" fn hyp_main() -> ! {
    println!("qemu-a53: Cortex-A53 example hypervisor");
    let mut checks = Checks::<A53>::new();
    checks.check("boot_hyp_mode", current_el() == 2);

    let mut a53 = A53 {
        vcpu: VcpuRegs::new(0),
    };
    selftest::guest_commands(&mut a53, &mut checks);
    hyp_common::scenario::run(&mut a53, &mut checks);
    hyp_common::linux::run(&mut a53, &mut checks);
    let sctlr = mmu::sctlr_el2();
    let mci = mmu::SCTLR_M | mmu::SCTLR_C | mmu::SCTLR_I;
    checks.check("hyp_mmu_enabled", sctlr & mci == mci);
    checks.check("uart_after_mmu", uart::read_reg(uart::PERIPH_ID0) == 0x11);
    checks.finish()
}

/// A secondary CPU, from `_secondary_start` (own stack and vectors): the boot CPU's hyp MMU
/// registers (the same tables), then the life of its vCPU.
#[no_mangle]
extern "C" fn secondary_main() -> ! {
    if let Some(regs) = HYP_MMU.get() {
        // SAFETY: the boot CPU's tables map all of RAM (this CPU's code, stack and data
        // included) and the UART at their identity addresses; this CPU runs the same code.
        unsafe { mmu::enable_hyp_mmu(regs) };
    }
    let mut a53 = A53 {
        vcpu: VcpuRegs::new(0),
    };
    hyp_common::linux::secondary(&mut a53)
}

/// Ends the QEMU run through semihosting (`-semihosting`, the `semihosting` crate: SYS_EXIT,
/// or SYS_EXIT_EXTENDED with the code where the ABI needs it): exit status 0 for `code == 0`,
/// non-zero otherwise.
fn exit_qemu(code: u32) -> ! {
    semihosting::process::exit(code as i32)
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    println!("PANIC: {}", info);
    exit_qemu(101)
}
