//! Running the guest in SVC mode, and the guest program itself.

use core::arch::{asm, global_asm};
use hyp_common::GuestExit;

/// Guest register state, saved and restored around [`run_guest`].
#[repr(C)]
#[derive(Clone, Debug)]
pub struct VcpuRegs {
    /// r0..r12 (saved by the assembly: must be the first field), then
    /// r13 = SP_svc and r14 = LR_svc (banked, saved in Rust).
    pub r: [u32; 15],
    /// LR_usr: HYP mode has no LR of its own and uses the User-mode one, so the world switch
    /// saves and restores it (offset 60, used by the assembly) or the hypervisor's calls
    /// would clobber it under a guest trapped in User mode.
    pub lr_usr: u32,
    /// Guest pc (ELR_hyp).
    pub pc: u32,
    /// SPSR_hyp to enter with (guest CPSR); updated at each exit.
    pub cpsr: u32,
    /// Guest (non-secure PL1) SCTLR.
    pub sctlr: u32,
    /// Set HCR.VM (stage 2 on) with `vttbr`/`vtcr`.
    pub stage2: bool,
    pub vttbr: u64,
    pub vtcr: u32,
    /// HCR to enter with (HCR.VM comes from `stage2`).
    pub hcr: u32,
}

// The world switch's assembly (`boot.rs`) addresses `r` at offset 0 and `lr_usr` at 60.
const _: () = assert!(core::mem::offset_of!(VcpuRegs, lr_usr) == 60);

/// SVC mode, A, I, F masked, ARM state, little endian.
pub const CPSR_SVC_MASKED: u32 = 0x1c0 | MODE_SVC;
/// Cortex-A15 SCTLR reset value: M, C, I, A = 0 (guest stage 1 off).
pub const SCTLR_MMU_OFF: u32 = 0x00c5_0078;

const HCR_VM: u32 = 1 << 0;
const HCR_SWIO: u32 = 1 << 1;
const HCR_FMO: u32 = 1 << 3;
const HCR_IMO: u32 = 1 << 4;
const HCR_AMO: u32 = 1 << 5;
const HCR_TWI: u32 = 1 << 13;
const HCR_TWE: u32 = 1 << 14;
const HCR_TSC: u32 = 1 << 19;
const HCR_TSW: u32 = 1 << 22;
/// HCR.TVM: trap writes to the PL1 virtual-memory control registers.
pub const HCR_TVM: u32 = 1 << 26;
/// SMC, WFI, WFE and set/way trap; physical interrupts to HYP.
const HCR_BASE: u32 =
    HCR_TSC | HCR_TWI | HCR_TWE | HCR_TSW | HCR_AMO | HCR_IMO | HCR_FMO | HCR_SWIO;
/// The Linux guest: SMC (PSCI), WFI and set/way trap; IMO, FMO, AMO clear, so interrupts
/// and asynchronous aborts go straight to the guest; SWIO (set/way invalidate as clean+inv).
pub const HCR_LINUX: u32 = HCR_TSC | HCR_TWI | HCR_TSW | HCR_SWIO;
/// CNTHCTL: PL1PCTEN | PL1PCEN, the physical counter and timer not trapped.
const CNTHCTL_PL1_ACCESS: u32 = 0b11;
/// HCPTR: no coprocessor traps (TCP10/TCP11 clear: the guest's VFP/NEON is its own; the
/// hypervisor is built soft-float and never touches them); RES1 bits set.
const HCPTR_NO_TRAPS: u32 = 0x33ff;

impl VcpuRegs {
    pub const fn new(pc: u32) -> Self {
        Self {
            r: [0; 15],
            lr_usr: 0,
            pc,
            cpsr: CPSR_SVC_MASKED,
            sctlr: SCTLR_MMU_OFF,
            stage2: false,
            vttbr: 0,
            vtcr: 0,
            hcr: HCR_BASE,
        }
    }

    /// The ARM Linux boot protocol (Documentation/arm/booting.rst) for a zImage: r0 = 0,
    /// r1 = ~0 (no machine number: the device tree decides), r2 = device tree; SVC mode with
    /// IRQ and FIQ masked, MMU and data cache off; plus the Linux HCR.
    pub fn boot_linux(&mut self, kernel: u32, dtb: u32) {
        self.r = [0; 15];
        self.r[1] = !0;
        self.r[2] = dtb;
        self.pc = kernel;
        self.cpsr = CPSR_SVC_MASKED;
        self.sctlr = SCTLR_MMU_OFF;
        self.hcr = HCR_LINUX;
    }

    /// A vCPU turned on by the guest's PSCI CPU_ON (DEN 0022 6.4, AArch32 caller): pc =
    /// `entry` with bit 0 selecting Thumb state (CPSR.T), r0 = `context`, the other registers
    /// 0, SVC mode with A, I, F masked, MMU and caches off; plus the Linux HCR.
    pub fn boot_secondary(&mut self, entry: u32, context: u32) {
        self.r = [0; 15];
        self.lr_usr = 0;
        self.r[0] = context;
        self.pc = entry & !1;
        self.cpsr = CPSR_SVC_MASKED | if entry & 1 != 0 { CPSR_T } else { 0 };
        self.sctlr = SCTLR_MMU_OFF;
        self.hcr = HCR_LINUX;
    }
}

/// CPSR.T: Thumb state.
const CPSR_T: u32 = 1 << 5;

/// Function IDs of the platform's PSCI (QEMU's, answering SMCs from HYP mode when there is no
/// Secure monitor), SMC32 calling convention.
const PSCI_CPU_ON_32: u32 = 0x8400_0003;
const PSCI_AFFINITY_INFO_32: u32 = 0x8400_0004;

/// One PSCI call to the platform's firmware (QEMU `virt` with virtualization and no EL3
/// implements PSCI in the emulator behind `smc` from HYP mode). Returns r0.
fn psci(fid: u32, a1: u32, a2: u32, a3: u32) -> i32 {
    let r: u32;
    // SAFETY: an SMCCC call; the firmware (QEMU) reads r0..r3 and writes r0, and may clobber
    // r1..r3 (SMCCC 1.0), declared as clobbered.
    unsafe {
        asm!(
            ".arch_extension sec",
            "smc #0",
            inout("r0") fid => r,
            inout("r1") a1 => _,
            inout("r2") a2 => _,
            inout("r3") a3 => _,
            options(nostack),
        )
    };
    r as i32
}

/// PSCI CPU_ON of physical CPU `index` (MPIDR Aff0 = index on QEMU `virt`) at `entry`, with
/// `index` as its context id.
pub fn cpu_on(index: usize, entry: u32) -> i32 {
    psci(PSCI_CPU_ON_32, index as u32, entry, index as u32)
}

/// Whether physical CPU `index` exists: PSCI AFFINITY_INFO (level 0) does not answer
/// INVALID_PARAMETERS (-2).
pub fn cpu_exists(index: usize) -> bool {
    psci(PSCI_AFFINITY_INFO_32, index as u32, 0, 0) != -2
}

/// Waits for an interrupt (`wfi`) in HYP mode; any pending physical interrupt wakes it,
/// including one routed to the guest (HCR.IMO clear), which the guest then takes.
pub fn wait_for_interrupt() {
    // SAFETY: `dsb; wfi` only waits; no memory or register effects.
    unsafe { asm!("dsb", "wfi", options(nostack)) };
}

/// HYP controls of the Linux guest: the generic timer direct (CNTHCTL, CNTVOFF = 0), the
/// identification the guest reads (VPIDR = MIDR, VMPIDR = MPIDR), no coprocessor traps.
pub fn setup_linux_hyp() {
    // SAFETY: HYP configuration registers of the guest context only.
    unsafe {
        asm!(
            ".arch_extension virt",
            "mcr p15, 4, {cnthctl}, c14, c1, 0", // CNTHCTL
            "mcrr p15, 4, {zero}, {zero}, c14",  // CNTVOFF
            "mrc p15, 0, {t}, c0, c0, 0",        // MIDR
            "mcr p15, 4, {t}, c0, c0, 0",        // VPIDR
            "mrc p15, 0, {t}, c0, c0, 5",        // MPIDR
            "mcr p15, 4, {t}, c0, c0, 5",        // VMPIDR
            "mcr p15, 4, {hcptr}, c1, c1, 2",    // HCPTR
            "isb",
            cnthctl = in(reg) CNTHCTL_PL1_ACCESS,
            zero = in(reg) 0u32,
            hcptr = in(reg) HCPTR_NO_TRAPS,
            t = out(reg) _,
            options(nostack),
        );
    }
}

/// CPSR.M values of the guest's modes (ARM ARM B1.3.1).
const MODE_USR: u32 = 0x10;
const MODE_FIQ: u32 = 0x11;
const MODE_IRQ: u32 = 0x12;
const MODE_SVC: u32 = 0x13;
const MODE_ABT: u32 = 0x17;
const MODE_UND: u32 = 0x1b;
const MODE_SYS: u32 = 0x1f;

/// Reads a banked register of a guest mode with MRS (banked), legal from HYP mode for every
/// mode's SP and for the LRs of the modes other than User (whose LR is HYP mode's own).
macro_rules! mrs_banked {
    ($reg:literal) => {{
        let v: u32;
        // SAFETY: reads a banked register of a guest mode; HYP mode does not use it.
        unsafe { asm!(concat!(".arch_extension virt\nmrs {}, ", $reg), out(reg) v, options(nomem, nostack)) };
        v
    }};
}

/// Writes a banked register of a guest mode with MSR (banked), as [`mrs_banked`].
macro_rules! msr_banked {
    ($reg:literal, $v:expr) => {{
        let v: u32 = $v;
        // SAFETY: writes a banked register of a guest mode, as the guest's own instruction
        // would have; HYP mode does not use it.
        unsafe { asm!(concat!(".arch_extension virt\nmsr ", $reg, ", {}"), in(reg) v, options(nomem, nostack)) };
    }};
}

impl VcpuRegs {
    /// Guest register `n` (0..=14) as the mode the guest was in at its exit sees it: r0..r12
    /// from the saved state, r13/r14 from that mode's bank (SVC's and LR_usr are saved by the
    /// world switch, the other banks are untouched by HYP mode and read in place). FIQ mode's
    /// banked r8..r12 are not handled (Linux does not use FIQ mode).
    pub fn get(&self, n: usize) -> u32 {
        if n < 13 {
            return self.r[n];
        }
        let sp = n == 13;
        match self.cpsr & 0x1f {
            MODE_USR | MODE_SYS if sp => mrs_banked!("sp_usr"),
            MODE_USR | MODE_SYS => self.lr_usr,
            MODE_IRQ if sp => mrs_banked!("sp_irq"),
            MODE_IRQ => mrs_banked!("lr_irq"),
            MODE_ABT if sp => mrs_banked!("sp_abt"),
            MODE_ABT => mrs_banked!("lr_abt"),
            MODE_UND if sp => mrs_banked!("sp_und"),
            MODE_UND => mrs_banked!("lr_und"),
            MODE_FIQ if sp => mrs_banked!("sp_fiq"),
            MODE_FIQ => mrs_banked!("lr_fiq"),
            // SVC (saved by the world switch) and anything else; r15 and beyond read as 0.
            _ => self.r.get(n).copied().unwrap_or(0),
        }
    }

    /// Sets guest register `n` (0..=14) as [`Self::get`] reads it.
    pub fn set(&mut self, n: usize, v: u32) {
        if n < 13 {
            self.r[n] = v;
            return;
        }
        let sp = n == 13;
        match self.cpsr & 0x1f {
            MODE_USR | MODE_SYS if sp => msr_banked!("sp_usr", v),
            MODE_USR | MODE_SYS => self.lr_usr = v,
            MODE_IRQ if sp => msr_banked!("sp_irq", v),
            MODE_IRQ => msr_banked!("lr_irq", v),
            MODE_ABT if sp => msr_banked!("sp_abt", v),
            MODE_ABT => msr_banked!("lr_abt", v),
            MODE_UND if sp => msr_banked!("sp_und", v),
            MODE_UND => msr_banked!("lr_und", v),
            MODE_FIQ if sp => msr_banked!("sp_fiq", v),
            MODE_FIQ => msr_banked!("lr_fiq", v),
            _ => {
                if let Some(r) = self.r.get_mut(n) {
                    *r = v;
                }
            }
        }
    }
}

/// The physical MPIDR (what VMPIDR gives the guest).
pub fn mpidr() -> u32 {
    let v;
    // SAFETY: reading MPIDR has no side effects.
    unsafe { asm!("mrc p15, 0, {}, c0, c0, 5", out(reg) v, options(nomem, nostack)) };
    v
}

/// CNTPCT and CNTFRQ.
pub fn counter() -> (u64, u64) {
    let (lo, hi, f): (u32, u32, u32);
    // SAFETY: reading the generic counter has no side effects.
    unsafe {
        asm!(
            "isb",
            "mrrc p15, 0, {lo}, {hi}, c14",
            "mrc p15, 0, {f}, c14, c0, 0",
            lo = out(reg) lo,
            hi = out(reg) hi,
            f = out(reg) f,
            options(nomem, nostack),
        )
    };
    (u64::from(hi) << 32 | u64::from(lo), f.into())
}

/// Runs the guest until its next exit; all guest registers are in `vcpu`
/// afterwards, the syndrome in the returned value.
pub fn run_guest(vcpu: &mut VcpuRegs) -> GuestExit {
    let hcr = (vcpu.hcr & !HCR_VM) | if vcpu.stage2 { HCR_VM } else { 0 };
    let vector;
    // SAFETY: HYP-mode CP15 and banked-register writes that configure the
    // guest context; `__guest_enter` saves/restores all host callee-saved
    // registers and returns here on the guest's next exit.
    unsafe {
        asm!(
            ".arch_extension virt",
            "mcrr p15, 6, {vttbr_lo}, {vttbr_hi}, c2", // VTTBR
            "mcr p15, 4, {vtcr}, c2, c1, 2",           // VTCR
            "mcr p15, 0, {sctlr}, c1, c0, 0",          // guest SCTLR
            "msr sp_svc, {sp}",
            "msr lr_svc, {lr}",
            "msr elr_hyp, {pc}",
            "msr spsr_hyp, {cpsr}",
            "mcr p15, 4, {hcr}, c1, c1, 0", // HCR
            "isb",
            vttbr_lo = in(reg) vcpu.vttbr as u32,
            vttbr_hi = in(reg) (vcpu.vttbr >> 32) as u32,
            vtcr = in(reg) vcpu.vtcr,
            sctlr = in(reg) vcpu.sctlr,
            sp = in(reg) vcpu.r[13],
            lr = in(reg) vcpu.r[14],
            pc = in(reg) vcpu.pc,
            cpsr = in(reg) vcpu.cpsr,
            hcr = in(reg) hcr,
            options(nostack),
        );
        vector = crate::boot::__guest_enter(vcpu);
    }
    let (hsr, hdfar, hifar, hpfar, elr, spsr, sp, lr, sctlr): (
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
    );
    // SAFETY: reading HYP/PL1 registers has no side effects.
    unsafe {
        asm!(
            ".arch_extension virt",
            "mrc p15, 4, {hsr}, c5, c2, 0",   // HSR
            "mrc p15, 4, {hdfar}, c6, c0, 0", // HDFAR
            "mrc p15, 4, {hifar}, c6, c0, 2", // HIFAR
            "mrc p15, 4, {hpfar}, c6, c0, 4", // HPFAR
            "mrs {elr}, elr_hyp",
            "mrs {spsr}, spsr_hyp",
            "mrs {sp}, sp_svc",
            "mrs {lr}, lr_svc",
            "mrc p15, 0, {sctlr}, c1, c0, 0",
            hsr = out(reg) hsr,
            hdfar = out(reg) hdfar,
            hifar = out(reg) hifar,
            hpfar = out(reg) hpfar,
            elr = out(reg) elr,
            spsr = out(reg) spsr,
            sp = out(reg) sp,
            lr = out(reg) lr,
            sctlr = out(reg) sctlr,
            options(nomem, nostack),
        );
    }
    vcpu.pc = elr;
    vcpu.cpsr = spsr;
    vcpu.r[13] = sp;
    vcpu.r[14] = lr;
    vcpu.sctlr = sctlr;
    GuestExit {
        vector_raw: vector as u8,
        syndrome: hsr.into(),
        far: hdfar.into(),
        ifar: hifar.into(),
        hpfar: hpfar.into(),
        elr: elr.into(),
        spsr: spsr.into(),
    }
}

/// Invalidates all non-secure non-HYP TLB entries (TLBIALLNSNH).
pub fn invalidate_guest_tlb() {
    // SAFETY: TLB maintenance only.
    unsafe {
        asm!(
            "dsb ishst",
            "mcr p15, 4, {0}, c8, c3, 4", // TLBIALLNSNHIS
            "dsb ish",
            "isb",
            in(reg) 0u32,
            options(nostack),
        );
    }
}

// The guest program (SVC mode, ARM state, MMU off, position independent).
// Interprets the commands of `hyp_common::cmd`: r0 opcode, r1 address,
// r2 value, r3 count, r4 stride, r5/r6 FILL scratch, r5..r12 address list.
// After each command it executes `hvc #<opcode>`.
global_asm!(
    r#"
    .arch_extension virt
    .section .guest_text, "ax"
    .arm
    .balign 32
guest_vectors:                      // any guest exception -> report to HYP
    .rept 8
    hvc     #0xfffe
    .endr

    .global __guest_entry
__guest_entry:
    adr     r9, guest_vectors
    mcr     p15, 0, r9, c12, c0, 0  // VBAR
    isb
    mov     r0, #42
    hvc     #0
guest_loop:
    cmp     r0, #1
    beq     10f
    cmp     r0, #2
    beq     20f
    cmp     r0, #3
    beq     30f
    cmp     r0, #4
    beq     40f
    cmp     r0, #5
    beq     50f
    cmp     r0, #6
    beq     60f
    cmp     r0, #7
    beq     70f
    hvc     #0xffff
    b       guest_loop

10: ldr     r2, [r1]                // LOAD
    hvc     #1
    b       guest_loop

20: str     r2, [r1]                // STORE
    hvc     #2
    b       guest_loop

30: mov     r5, r1                  // FILL
    mov     r6, r3
31: cmp     r6, #0
    beq     32f
    str     r2, [r5]
    add     r5, r5, r4
    sub     r6, r6, #1
    b       31b
32: hvc     #3
    b       guest_loop

40:                                 // LOAD_LIST r5..r12, count r3
    .irp    n, 5, 6, 7, 8, 9, 10, 11, 12
    cmp     r3, #(\n - 4)
    blo     48f
    ldr     r\n, [r\n]
    .endr
48: hvc     #4
    b       guest_loop

50:                                 // STORE_LIST r5..r12, count r3
    .irp    n, 5, 6, 7, 8, 9, 10, 11, 12
    cmp     r3, #(\n - 4)
    blo     58f
    str     r2, [r\n]
    .endr
58: hvc     #5
    b       guest_loop

60: mov     r5, #0                  // SET_WAY: level 1, set 0, way 0
    mcr     p15, 0, r5, c7, c14, 2  // DCCISW
    hvc     #6
    b       guest_loop

70: mcr     p15, 0, r2, c1, c0, 0   // WRITE_SCTLR
    isb
    hvc     #7
    b       guest_loop
"#
);
