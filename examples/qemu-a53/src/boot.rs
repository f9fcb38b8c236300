//! Entry points, EL2 exception vectors and the guest enter/exit path (the world switch).
//!
//! Hand-written assembly on purpose: no crate does these, and each is the place a copier
//! adapts first.
//!
//! - `_start` (boot CPU, from QEMU at EL2 with the MMU off) and `_secondary_start` (a CPU
//!   started by PSCI CPU_ON, its index as context id in x0): FP/SIMD untrapped at EL2
//!   (CPTR_EL2, the target uses NEON), SP_EL2 on the CPU's own 64 KiB stack from `link.x`,
//!   VBAR_EL2; the boot CPU also zeroes `.bss`. Then Rust (`hyp_main` / `secondary_main`).
//! - `__hyp_vectors`: exceptions from EL2 itself are hypervisor bugs (`hyp_fault` reports
//!   and exits); the lower-EL AArch64 entries are guest exits and end `__guest_enter` with the
//!   vector number.
//! - `__guest_enter(vcpu, fp)`: pushes the host's callee-saved registers (x19..x30,
//!   d8..d15, the AAPCS64 set) and both pointers on SP_EL2, loads the guest's V0..V31,
//!   FPSR, FPCR and x0..x30 from `VcpuRegs`, and `eret`s (ELR_EL2, SPSR_EL2, HCR_EL2, VTTBR_EL2
//!   and the EL1 registers were written by `guest::run_guest` before). `__guest_exit` is the
//!   mirror: guest x0/x1 were pushed by the vector, every other guest register goes to
//!   `VcpuRegs` before any host code runs, the host's registers come back, and the function
//!   returns to its Rust caller as if `__guest_enter` had returned. The layout it relies on
//!   (`x` first in `VcpuRegs`, `FpRegs` as 32 x 16 bytes then FPSR, FPCR) is fixed by
//!   `#[repr(C)]` there.

use core::arch::{asm, global_asm};
use hyp_common::println;

// Entry from QEMU at EL2 (virt,virtualization=on, no EL3). Before any Rust
// code: allow FP/SIMD at EL2 (the target uses NEON), stack, zero .bss and the
// guest data area, install VBAR_EL2.
global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    mov     x9, #0x33ff
    msr     cptr_el2, x9            // no FP/SIMD traps (TFP = 0)
    isb
    msr     spsel, #1
    adrp    x9, __stack_top
    add     x9, x9, :lo12:__stack_top
    mov     sp, x9
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __guest_data_end
    add     x10, x10, :lo12:__guest_data_end
1:  cmp     x9, x10
    b.hs    2f
    stp     xzr, xzr, [x9], #16
    b       1b
2:  adrp    x9, __hyp_vectors
    add     x9, x9, :lo12:__hyp_vectors
    msr     vbar_el2, x9
    isb
    bl      hyp_main
3:  wfe
    b       3b

    // Entry of a secondary CPU started by PSCI CPU_ON from `start_cpu` (QEMU's PSCI starts it
    // at EL2, MMU off, with the context id in x0: the CPU's index, 1..=3). The same EL2 set-up
    // as the boot CPU except for .bss; stack i of `.stack` (link.x); then Rust.
    .global _secondary_start
_secondary_start:
    mov     x9, #0x33ff
    msr     cptr_el2, x9
    isb
    msr     spsel, #1
    and     x0, x0, #3
    adrp    x9, __stack_bottom
    add     x9, x9, :lo12:__stack_bottom
    add     x10, x0, #1
    lsl     x10, x10, #16           // (i + 1) * 64 KiB
    add     sp, x9, x10
    adrp    x9, __hyp_vectors
    add     x9, x9, :lo12:__hyp_vectors
    msr     vbar_el2, x9
    isb
    bl      secondary_main
4:  wfe
    b       4b
"#
);

// EL2 vector table. Exceptions from EL2 itself are hypervisor bugs: report
// and fail. Exceptions from lower ELs are guest exits: they end
// `__guest_enter` (below), with the vector number in x0 (0 = sync, 1 = IRQ,
// 2 = FIQ, 3 = SError).
global_asm!(
    r#"
    .macro hyp_bad kind
    .balign 0x80
    mov     x0, #\kind
    mrs     x1, esr_el2
    mrs     x2, elr_el2
    mrs     x3, far_el2
    b       hyp_fault
    .endm

    .macro guest_vec kind
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    mov     x1, #\kind
    b       __guest_exit
    .endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global __hyp_vectors
__hyp_vectors:
    hyp_bad 0      // current EL, SP0
    hyp_bad 1
    hyp_bad 2
    hyp_bad 3
    hyp_bad 4      // current EL, SPx
    hyp_bad 5
    hyp_bad 6
    hyp_bad 7
    guest_vec 0    // lower EL, AArch64
    guest_vec 1
    guest_vec 2
    guest_vec 3
    guest_vec 0    // lower EL, AArch32 (not used)
    guest_vec 1
    guest_vec 2
    guest_vec 3

    // u64 __guest_enter(VcpuRegs *vcpu /* x0 */, FpRegs *fp /* x1 */)
    // Saves the host callee-saved registers (x19..x30, d8..d15) and the two pointers on
    // SP_EL2, loads the guest's FP/SIMD registers from *fp and x0..x30 from vcpu->x, and
    // erets (ELR/SPSR set by the caller).
    .balign 4
    .global __guest_enter
__guest_enter:
    stp     x29, x30, [sp, #-160]!
    stp     x19, x20, [sp, #16]
    stp     x21, x22, [sp, #32]
    stp     x23, x24, [sp, #48]
    stp     x25, x26, [sp, #64]
    stp     x27, x28, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    stp     x0, x1, [sp, #-16]!
    ldp     q0, q1, [x1, #0]
    ldp     q2, q3, [x1, #32]
    ldp     q4, q5, [x1, #64]
    ldp     q6, q7, [x1, #96]
    ldp     q8, q9, [x1, #128]
    ldp     q10, q11, [x1, #160]
    ldp     q12, q13, [x1, #192]
    ldp     q14, q15, [x1, #224]
    ldp     q16, q17, [x1, #256]
    ldp     q18, q19, [x1, #288]
    ldp     q20, q21, [x1, #320]
    ldp     q22, q23, [x1, #352]
    ldp     q24, q25, [x1, #384]
    ldp     q26, q27, [x1, #416]
    ldp     q28, q29, [x1, #448]
    ldp     q30, q31, [x1, #480]
    add     x2, x1, #512
    ldp     x2, x3, [x2]
    msr     fpsr, x2
    msr     fpcr, x3
    ldp     x2, x3, [x0, #16]
    ldp     x4, x5, [x0, #32]
    ldp     x6, x7, [x0, #48]
    ldp     x8, x9, [x0, #64]
    ldp     x10, x11, [x0, #80]
    ldp     x12, x13, [x0, #96]
    ldp     x14, x15, [x0, #112]
    ldp     x16, x17, [x0, #128]
    ldp     x18, x19, [x0, #144]
    ldp     x20, x21, [x0, #160]
    ldp     x22, x23, [x0, #176]
    ldp     x24, x25, [x0, #192]
    ldp     x26, x27, [x0, #208]
    ldp     x28, x29, [x0, #224]
    ldr     x30, [x0, #240]
    ldp     x0, x1, [x0]
    eret

    // Guest exit: SP_EL2 = [guest x0, guest x1][vcpu, fp][host frame]; x1 = vector.
__guest_exit:
    ldr     x0, [sp, #16]
    stp     x2, x3, [x0, #16]
    stp     x4, x5, [x0, #32]
    stp     x6, x7, [x0, #48]
    stp     x8, x9, [x0, #64]
    stp     x10, x11, [x0, #80]
    stp     x12, x13, [x0, #96]
    stp     x14, x15, [x0, #112]
    stp     x16, x17, [x0, #128]
    stp     x18, x19, [x0, #144]
    stp     x20, x21, [x0, #160]
    stp     x22, x23, [x0, #176]
    stp     x24, x25, [x0, #192]
    stp     x26, x27, [x0, #208]
    stp     x28, x29, [x0, #224]
    str     x30, [x0, #240]
    mov     x4, x1
    ldr     x5, [sp, #24]
    stp     q0, q1, [x5, #0]
    stp     q2, q3, [x5, #32]
    stp     q4, q5, [x5, #64]
    stp     q6, q7, [x5, #96]
    stp     q8, q9, [x5, #128]
    stp     q10, q11, [x5, #160]
    stp     q12, q13, [x5, #192]
    stp     q14, q15, [x5, #224]
    stp     q16, q17, [x5, #256]
    stp     q18, q19, [x5, #288]
    stp     q20, q21, [x5, #320]
    stp     q22, q23, [x5, #352]
    stp     q24, q25, [x5, #384]
    stp     q26, q27, [x5, #416]
    stp     q28, q29, [x5, #448]
    stp     q30, q31, [x5, #480]
    mrs     x2, fpsr
    mrs     x3, fpcr
    add     x5, x5, #512
    stp     x2, x3, [x5]
    ldp     x2, x3, [sp], #32       // guest x0, x1; drop the pointer slot too
    stp     x2, x3, [x0]
    ldp     x19, x20, [sp, #16]
    ldp     x21, x22, [sp, #32]
    ldp     x23, x24, [sp, #48]
    ldp     x25, x26, [sp, #64]
    ldp     x27, x28, [sp, #80]
    ldp     d8, d9, [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    ldp     x29, x30, [sp], #160
    mov     x0, x4
    ret
"#
);

extern "C" {
    /// Entry point of a secondary CPU (PSCI CPU_ON), with its index as the context id.
    pub fn _secondary_start();
    /// Enters the guest with its FP/SIMD registers from `fp` (saved there again at the exit);
    /// returns the vector number of its next exit.
    pub fn __guest_enter(vcpu: *mut crate::guest::VcpuRegs, fp: *mut crate::guest::FpRegs) -> u64;
}

/// Exception taken at EL2 from EL2: a hypervisor bug.
#[no_mangle]
extern "C" fn hyp_fault(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    let mut spsr: u64;
    // SAFETY: reading SPSR_EL2 at EL2 has no side effects.
    unsafe { asm!("mrs {}, spsr_el2", out(reg) spsr, options(nomem, nostack)) };
    println!(
        "HYP EXCEPTION: vector {} esr={:#x} elr={:#x} far={:#x} spsr={:#x}",
        kind, esr, elr, far, spsr
    );
    crate::exit_qemu(2)
}
