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
}

/// SVC mode, A, I, F masked, ARM state, little endian.
pub const CPSR_SVC_MASKED: u32 = 0x1d3;
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
/// SMC, WFI, WFE trap; physical interrupts to HYP.
const HCR_BASE: u32 = HCR_TSC | HCR_TWI | HCR_TWE | HCR_AMO | HCR_IMO | HCR_FMO | HCR_SWIO;

impl VcpuRegs {
    pub const fn new(pc: u32) -> Self {
        Self {
            r: [0; 15],
            pc,
            cpsr: CPSR_SVC_MASKED,
            sctlr: SCTLR_MMU_OFF,
            stage2: false,
            vttbr: 0,
            vtcr: 0,
        }
    }
}

/// Runs the guest until its next exit; all guest registers are in `vcpu`
/// afterwards, the syndrome in the returned value.
pub fn run_guest(vcpu: &mut VcpuRegs) -> GuestExit {
    let hcr = HCR_BASE | if vcpu.stage2 { HCR_VM } else { 0 };
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
"#
);
