//! PL011 UART at 0x0900_0000 (QEMU virt), transmit only.

use core::fmt::{self, Write};
use core::ptr::{read_volatile, write_volatile};

/// PL011 base address; identity-mapped as device memory when the MMU is on.
pub const UART_BASE: usize = 0x0900_0000;
const DR: usize = 0x00;
const FR: usize = 0x18;
const FR_TXFF: u32 = 1 << 5;
/// UARTPeriphID0: reads 0x11 on a PL011.
pub const PERIPH_ID0: usize = 0xfe0;

pub struct Uart;

impl Uart {
    pub fn putc(&mut self, c: u8) {
        // SAFETY: UART_BASE is the PL011 MMIO block on QEMU virt; it is either
        // accessed with the MMU off or through a device identity mapping.
        unsafe {
            while read_volatile((UART_BASE + FR) as *const u32) & FR_TXFF != 0 {}
            write_volatile((UART_BASE + DR) as *mut u32, u32::from(c));
        }
    }
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.putc(b'\r');
            }
            self.putc(b);
        }
        Ok(())
    }
}

/// Reads a 32-bit PL011 register (offset from the base).
pub fn read_reg(offset: usize) -> u32 {
    // SAFETY: as in `putc`; PL011 registers are 32-bit and side-effect free
    // to read except DR, which callers do not pass.
    unsafe { read_volatile((UART_BASE + offset) as *const u32) }
}

pub fn _print(args: fmt::Arguments<'_>) {
    // Single core, no interrupts: no locking needed.
    let _ = Uart.write_fmt(args);
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::uart::_print(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::uart::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
