//! The image layout, from the symbols both CPUs' linker scripts (`link.x`) export.

use core::ops::Range;

extern "C" {
    static __guest_start: u8;
    static __guest_end: u8;
    static __guest_entry: u8;
    static __guest_data_start: u8;
    static __guest_data_end: u8;
    static __image_end: u8;
    static __ram_end: u8;
}

fn sym(s: &u8) -> usize {
    s as *const u8 as usize
}

/// PA range of the guest program (section `.guest_text`).
pub fn guest_code() -> Range<usize> {
    // SAFETY: linker-defined symbols; only their addresses are used.
    unsafe { sym(&__guest_start)..sym(&__guest_end) }
}

/// Offset of the guest entry point from the start of the guest program.
pub fn guest_entry_offset() -> usize {
    // SAFETY: as above.
    unsafe { sym(&__guest_entry) - sym(&__guest_start) }
}

/// The RAM reserved for guest data (section `.guest_data`).
pub fn guest_data() -> Range<usize> {
    // SAFETY: as above.
    unsafe { sym(&__guest_data_start)..sym(&__guest_data_end) }
}

/// Free RAM after the image, up to the end of RAM.
pub fn free_ram() -> Range<usize> {
    // SAFETY: as above.
    unsafe { sym(&__image_end)..sym(&__ram_end) }
}
