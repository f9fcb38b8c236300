//! Semihosting exit (A32: `svc #0x123456`, also from HYP mode).

use core::arch::asm;

const SYS_EXIT: u32 = 0x18;
const SYS_EXIT_EXTENDED: u32 = 0x20;
const ADP_STOPPED_APPLICATION_EXIT: u32 = 0x20026;

fn call(op: u32, arg: u32) -> u32 {
    let ret;
    // SAFETY: `svc #0x123456` is the A32 semihosting trap; QEMU with
    // -semihosting intercepts it when translating the instruction, so it
    // works in HYP mode too (no HVBAR SVC entry is taken). `arg` is a value
    // or points to a parameter block that outlives the call.
    unsafe { asm!("svc #0x123456", inout("r0") op => ret, in("r1") arg, options(nostack)) };
    ret
}

/// Exits QEMU: `code == 0` is SYS_EXIT with ADP_Stopped_ApplicationExit
/// (status 0); otherwise SYS_EXIT_EXTENDED with `[0x20026, code]`.
pub fn exit(code: u32) -> ! {
    if code == 0 {
        // On A32 SYS_EXIT takes the reason itself in r1.
        call(SYS_EXIT, ADP_STOPPED_APPLICATION_EXIT);
    } else {
        let block = [ADP_STOPPED_APPLICATION_EXIT, code];
        call(SYS_EXIT_EXTENDED, block.as_ptr() as u32);
    }
    // Not reached under QEMU -semihosting.
    loop {
        // SAFETY: waiting for an event has no memory effects.
        unsafe { asm!("wfe", options(nomem, nostack)) };
    }
}
