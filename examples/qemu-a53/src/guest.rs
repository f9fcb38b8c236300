//! Running the guest at EL1h, and the guest program itself.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    Readable, Writeable, CNTFRQ_EL0, CNTHCTL_EL2, CNTPCT_EL0, CNTVOFF_EL2, ELR_EL2, ESR_EL2,
    FAR_EL2, HCR_EL2, HPFAR_EL2, MIDR_EL1, MPIDR_EL1, SCTLR_EL1, SPSR_EL2, SP_EL1, VMPIDR_EL2,
    VTCR_EL2, VTTBR_EL2,
};
use core::arch::{asm, global_asm};
use hyp_common::GuestExit;

/// Guest register state, saved and restored around [`run_guest`].
#[repr(C)]
#[derive(Clone, Debug)]
pub struct VcpuRegs {
    /// x0..x30; the assembly relies on this being the first field.
    pub x: [u64; 31],
    /// Guest pc (ELR_EL2).
    pub pc: u64,
    /// SPSR_EL2 to enter with; updated at each exit.
    pub spsr: u64,
    pub sp_el1: u64,
    pub sctlr_el1: u64,
    /// Set HCR_EL2.VM (stage 2 on) with `vttbr`/`vtcr`.
    pub stage2: bool,
    pub vttbr: u64,
    pub vtcr: u64,
    /// HCR_EL2 to enter with (HCR_EL2.VM comes from `stage2`).
    pub hcr: u64,
    /// The guest's FP/SIMD registers, restored at entry and saved at exit by the world
    /// switch, so the hypervisor's own (NEON-using) Rust code never clobbers them.
    pub fp: FpRegs,
}

/// Guest FP/SIMD state: V0..V31, FPSR, FPCR (the layout `__guest_enter` assumes).
#[repr(C, align(16))]
#[derive(Clone, Debug)]
pub struct FpRegs {
    pub v: [u128; 32],
    pub fpsr: u64,
    pub fpcr: u64,
}

/// EL1h with D, A, I, F masked.
pub const SPSR_EL1H_MASKED: u64 = SPSR_EL2::M::EL1h.value
    | SPSR_EL2::D::Masked.value
    | SPSR_EL2::A::Masked.value
    | SPSR_EL2::I::Masked.value
    | SPSR_EL2::F::Masked.value;
/// SCTLR_EL1 RES1 bits (ARMv8.0: bits 11, 20, 22, 23, 28, 29) with M, C, I = 0: guest stage 1
/// off. aarch64-cpu names the fields, not the RES1 bits, so they are listed here.
pub const SCTLR_EL1_MMU_OFF: u64 =
    (1 << 11) | (1 << 20) | (1 << 22) | (1 << 23) | (1 << 28) | (1 << 29);

/// HCR_EL2.VM: stage 2 on (set by [`run_guest`] from `VcpuRegs::stage2`).
const HCR_VM: u64 = HCR_EL2::VM::Enable.value;
/// HCR_EL2.TVM: trap writes to the EL1 virtual-memory control registers.
pub const HCR_TVM: u64 = HCR_EL2::TVM::EnableTrapTVM.value;
/// Guest EL1 is AArch64; SMC, WFI, WFE and set/way trap; physical interrupts to EL2 (the
/// check scenario's guest program).
const HCR_BASE: u64 = HCR_EL2::RW::EL1IsAarch64.value
    | HCR_EL2::TSC::EnableTrapEl1SmcToEl2.value
    | HCR_EL2::TWI::SET.value
    | HCR_EL2::TWE::SET.value
    | HCR_EL2::TSW::SET.value
    | HCR_EL2::AMO::SET.value
    | HCR_EL2::IMO::EnableVirtualIRQ.value
    | HCR_EL2::FMO::EnableVirtualFIQ.value
    | HCR_EL2::SWIO::SET.value;
/// The Linux guest: AArch64 EL1; SMC (PSCI), WFI and set/way trap; IMO, FMO, AMO clear, so
/// interrupts and SErrors go straight to the guest; SWIO (set/way invalidate as clean+inv).
pub const HCR_LINUX: u64 = HCR_EL2::RW::EL1IsAarch64.value
    | HCR_EL2::TSC::EnableTrapEl1SmcToEl2.value
    | HCR_EL2::TWI::SET.value
    | HCR_EL2::TSW::SET.value
    | HCR_EL2::SWIO::SET.value;

impl VcpuRegs {
    pub const fn new(pc: u64) -> Self {
        Self {
            x: [0; 31],
            pc,
            spsr: SPSR_EL1H_MASKED,
            sp_el1: 0,
            sctlr_el1: SCTLR_EL1_MMU_OFF,
            stage2: false,
            vttbr: 0,
            vtcr: 0,
            hcr: HCR_BASE,
            fp: FpRegs {
                v: [0; 32],
                fpsr: 0,
                fpcr: 0,
            },
        }
    }

    /// The arm64 boot protocol (Documentation/arm64/booting.rst): x0 = device tree, x1..x3
    /// = 0, EL1h with D, A, I, F masked, MMU and data cache off; plus the Linux HCR.
    pub fn boot_linux(&mut self, kernel: u64, dtb: u64) {
        self.x = [0; 31];
        self.x[0] = dtb;
        self.pc = kernel;
        self.spsr = SPSR_EL1H_MASKED;
        self.sp_el1 = 0;
        self.sctlr_el1 = SCTLR_EL1_MMU_OFF;
        self.hcr = HCR_LINUX;
    }

    /// A vCPU turned on by the guest's PSCI CPU_ON (DEN 0022 6.4, AArch64 caller): pc =
    /// `entry`, x0 = `context`, the other registers 0, EL1h with D, A, I, F masked, MMU and
    /// caches off; plus the Linux HCR.
    pub fn boot_secondary(&mut self, entry: u64, context: u64) {
        self.boot_linux(entry, context);
    }
}

/// Function IDs of the platform's PSCI (QEMU's, answering SMCs from EL2 when there is no EL3).
const PSCI_CPU_ON_64: u64 = 0xc400_0003;
const PSCI_AFFINITY_INFO_64: u64 = 0xc400_0004;

/// One PSCI call to the platform's firmware (QEMU `virt` with virtualization and no EL3
/// implements PSCI in the emulator behind `smc` from EL2: its conduit is SMC). Returns x0.
fn psci(fid: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let r: u64;
    // SAFETY: an SMCCC call; the firmware (QEMU) reads x0..x3, writes x0 and may clobber
    // x1..x17 (SMCCC 1.0), declared as clobbered.
    unsafe {
        asm!(
            "smc #0",
            inout("x0") fid => r,
            inout("x1") a1 => _,
            inout("x2") a2 => _,
            inout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _,
            out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _,
            options(nostack),
        )
    };
    r as i64
}

/// PSCI CPU_ON of physical CPU `index` (MPIDR Aff0 = index on QEMU `virt`) at `entry`, with
/// `index` as its context id.
pub fn cpu_on(index: usize, entry: u64) -> i32 {
    psci(PSCI_CPU_ON_64, index as u64, entry, index as u64) as i32
}

/// Whether physical CPU `index` exists: PSCI AFFINITY_INFO (level 0) does not answer
/// INVALID_PARAMETERS (-2).
pub fn cpu_exists(index: usize) -> bool {
    psci(PSCI_AFFINITY_INFO_64, index as u64, 0, 0) != -2
}

/// Waits for an interrupt (`wfi`) at EL2; any pending physical interrupt wakes it, including
/// one routed to EL1 (HCR_EL2.IMO clear), which is then taken by the guest.
pub fn wait_for_interrupt() {
    barrier::dsb(barrier::SY);
    aarch64_cpu::asm::wfi();
}

/// EL2 controls of the Linux guest on this CPU: the generic timer direct (CNTHCTL_EL2 with
/// EL1PCTEN and EL1PCEN, CNTVOFF_EL2 = 0) and the identification the guest reads
/// (VPIDR_EL2 = MIDR_EL1, VMPIDR_EL2 = this CPU's MPIDR_EL1: each vCPU its own).
pub fn setup_linux_el2() {
    CNTHCTL_EL2.write(CNTHCTL_EL2::EL1PCTEN::SET + CNTHCTL_EL2::EL1PCEN::SET);
    CNTVOFF_EL2.set(0);
    let midr = MIDR_EL1.get();
    // SAFETY: VPIDR_EL2 (no aarch64-cpu accessor) only sets what the guest's MIDR_EL1 reads.
    unsafe { asm!("msr vpidr_el2, {}", in(reg) midr, options(nomem, nostack)) };
    VMPIDR_EL2.set(MPIDR_EL1.get());
    barrier::isb(barrier::SY);
}

/// The physical MPIDR_EL1 (what VMPIDR_EL2 gives the guest).
pub fn mpidr() -> u64 {
    MPIDR_EL1.get()
}

/// CNTPCT_EL0 and CNTFRQ_EL0 (after an ISB, so the count is not read early).
pub fn counter() -> (u64, u64) {
    barrier::isb(barrier::SY);
    (CNTPCT_EL0.get(), CNTFRQ_EL0.get())
}

/// Runs the guest until its next exit; all guest registers are in `vcpu`
/// afterwards, the syndrome in the returned value.
pub fn run_guest(vcpu: &mut VcpuRegs) -> GuestExit {
    let hcr = (vcpu.hcr & !HCR_VM) | if vcpu.stage2 { HCR_VM } else { 0 };
    // The guest context of this CPU: its stage 2, SCTLR_EL1 and SP_EL1 (the rest of EL1 is
    // left in the registers between entries), where to return and in which state.
    VTTBR_EL2.set(vcpu.vttbr);
    VTCR_EL2.set(vcpu.vtcr);
    SCTLR_EL1.set(vcpu.sctlr_el1);
    SP_EL1.set(vcpu.sp_el1);
    ELR_EL2.set(vcpu.pc);
    SPSR_EL2.set(vcpu.spsr);
    HCR_EL2.set(hcr);
    barrier::isb(barrier::SY);
    let v: *mut VcpuRegs = vcpu;
    // SAFETY: `__guest_enter` saves and restores every host callee-saved register and returns
    // here at the guest's next exit; `v` and its `fp` field stay valid (borrowed) meanwhile.
    let vector = unsafe { crate::boot::__guest_enter(v, core::ptr::addr_of_mut!((*v).fp)) };
    let (esr, far, hpfar, elr, spsr, sp, sctlr) = (
        ESR_EL2.get(),
        FAR_EL2.get(),
        HPFAR_EL2.get(),
        ELR_EL2.get(),
        SPSR_EL2.get(),
        SP_EL1.get(),
        SCTLR_EL1.get(),
    );
    vcpu.pc = elr;
    vcpu.spsr = spsr;
    vcpu.sp_el1 = sp;
    vcpu.sctlr_el1 = sctlr;
    GuestExit {
        vector_raw: vector as u8,
        syndrome: esr,
        far,
        ifar: far,
        hpfar,
        elr,
        spsr,
    }
}

/// Invalidates stage-1+2 TLB entries for the VMID in `vttbr`.
pub fn invalidate_guest_tlb(vttbr: u64) {
    // SAFETY: TLB maintenance for the guest's VMID; VTTBR_EL2 is rewritten
    // by every `run_guest` anyway.
    unsafe {
        asm!(
            "msr vttbr_el2, {0}",
            "isb",
            "dsb ishst",
            "tlbi vmalls12e1is",
            "dsb ish",
            "isb",
            in(reg) vttbr,
            options(nostack),
        );
    }
}

// The guest program (EL1, MMU off, position independent). Interprets the
// commands of `hyp_common::cmd`: x0 opcode, x1 address, x2 value, x3 count,
// x4 stride, x5/x6 FILL scratch, x8..x15 address list. After each command it
// executes `hvc #<opcode>`.
global_asm!(
    r#"
    .section .guest_text, "ax"
    .balign 2048
guest_vectors:                      // any guest exception -> report to EL2
    .rept 16
    hvc     #0xfffe
    b       .
    .balign 128
    .endr

    .global __guest_entry
__guest_entry:
    adr     x9, guest_vectors
    msr     vbar_el1, x9
    isb
    mov     x0, #42
    hvc     #0
guest_loop:
    cmp     x0, #1
    b.eq    10f
    cmp     x0, #2
    b.eq    20f
    cmp     x0, #3
    b.eq    30f
    cmp     x0, #4
    b.eq    40f
    cmp     x0, #5
    b.eq    50f
    cmp     x0, #6
    b.eq    60f
    cmp     x0, #7
    b.eq    70f
    hvc     #0xffff
    b       guest_loop

10: ldr     w2, [x1]                // LOAD
    hvc     #1
    b       guest_loop

20: str     w2, [x1]                // STORE
    hvc     #2
    b       guest_loop

30: mov     x5, x1                  // FILL
    mov     x6, x3
31: cbz     x6, 32f
    str     w2, [x5]
    add     x5, x5, x4
    sub     x6, x6, #1
    b       31b
32: hvc     #3
    b       guest_loop

40:                                 // LOAD_LIST x8..x15, count x3
    .irp    n, 8, 9, 10, 11, 12, 13, 14, 15
    cmp     x3, #(\n - 7)
    b.lo    48f
    ldr     w\n, [x\n]
    .endr
48: hvc     #4
    b       guest_loop

50:                                 // STORE_LIST x8..x15, count x3
    .irp    n, 8, 9, 10, 11, 12, 13, 14, 15
    cmp     x3, #(\n - 7)
    b.lo    58f
    str     w2, [x\n]
    .endr
58: hvc     #5
    b       guest_loop

60: mov     x5, #0                  // SET_WAY: level 1, set 0, way 0
    dc      cisw, x5
    hvc     #6
    b       guest_loop

70: msr     sctlr_el1, x2           // WRITE_SCTLR
    isb
    hvc     #7
    b       guest_loop
"#
);
