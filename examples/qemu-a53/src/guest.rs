//! Running the guest at EL1h, and the guest program itself.

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
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;
/// SCTLR_EL1 RES1 bits (ARMv8.0) with M, C, I = 0: guest stage 1 off.
pub const SCTLR_EL1_MMU_OFF: u64 = 0x30d0_0800;

const HCR_VM: u64 = 1 << 0;
const HCR_SWIO: u64 = 1 << 1;
const HCR_FMO: u64 = 1 << 3;
const HCR_IMO: u64 = 1 << 4;
const HCR_AMO: u64 = 1 << 5;
const HCR_TWI: u64 = 1 << 13;
const HCR_TWE: u64 = 1 << 14;
const HCR_TSC: u64 = 1 << 19;
const HCR_TSW: u64 = 1 << 22;
/// HCR_EL2.TVM: trap writes to the EL1 virtual-memory control registers.
pub const HCR_TVM: u64 = 1 << 26;
const HCR_RW: u64 = 1 << 31;
/// Guest EL1 is AArch64; SMC, WFI, WFE and set/way trap; physical interrupts to EL2.
const HCR_BASE: u64 =
    HCR_RW | HCR_TSC | HCR_TWI | HCR_TWE | HCR_TSW | HCR_AMO | HCR_IMO | HCR_FMO | HCR_SWIO;
/// The Linux guest: AArch64 EL1; SMC (PSCI), WFI and set/way trap; IMO, FMO, AMO clear, so
/// interrupts and SErrors go straight to the guest; SWIO (set/way invalidate as clean+inv).
pub const HCR_LINUX: u64 = HCR_RW | HCR_TSC | HCR_TWI | HCR_TSW | HCR_SWIO;
/// CNTHCTL_EL2: EL1PCTEN | EL1PCEN, the physical counter and timer not trapped.
const CNTHCTL_EL1_ACCESS: u64 = 0b11;

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
    // SAFETY: `dsb sy; wfi` only waits; no memory or register effects.
    unsafe { asm!("dsb sy", "wfi", options(nostack)) };
}

/// EL2 controls of the Linux guest: the generic timer direct (CNTHCTL_EL2, CNTVOFF_EL2 = 0)
/// and the identification the guest reads (VPIDR_EL2 = MIDR_EL1, VMPIDR_EL2 = MPIDR_EL1).
pub fn setup_linux_el2() {
    // SAFETY: EL2 configuration registers of the guest context only.
    unsafe {
        asm!(
            "msr cnthctl_el2, {cnthctl}",
            "msr cntvoff_el2, xzr",
            "mrs {t}, midr_el1",
            "msr vpidr_el2, {t}",
            "mrs {t}, mpidr_el1",
            "msr vmpidr_el2, {t}",
            "isb",
            cnthctl = in(reg) CNTHCTL_EL1_ACCESS,
            t = out(reg) _,
            options(nostack),
        );
    }
}

/// The physical MPIDR_EL1 (what VMPIDR_EL2 gives the guest).
pub fn mpidr() -> u64 {
    let v;
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) v, options(nomem, nostack)) };
    v
}

/// CNTPCT_EL0 and CNTFRQ_EL0.
pub fn counter() -> (u64, u64) {
    let (c, f);
    // SAFETY: reading the generic counter has no side effects.
    unsafe {
        asm!(
            "isb",
            "mrs {c}, cntpct_el0",
            "mrs {f}, cntfrq_el0",
            c = out(reg) c,
            f = out(reg) f,
            options(nomem, nostack),
        )
    };
    (c, f)
}

/// Runs the guest until its next exit; all guest registers are in `vcpu`
/// afterwards, the syndrome in the returned value.
pub fn run_guest(vcpu: &mut VcpuRegs) -> GuestExit {
    let hcr = (vcpu.hcr & !HCR_VM) | if vcpu.stage2 { HCR_VM } else { 0 };
    let vector;
    // SAFETY: EL2 system register writes that configure the guest context;
    // `__guest_enter` saves/restores all host callee-saved registers and
    // returns here on the guest's next exit.
    unsafe {
        asm!(
            "msr vttbr_el2, {vttbr}",
            "msr vtcr_el2, {vtcr}",
            "msr sctlr_el1, {sctlr}",
            "msr sp_el1, {sp}",
            "msr elr_el2, {pc}",
            "msr spsr_el2, {spsr}",
            "msr hcr_el2, {hcr}",
            "isb",
            vttbr = in(reg) vcpu.vttbr,
            vtcr = in(reg) vcpu.vtcr,
            sctlr = in(reg) vcpu.sctlr_el1,
            sp = in(reg) vcpu.sp_el1,
            pc = in(reg) vcpu.pc,
            spsr = in(reg) vcpu.spsr,
            hcr = in(reg) hcr,
            options(nostack),
        );
        let v: *mut VcpuRegs = vcpu;
        vector = crate::boot::__guest_enter(v, core::ptr::addr_of_mut!((*v).fp));
    }
    let (esr, far, hpfar, elr, spsr, sp, sctlr): (u64, u64, u64, u64, u64, u64, u64);
    // SAFETY: reading EL2/EL1 system registers has no side effects.
    unsafe {
        asm!(
            "mrs {esr}, esr_el2",
            "mrs {far}, far_el2",
            "mrs {hpfar}, hpfar_el2",
            "mrs {elr}, elr_el2",
            "mrs {spsr}, spsr_el2",
            "mrs {sp}, sp_el1",
            "mrs {sctlr}, sctlr_el1",
            esr = out(reg) esr,
            far = out(reg) far,
            hpfar = out(reg) hpfar,
            elr = out(reg) elr,
            spsr = out(reg) spsr,
            sp = out(reg) sp,
            sctlr = out(reg) sctlr,
            options(nomem, nostack),
        );
    }
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
