//! Semihosting exit (A64: `hlt #0xf000`).

use core::arch::asm;

const SYS_EXIT: u64 = 0x18;
const SYS_EXIT_EXTENDED: u64 = 0x20;
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

fn call(op: u64, arg: u64) -> u64 {
    let ret;
    // SAFETY: `hlt #0xf000` is the A64 semihosting trap, handled by QEMU with
    // -semihosting; x1 points to a parameter block that outlives the call.
    unsafe { asm!("hlt #0xf000", inout("x0") op => ret, in("x1") arg, options(nostack)) };
    ret
}

/// Exits QEMU: `code == 0` is SYS_EXIT with ADP_Stopped_ApplicationExit
/// (status 0); otherwise SYS_EXIT_EXTENDED with `[0x20026, code]`.
pub fn exit(code: u32) -> ! {
    if code == 0 {
        // On A64 SYS_EXIT takes a block [reason, subcode]; subcode = status.
        let block = [ADP_STOPPED_APPLICATION_EXIT, 0u64];
        call(SYS_EXIT, block.as_ptr() as u64);
    } else {
        let block = [ADP_STOPPED_APPLICATION_EXIT, u64::from(code)];
        call(SYS_EXIT_EXTENDED, block.as_ptr() as u64);
    }
    // Without -semihosting the call is a no-op: park.
    loop {
        // SAFETY: waiting for an event has no memory effects.
        unsafe { asm!("wfe", options(nomem, nostack)) };
    }
}
