//! Entry points, HYP exception vectors and the guest enter/exit path (the world switch).
//!
//! Hand-written assembly on purpose: no crate boots an ARMv7 CPU in HYP mode or switches to
//! a guest from it.
//!
//! - `_start` (boot CPU): QEMU `virt,virtualization=on` enters the image in HYP mode (CPSR.M
//!   0x1a; anything else parks), MMU off. SP_hyp on the CPU's own 64 KiB stack from `link.x`,
//!   `.bss` zeroed with STRD, HVBAR set, then `hyp_main`. `_secondary_start` is the same for a
//!   CPU started by PSCI CPU_ON from HYP mode (its index as context id in r0; no `.bss`).
//!   HYP mode's own registers (HSCTLR, HTTBR, HMAIR, HTCR) are set later from pt-hyp's values
//!   (`mmu.rs`); HCR, VTTBR, VTCR before each guest entry (`guest::run_guest`).
//! - `__hyp_vectors` (HVBAR): entries 0x04..0x10 are exceptions taken in HYP mode itself
//!   (hypervisor bugs: `hyp_fault` reports and exits); 0x14 (Hyp Trap), 0x18 (IRQ) and 0x1c
//!   (FIQ) are guest exits and end `__guest_enter` with the vector number.
//! - `__guest_enter(vcpu)`: pushes r4..r12 and LR (the AAPCS callee-saved set) and the vcpu
//!   pointer on SP_hyp, loads LR_usr (HYP mode has no LR of its own: it shares User mode's,
//!   so the guest's must be swapped) and r0..r12, and `eret`s to ELR_hyp in SPSR_hyp's mode.
//!   SP_svc/LR_svc are banked and written with MSR (banked) in Rust. `__guest_exit` saves
//!   LR_usr first (before any `bl` clobbers it), then r0..r12, restores the host's registers
//!   and returns to the Rust caller.

use core::arch::global_asm;
use hyp_common::println;

// Entry from QEMU in HYP mode (virt,virtualization=on). Stack, zero .bss and
// the guest data area, install HVBAR, call Rust.
global_asm!(
    r#"
    .arch_extension virt
    .section .text.boot, "ax"
    .arm
    .global _start
_start:
    mrs     r0, cpsr
    and     r0, r0, #0x1f
    cmp     r0, #0x1a               // HYP mode?
    bne     3f
    ldr     sp, =__stack_top
    ldr     r0, =__bss_start
    ldr     r1, =__guest_data_end
    mov     r2, #0
    mov     r3, #0
1:  cmp     r0, r1
    strdlo  r2, r3, [r0], #8
    blo     1b
    ldr     r0, =__hyp_vectors
    mcr     p15, 4, r0, c12, c0, 0  // HVBAR
    isb
    bl      hyp_main
3:  wfe
    b       3b

    // Entry of a secondary CPU started by PSCI CPU_ON from `start_cpu`: QEMU's PSCI starts it
    // in HYP mode (the caller's mode), ARM state, MMU off, with the context id in r0 (the
    // CPU's index, 1..=3). Stack i of `.stack` (link.x), HVBAR, then Rust; .bss is the boot
    // CPU's to zero.
    .global _secondary_start
_secondary_start:
    and     r0, r0, #3
    add     r1, r0, #1
    ldr     r2, =__stack_bottom
    add     sp, r2, r1, lsl #16     // (i + 1) * 64 KiB
    ldr     r1, =__hyp_vectors
    mcr     p15, 4, r1, c12, c0, 0  // HVBAR
    isb
    bl      secondary_main
4:  wfe
    b       4b
    .ltorg
"#
);

// HYP vector table (HVBAR). Entries 0x04..0x10 are exceptions taken in HYP
// mode itself (hypervisor bugs); 0x14 (Hyp Trap), 0x18 (IRQ) and 0x1c (FIQ)
// are guest exits, which end `__guest_enter` with the vector number in r0
// (0 = sync, 1 = IRQ, 2 = FIQ).
global_asm!(
    r#"
    .arch_extension virt
    .section .text.vectors, "ax"
    .arm
    .balign 32
    .global __hyp_vectors
__hyp_vectors:
    b       hyp_bad_reset
    b       hyp_bad_undef
    b       hyp_bad_svc
    b       hyp_bad_pabt
    b       hyp_bad_dabt
    b       hyp_trap
    b       hyp_irq
    b       hyp_fiq

hyp_bad_reset:
    mov     r0, #0
    b       hyp_bad
hyp_bad_undef:
    mov     r0, #1
    b       hyp_bad
hyp_bad_svc:
    mov     r0, #2
    b       hyp_bad
hyp_bad_pabt:
    mov     r0, #3
    b       hyp_bad
hyp_bad_dabt:
    mov     r0, #4
hyp_bad:
    mrc     p15, 4, r1, c5, c2, 0   // HSR
    mrs     r2, elr_hyp
    mrc     p15, 4, r3, c6, c0, 0   // HDFAR
    bic     sp, sp, #7
    b       hyp_fault

hyp_trap:
    push    {{r0, r1}}
    mov     r1, #0
    b       __guest_exit
hyp_irq:
    push    {{r0, r1}}
    mov     r1, #1
    b       __guest_exit
hyp_fiq:
    push    {{r0, r1}}
    mov     r1, #2
    b       __guest_exit

    // u32 __guest_enter(VcpuRegs *vcpu /* r0 */)
    // Saves the host callee-saved registers and the vcpu pointer on SP_hyp,
    // loads guest r0..r12 from vcpu->r and erets (ELR_hyp, SPSR_hyp, SP_svc,
    // LR_svc set by the caller).
    .global __guest_enter
__guest_enter:
    push    {{r4-r12, lr}}
    push    {{r0, r1}}              // vcpu pointer (+ pad: 8-byte aligned)
    ldr     lr, [r0, #60]           // guest LR_usr (HYP mode's LR is LR_usr)
    ldm     r0, {{r0-r12}}
    eret

    // Guest exit: SP_hyp = [guest r0, r1][vcpu, pad][host frame]; r1 = vector.
__guest_exit:
    ldr     r0, [sp, #8]
    str     lr, [r0, #60]           // guest LR_usr, before any call clobbers it
    add     r0, r0, #8
    stm     r0, {{r2-r12}}
    sub     r0, r0, #8
    mov     r4, r1
    pop     {{r2, r3}}              // guest r0, r1
    stm     r0, {{r2, r3}}
    add     sp, sp, #8              // vcpu slot
    mov     r0, r4
    pop     {{r4-r12, pc}}
"#
);

extern "C" {
    /// Entry point of a secondary CPU (PSCI CPU_ON), with its index as the context id.
    pub fn _secondary_start();
    /// Enters the guest; returns the vector number of its next exit.
    pub fn __guest_enter(vcpu: *mut crate::guest::VcpuRegs) -> u32;
}

/// Exception taken in HYP mode from HYP mode: a hypervisor bug.
#[no_mangle]
extern "C" fn hyp_fault(kind: u32, hsr: u32, elr: u32, hdfar: u32) -> ! {
    println!(
        "HYP EXCEPTION: vector {} hsr={:#x} elr_hyp={:#x} hdfar={:#x}",
        kind, hsr, elr, hdfar
    );
    crate::exit_qemu(2)
}
