//! Architecture-independent parts of the example hypervisors.
//!
//! - [`Platform`]: what a scenario needs from a CPU-specific platform layer
//!   (`qemu-a53` for AArch64 EL2, `qemu-a15` for ARMv7 HYP mode).
//! - [`GuestExit`]: the raw syndrome values of one guest exit plus decoding
//!   helpers (the ESR_EL2 and HSR layouts agree on everything used here).
//! - [`Checks`]: `CHECK <name> ... PASS|FAIL` reporting that `cargo xtask qemu`
//!   parses.
//! - [`cmd`]: the command interface of the guest program.
//! - The Linux guest, one module per concern: [`linux`] (loading the guest, its boot protocol,
//!   the VM and its exit loop), [`psci`], [`testdev`] (the MMIO test device), [`setway`]
//!   (set/way cache maintenance), [`migrate`] (live migration between two VMs).
#![no_std]

pub mod alloc;
pub mod layout;
pub mod linux;
pub mod migrate;
pub mod psci;
pub mod scenario;
pub mod selftest;
pub mod setway;
pub mod testdev;
pub mod uart;

use core::fmt;
use core::marker::PhantomData;
use core::ops::Range;

/// Commands understood by the guest program (the same on both CPUs).
///
/// Before each resume the hypervisor puts a command in the guest registers:
///
/// | register (A64 / A32) | meaning                                   |
/// |----------------------|-------------------------------------------|
/// | `x0` / `r0`          | opcode (this module's constants)          |
/// | `x1` / `r1`          | address (IPA)                             |
/// | `x2` / `r2`          | value to store / loaded value             |
/// | `x3` / `r3`          | count                                     |
/// | `x4` / `r4`          | stride in bytes ([`FILL`])                |
/// | `x5`,`x6` / `r5`,`r6`| scratch of [`FILL`] (clobbered)           |
/// | list registers       | `x8..=x15` / `r5..=r12` ([`Platform::LIST_BASE`]) |
///
/// The guest starts at `guest_code().start + guest_entry_offset()`, points
/// its VBAR at its own vectors (clobbering `x9`/`r9` once) and exits with
/// `hvc #0` and `x0`/`r0` = [`HELLO_VALUE`]; from then on it loops over
/// commands. All accesses are 32-bit words. The guest executes the command and then
/// `hvc #<opcode>`, so the HVC immediate says which command completed; the
/// hypervisor must not advance the pc after an HVC exit (the return address
/// already points past the `hvc`). Registers other than the ones named for a
/// command are preserved. A command whose access faults to the hypervisor
/// (stage-2 abort) is simply resumed at the faulting instruction (or past it,
/// after emulating it), and then continues where it was.
pub mod cmd {
    /// Immediate of the first `hvc` after the guest starts; `x0`/`r0` then
    /// holds [`HELLO_VALUE`].
    pub const HELLO: u16 = 0;
    /// Value in `x0`/`r0` at the first exit.
    pub const HELLO_VALUE: u64 = 42;
    /// `x2 = zero-extended word [x1]`.
    pub const LOAD: u64 = 1;
    /// `word [x1] = x2`.
    pub const STORE: u64 = 2;
    /// `for i in 0..x3: word [x1 + i * x4] = x2` (uses x5, x6 as scratch).
    pub const FILL: u64 = 3;
    /// `for i in 0..x3 (at most 8): list[i] = word [list[i]]`, where
    /// `list[i]` is register `LIST_BASE + i`: addresses are replaced by the
    /// loaded values.
    pub const LOAD_LIST: u64 = 4;
    /// `for i in 0..x3 (at most 8): word [list[i]] = x2`.
    pub const STORE_LIST: u64 = 5;
    /// One data-cache clean and invalidate by set/way (`DC CISW` / `DCCISW`, set 0, way 0,
    /// level 1; uses x5/r5 as scratch), which HCR.TSW traps.
    pub const SET_WAY: u64 = 6;
    /// `SCTLR (SCTLR_EL1) = x2`, which HCR.TVM traps while set/way handling has it on.
    pub const WRITE_SCTLR: u64 = 7;
    /// Maximum length of a LOAD_LIST / STORE_LIST.
    pub const MAX_LIST: usize = 8;
    /// HVC immediate for an unknown opcode.
    pub const UNKNOWN: u16 = 0xffff;
    /// HVC immediate of the guest's own exception vectors: the guest took an
    /// exception at EL1 / PL1 (e.g. an external abort with stage 2 off).
    pub const GUEST_EXCEPTION: u16 = 0xfffe;
}

/// Which vector of the hypervisor the guest exit came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vector {
    /// Synchronous trap (A64 lower-EL sync, A32 Hyp Trap vector).
    Sync,
    Irq,
    Fiq,
    /// A64 only.
    SError,
}

/// Decoded reason of a guest exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// `hvc #imm` from the guest (EC 0x16 on A64, 0x12 on A32).
    Hvc(u16),
    /// Data abort from the guest (EC 0x24): stage-2 fault or similar.
    DataAbort,
    /// Instruction abort from the guest (EC 0x20).
    InstructionAbort,
    /// Any other synchronous trap; the exception class.
    Other(u8),
    /// IRQ/FIQ/SError.
    Async(Vector),
}

/// A guest exit as the Linux guest's exit loop sees it, decoded by the CPU crate
/// ([`Platform::classify`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trap {
    /// A stage-2 data or instruction abort: for pt-hyp's `handle_guest_abort`.
    Abort,
    /// `hvc #imm`.
    Hvc(u16),
    /// `smc` trapped by HCR.TSC: a PSCI call (function ID in register 0).
    Smc,
    /// `wfi` trapped by HCR.TWI.
    Wfi,
    /// `wfe` trapped by HCR.TWE.
    Wfe,
    /// A data-cache maintenance instruction by set/way trapped by HCR.TSW (not performed).
    SetWay,
    /// A write to a virtual-memory control register trapped by HCR.TVM, already emulated by
    /// the CPU crate; for a write to SCTLR, its value before the write.
    TvmWrite {
        /// SCTLR (SCTLR_EL1) before the write, if the write was to SCTLR.
        old_sctlr: Option<u64>,
    },
    /// A conditional instruction whose condition failed (A32): skip it.
    ConditionFailed,
    /// An IRQ, FIQ or SError exit (the Linux guest's interrupts do not come here).
    Async(Vector),
    /// Anything else: the exception class.
    Other(u8),
}

/// Raw values of one guest exit (all widened to `u64`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestExit {
    /// Vector the exit came through: 0 sync, 1 IRQ, 2 FIQ, 3 SError
    /// (see [`GuestExit::vector`]).
    pub vector_raw: u8,
    /// ESR_EL2 / HSR.
    pub syndrome: u64,
    /// FAR_EL2 / HDFAR: faulting virtual address of a data abort.
    pub far: u64,
    /// FAR_EL2 / HIFAR: faulting virtual address of an instruction abort.
    pub ifar: u64,
    /// HPFAR_EL2 / HPFAR: faulting IPA bits [n:12] (in register bits [n-8:4]).
    pub hpfar: u64,
    /// ELR_EL2 / ELR_hyp: preferred return address (also the vcpu pc).
    pub elr: u64,
    /// SPSR_EL2 / SPSR_hyp: guest PSTATE / CPSR at the exit.
    pub spsr: u64,
}

impl GuestExit {
    pub fn vector(&self) -> Vector {
        match self.vector_raw {
            1 => Vector::Irq,
            2 => Vector::Fiq,
            3 => Vector::SError,
            _ => Vector::Sync,
        }
    }

    /// Exception class, bits [31:26] of the syndrome.
    pub fn ec(&self) -> u8 {
        ((self.syndrome >> 26) & 0x3f) as u8
    }

    /// Instruction length bit: the trapped instruction was 32-bit.
    pub fn il(&self) -> bool {
        self.syndrome & (1 << 25) != 0
    }

    /// Instruction-specific syndrome, bits [24:0].
    pub fn iss(&self) -> u32 {
        (self.syndrome & 0x1ff_ffff) as u32
    }

    pub fn kind(&self) -> ExitKind {
        if self.vector() != Vector::Sync {
            return ExitKind::Async(self.vector());
        }
        match self.ec() {
            // 0x12: HVC from AArch32, 0x16: HVC from AArch64.
            0x12 | 0x16 => ExitKind::Hvc((self.iss() & 0xffff) as u16),
            0x24 => ExitKind::DataAbort,
            0x20 => ExitKind::InstructionAbort,
            ec => ExitKind::Other(ec),
        }
    }

    /// Faulting virtual address of an abort (FAR / HDFAR / HIFAR).
    pub fn fault_addr(&self) -> u64 {
        match self.kind() {
            ExitKind::InstructionAbort => self.ifar,
            _ => self.far,
        }
    }

    /// Faulting IPA of a stage-2 abort: HPFAR page plus the page offset from
    /// the fault address (guest stage 1 is off, so VA == IPA anyway).
    pub fn fault_ipa(&self) -> u64 {
        ((self.hpfar >> 4) << 12) | (self.fault_addr() & 0xfff)
    }

    /// Data abort: ISS.ISV, the syndrome describes the access.
    pub fn isv(&self) -> bool {
        self.iss() & (1 << 24) != 0
    }

    /// Data abort: access size in bytes (valid if [`Self::isv`]).
    pub fn access_size(&self) -> usize {
        1 << ((self.iss() >> 22) & 3)
    }

    /// Data abort: register number of the transfer (valid if [`Self::isv`]).
    pub fn srt(&self) -> usize {
        ((self.iss() >> 16) & 0x1f) as usize
    }

    /// Data abort: write (WnR).
    pub fn is_write(&self) -> bool {
        self.iss() & (1 << 6) != 0
    }

    /// Abort: fault status code (DFSC/IFSC, bits [5:0]).
    pub fn fsc(&self) -> u8 {
        (self.iss() & 0x3f) as u8
    }

    /// Bytes to skip to get past the trapped instruction (2 or 4, from IL).
    pub fn insn_len(&self) -> u64 {
        if self.il() {
            4
        } else {
            2
        }
    }
}

impl fmt::Display for GuestExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} syndrome={:#x} far={:#x} ifar={:#x} hpfar={:#x} elr={:#x} spsr={:#x}",
            self.kind(),
            self.syndrome,
            self.far,
            self.ifar,
            self.hpfar,
            self.elr,
            self.spsr
        )
    }
}

/// Prints `args` and a newline through the platform's UART.
pub fn println_p<P: Platform>(args: fmt::Arguments<'_>) {
    P::print(args);
    P::print(format_args!("\n"));
}

/// The platform layer of one CPU: the hypervisor on one physical CPU with the vCPU it runs
/// (each CPU of a multi-CPU run has its own value; what they share is in [`linux::Shared`]).
///
/// Implemented by `qemu_a53::A53` and `qemu_a15::A15`; scenarios are written
/// generically against it.
pub trait Platform {
    /// Register values for the hypervisor's own stage-1 translation
    /// (`HypMmuRegs` of the CPU crate).
    type HypMmuRegs;
    /// The pt-hyp architecture of this CPU.
    type Arch: pt_hyp::hyp::HypArch + pt_hyp::fault::FaultArch;

    /// The abort registers of `exit` as pt-hyp's decoder takes them.
    fn abort_regs(exit: &GuestExit) -> <Self::Arch as pt_hyp::fault::FaultArch>::Regs;

    /// The CPU crate's MMU register values from pt-hyp's.
    fn hyp_mmu_regs(regs: &pt_hyp::hyp::HypMmuRegs) -> Self::HypMmuRegs;

    /// Short CPU name, e.g. `"a53"`.
    const NAME: &'static str;
    /// Number of guest general-purpose registers for [`Self::reg`]:
    /// 31 (`x0..=x30`) on A64, 15 (`r0..=r14`, r13/r14 = SP_svc/LR_svc) on A32.
    const NUM_REGS: usize;
    /// First register of the LOAD_LIST / STORE_LIST address list (see [`cmd`]).
    const LIST_BASE: usize;

    /// Writes formatted text to the UART.
    fn print(args: fmt::Arguments<'_>);

    /// Ends the run through semihosting: `code == 0` is success (QEMU exit
    /// status 0), any other value is reported as the QEMU exit status.
    fn exit(code: u32) -> !;

    /// Turns on the hypervisor's stage-1 MMU and caches with `regs`
    /// (invalidates EL2/HYP TLBs first).
    ///
    /// # Safety
    /// The tables must map the running code, stack, data and the UART such
    /// that execution can continue at the same addresses.
    unsafe fn enable_hyp_mmu(regs: &Self::HypMmuRegs);

    /// Physical address range of the guest program (page aligned,
    /// section `.guest_text`).
    fn guest_code() -> Range<usize> {
        layout::guest_code()
    }
    /// Offset of the guest entry point from `guest_code().start`.
    fn guest_entry_offset() -> usize {
        layout::guest_entry_offset()
    }
    /// A page-aligned, zero-initialised RAM area reserved for guest data
    /// (section `.guest_data`).
    fn guest_data() -> Range<usize> {
        layout::guest_data()
    }
    /// First free page-aligned RAM address after the image, and the end of RAM.
    fn free_ram() -> Range<usize> {
        layout::free_ram()
    }

    /// Guest register `n`. Total: a number the vCPU has no register for (A64 register 31,
    /// XZR/WZR, as an abort's SRT) reads as zero.
    fn reg(&self, n: usize) -> u64;
    /// Sets guest register `n`; a number the vCPU has no register for is ignored (a load
    /// into XZR is discarded).
    fn set_reg(&mut self, n: usize, value: u64);
    fn pc(&self) -> u64;
    fn set_pc(&mut self, pc: u64);
    /// Skips the trapped instruction (2 or 4 bytes, from the IL bit).
    fn advance_pc(&mut self, exit: &GuestExit) {
        let pc = self.pc() + exit.insn_len();
        self.set_pc(pc);
    }

    /// Stage-2 configuration used by the next [`Self::run_guest`]: `enable`
    /// sets HCR.VM; `vttbr`/`vtcr` are written as given.
    fn set_stage2(&mut self, enable: bool, vttbr: u64, vtcr: u64);
    /// Invalidates all stage-1+2 TLB entries of the guest (current VMID on
    /// A64, all non-secure non-Hyp on A32), e.g. after changing stage 2.
    fn invalidate_guest_tlb(&mut self);

    /// Enters the guest (EL1h / SVC, interrupts masked, guest MMU off) at
    /// [`Self::pc`] with the vcpu registers and returns at its next exit with
    /// all registers saved.
    fn run_guest(&mut self) -> GuestExit;

    // ---- The Linux guest (see [`linux`]) ----

    /// IPA the kernel image is loaded at (an arm64 `Image` 2 MiB aligned; a zImage anywhere
    /// in the first 128 MiB of RAM). `xtask` loads it there.
    const KERNEL_IPA: u64;
    /// Where the kernel image carries its magic number: `(offset, little-endian u32 value)`.
    const KERNEL_MAGIC: (usize, u32);
    /// Largest MMIO access the guest can make with an instruction that reports its syndrome
    /// (8 bytes on A64, 4 on A32), for the test device's size check.
    const MAX_MMIO_SIZE: u8;
    /// Whether the guest kernel is known to use set/way cache maintenance at boot (the ARM
    /// zImage decompressor does; the arm64 kernel does not), so the run must see traps.
    const EXPECT_SET_WAY: bool;
    /// Whether HCR.TSW traps set/way instructions on the CPU model the example runs on (it
    /// does on hardware; QEMU 10.0.2's Cortex-A15 model was seen not to).
    const SET_WAY_TRAPS: bool;

    /// Puts the vcpu into the state the kernel's boot protocol asks for (registers, mode,
    /// MMU and caches off, entry at `kernel`, device tree at `dtb`), and sets up the Linux
    /// guest's virtualization controls: HCR with VM, SWIO, TSC, TWI and TSW and without
    /// IMO/FMO/AMO (interrupts go straight to the guest), the generic timer direct
    /// (CNTHCTL, CNTVOFF = 0), VPIDR/VMPIDR from the physical MIDR/MPIDR.
    fn boot_linux(&mut self, kernel: u64, dtb: u64);
    /// Sets or clears HCR.TVM for the next entries.
    fn set_tvm(&mut self, on: bool);
    /// Decodes `exit`; emulates a trapped VM-control register write on the spot
    /// ([`Trap::TvmWrite`]). Does not move the pc.
    fn classify(&mut self, exit: &GuestExit) -> Trap;
    /// The guest's SCTLR (SCTLR_EL1), for `GuestAbort::with_guest_sctlr` and set/way.
    fn guest_sctlr(&self) -> u64;
    /// The vcpu's MPIDR (what VMPIDR says).
    fn guest_mpidr(&self) -> u64;
    /// The generic timer's physical count (CNTPCT) and frequency (CNTFRQ, Hz).
    fn counter() -> u64;
    fn counter_freq() -> u64;

    // ---- Several physical CPUs, one vCPU of the Linux guest on each (see [`linux`]) ----

    /// The state the Linux guest's vCPUs share: a `static` of the CPU crate (statics cannot be
    /// generic over the architecture).
    fn linux_shared() -> &'static linux::Shared<Self::Arch>;
    /// Index of the physical CPU running the caller: MPIDR Aff0 (QEMU `virt` numbers up to 8
    /// CPUs in Aff0 with the higher affinity fields 0).
    fn cpu_index() -> usize;
    /// Whether physical CPU `index` exists: the platform's PSCI `AFFINITY_INFO` (QEMU's,
    /// called from EL2 / HYP mode) does not answer `INVALID_PARAMETERS` for it.
    fn cpu_exists(index: usize) -> bool;
    /// Starts physical CPU `index` at the CPU crate's secondary entry (own stack, vectors,
    /// hyp MMU, then [`linux::secondary`]) through the platform's PSCI `CPU_ON`; returns the
    /// PSCI result (0 = success).
    fn start_cpu(index: usize) -> i32;
    /// Puts the vCPU into the state PSCI `CPU_ON` asks for (DEN 0022 6.4): pc = `entry`
    /// (AArch32: bit 0 selects Thumb), register 0 = `context`, MMU and caches off, EL1h / SVC
    /// with interrupts masked; and sets up this CPU's EL2 controls as [`Self::boot_linux`]
    /// does (VMPIDR = this CPU's MPIDR).
    fn boot_secondary(&mut self, entry: u64, context: u64);
    /// Waits in the hypervisor for an interrupt of this CPU (`wfi`): the guest's trapped WFI.
    /// An interrupt routed to the guest (HCR.IMO clear) is a wake-up event all the same.
    fn wait_for_interrupt();
}

/// Collects `CHECK` results and ends the run with their verdict.
pub struct Checks<P: Platform> {
    passed: u32,
    failed: u32,
    _platform: PhantomData<P>,
}

impl<P: Platform> Default for Checks<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Platform> Checks<P> {
    pub const fn new() -> Self {
        Self {
            passed: 0,
            failed: 0,
            _platform: PhantomData,
        }
    }

    /// Prints `CHECK <name> ... PASS|FAIL` and records the result.
    pub fn check(&mut self, name: &str, ok: bool) -> bool {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        P::print(format_args!(
            "CHECK {} ... {}\n",
            name,
            if ok { "PASS" } else { "FAIL" }
        ));
        ok
    }

    pub fn failed(&self) -> u32 {
        self.failed
    }

    /// Prints `RESULT: N passed, M failed` and exits: success only if M == 0.
    pub fn finish(self) -> ! {
        P::print(format_args!(
            "RESULT: {} passed, {} failed\n",
            self.passed, self.failed
        ));
        P::exit(if self.failed == 0 { 0 } else { 1 })
    }
}
