//! Example hypervisor for QEMU `virt` with a Cortex-A15 in HYP mode.
//!
//! Platform layer: boot (`boot`), PL011 output (`uart`), semihosting exit
//! (the `semihosting` crate), HYP stage-1 MMU enable (`mmu`), guest entry/exit and the
//! guest program (`guest`), tied together as [`A15`] implementing
//! [`hyp_common::Platform`], with the Linux guest's trap decoding and system registers in
//! `traps`. `main` runs the platform self-tests, the check scenario, then the Linux guest.
#![no_std]
#![no_main]

#[cfg(not(target_arch = "arm"))]
compile_error!("qemu-a15 builds only for --target armv7a-none-eabi");

mod boot;
mod guest;
mod mmu;
mod traps;

use core::arch::asm;
use core::fmt;
use core::panic::PanicInfo;
use hyp_common::linux::Shared;
use hyp_common::{println, selftest, uart, Checks, GuestExit, Platform, Trap};

pub use guest::VcpuRegs;
pub use mmu::HypMmuRegs;

/// The Cortex-A15 platform: the hypervisor on one physical CPU with the vCPU it runs.
pub struct A15 {
    pub vcpu: VcpuRegs,
}

/// What the Linux guest's vCPUs share (one per CPU crate: statics cannot be generic).
static LINUX: Shared<pt_hyp::Armv7> = Shared::new();

/// The hyp MMU registers the boot CPU turned its MMU on with, for the secondaries.
static HYP_MMU: spin::Once<HypMmuRegs> = spin::Once::new();

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
        exit_qemu(code)
    }

    unsafe fn enable_hyp_mmu(regs: &HypMmuRegs) {
        HYP_MMU.call_once(|| *regs);
        // SAFETY: forwarded contract.
        unsafe { mmu::enable_hyp_mmu(regs) }
    }

    /// r13/r14 are those of the guest's current mode; a register the vCPU does not keep
    /// (r15) reads as zero.
    fn reg(&self, n: usize) -> u64 {
        self.vcpu.get(n).into()
    }

    /// Registers are 32-bit: the upper half of `value` is dropped; a register the vCPU does
    /// not keep is ignored.
    fn set_reg(&mut self, n: usize, value: u64) {
        self.vcpu.set(n, value as u32);
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

    /// Skips the trapped instruction and, in a Thumb IT block, advances ITSTATE past it.
    fn advance_pc(&mut self, exit: &GuestExit) {
        self.vcpu.pc = self.vcpu.pc.wrapping_add(exit.insn_len() as u32);
        self.vcpu.cpsr = traps::it_advance(self.vcpu.cpsr);
    }

    /// The zImage 16 MiB into RAM: it decompresses the kernel to RAM + 32 KiB, below itself.
    const KERNEL_IPA: u64 = 0x4100_0000;
    /// zImage header: magic 0x016f2818 at offset 0x24.
    const KERNEL_MAGIC: (usize, u32) = (0x24, 0x016f_2818);
    const MAX_MMIO_SIZE: u8 = 4;
    /// Debian bookworm's 6.1 zImage cleans its caches by address (the decompressor switched
    /// from set/way to by-VA maintenance for ARMv7 in Linux 5.x), and the kernel proper does
    /// no set/way at boot: the run shows 0 traps; the rule is still checked for consistency.
    const EXPECT_SET_WAY: bool = false;
    /// Observed with QEMU 10.0.2: the Cortex-A15 model executes `DCCISW` as a no-op without
    /// trapping it under HCR.TSW (no exit reaches HYP mode), unlike hardware and unlike the
    /// Cortex-A53 model; the scenario then checks the TVM half of the rule only.
    const SET_WAY_TRAPS: bool = false;

    fn boot_linux(&mut self, kernel: u64, dtb: u64) {
        self.vcpu.boot_linux(kernel as u32, dtb as u32);
        guest::setup_linux_hyp();
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
        self.vcpu.sctlr.into()
    }

    fn guest_mpidr(&self) -> u64 {
        guest::mpidr().into()
    }

    fn counter() -> u64 {
        guest::counter().0
    }

    fn counter_freq() -> u64 {
        guest::counter().1
    }

    fn linux_shared() -> &'static Shared<pt_hyp::Armv7> {
        &LINUX
    }

    fn cpu_index() -> usize {
        (guest::mpidr() & 0xff) as usize
    }

    fn cpu_exists(index: usize) -> bool {
        guest::cpu_exists(index)
    }

    fn start_cpu(index: usize) -> i32 {
        guest::cpu_on(index, boot::_secondary_start as *const () as usize as u32)
    }

    /// Register values are 32-bit: the upper halves are dropped (an SMC32 CPU_ON has none).
    fn boot_secondary(&mut self, entry: u64, context: u64) {
        self.vcpu.boot_secondary(entry as u32, context as u32);
        guest::setup_linux_hyp();
    }

    fn wait_for_interrupt() {
        guest::wait_for_interrupt();
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
    hyp_common::linux::run(&mut a15, &mut checks);
    let sctlr = mmu::hsctlr();
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
    let mut a15 = A15 {
        vcpu: VcpuRegs::new(0),
    };
    hyp_common::linux::secondary(&mut a15)
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
