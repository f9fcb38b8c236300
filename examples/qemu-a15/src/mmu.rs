//! HYP-mode stage-1 MMU enable (LPAE), plus a TEMPORARY throwaway identity
//! map used by the self-test until pt-hyp provides the real tables.

use core::arch::asm;
use core::cell::UnsafeCell;

/// Register values for the HYP (PL2) stage-1 translation regime.
#[derive(Clone, Copy, Debug)]
pub struct HypMmuRegs {
    pub hmair0: u32,
    pub hmair1: u32,
    pub htcr: u32,
    /// 64-bit, written with MCRR.
    pub httbr: u64,
    /// Bits OR-ed into HSCTLR (normally M | C | I).
    pub hsctlr_set: u32,
}

pub const SCTLR_M: u32 = 1 << 0;
pub const SCTLR_C: u32 = 1 << 2;
pub const SCTLR_I: u32 = 1 << 12;
/// HSCTLR RES1 bits (3, 4, 11, 16, 18, 22, 23, 28, 29); always set as well.
pub const HSCTLR_RES1: u32 = 0x30c5_0818;

/// Invalidates HYP TLBs and the I-cache, programs HMAIR0/1, HTCR, HTTBR and
/// sets the requested HSCTLR bits (plus its RES1 bits).
///
/// # Safety
/// The tables must map the running code, stack, data and the UART at their
/// current (identity) addresses with suitable attributes.
pub unsafe fn enable_hyp_mmu(regs: &HypMmuRegs) {
    // SAFETY: HYP-mode CP15 writes as required by the caller's contract; the
    // barriers order the table writes before the walk.
    unsafe {
        asm!(
            "dsb ish",
            "mcr p15, 4, {zero}, c8, c7, 0", // TLBIALLH
            "mcr p15, 0, {zero}, c7, c5, 0", // ICIALLU
            "dsb ish",
            "isb",
            "mcr p15, 4, {mair0}, c10, c2, 0", // HMAIR0
            "mcr p15, 4, {mair1}, c10, c2, 1", // HMAIR1
            "mcr p15, 4, {htcr}, c2, c0, 2",   // HTCR
            "mcrr p15, 4, {lo}, {hi}, c2",     // HTTBR
            "isb",
            "mrc p15, 4, {tmp}, c1, c0, 0", // HSCTLR
            "orr {tmp}, {tmp}, {set}",
            "mcr p15, 4, {tmp}, c1, c0, 0",
            "isb",
            zero = in(reg) 0u32,
            mair0 = in(reg) regs.hmair0,
            mair1 = in(reg) regs.hmair1,
            htcr = in(reg) regs.htcr,
            lo = in(reg) regs.httbr as u32,
            hi = in(reg) (regs.httbr >> 32) as u32,
            set = in(reg) regs.hsctlr_set | HSCTLR_RES1,
            tmp = out(reg) _,
            options(nostack),
        );
    }
}

pub fn hsctlr() -> u32 {
    let v;
    // SAFETY: reading HSCTLR in HYP mode has no side effects.
    unsafe { asm!("mrc p15, 4, {}, c1, c0, 0", out(reg) v, options(nomem, nostack)) };
    v
}

// ---------------------------------------------------------------------------
// TEMPORARY self-test tables (replaced by pt-hyp's tables in the scenario).

/// A 4 KiB-aligned LPAE translation table.
#[repr(C, align(4096))]
pub struct Table(UnsafeCell<[u64; 512]>);

// SAFETY: single core; the tables are only written before the MMU (or the
// guest) uses them.
unsafe impl Sync for Table {}

impl Table {
    pub const fn new() -> Self {
        Self(UnsafeCell::new([0; 512]))
    }

    pub fn as_mut_ptr(&self) -> *mut u64 {
        self.0.get().cast()
    }
}

static L1: Table = Table::new();
static L2_LOW: Table = Table::new();
/// Level-1 table for the stage-2 self-test.
pub static S2_L1: Table = Table::new();

const DESC_BLOCK: u64 = 0b01;
const DESC_TABLE: u64 = 0b11;
const ATTR_IDX_NORMAL: u64 = 0 << 2;
const ATTR_IDX_DEVICE: u64 = 1 << 2;
const AP_RW_HYP: u64 = 1 << 6; // AP[1] is SBO in HYP mode
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const XN: u64 = 1 << 54;

/// Alias VA at which the self-test map also shows RAM (1 GiB block).
pub const RAM_ALIAS_VA: usize = 0x8000_0000;
pub const RAM_BASE: usize = 0x4000_0000;

/// Builds the throwaway identity map (HTCR.T0SZ = 0, level-1 start):
/// VA 0x0900_0000 (2 MiB) -> device, VA 0x4000_0000 (1 GiB) -> RAM normal WB,
/// VA 0x8000_0000 (1 GiB) -> the same RAM (alias, to prove translation).
pub fn selftest_identity_map() -> HypMmuRegs {
    let l1 = L1.as_mut_ptr();
    let l2 = L2_LOW.as_mut_ptr();
    let uart = crate::uart::UART_BASE as u64;
    let normal = AF | SH_INNER | AP_RW_HYP | ATTR_IDX_NORMAL | DESC_BLOCK;
    // SAFETY: the tables are statics of 512 entries and the MMU is still off.
    unsafe {
        l2.add(uart as usize >> 21).write_volatile(
            (uart & !0x1f_ffff) | XN | AF | AP_RW_HYP | ATTR_IDX_DEVICE | DESC_BLOCK,
        );
        l1.write_volatile(l2 as u32 as u64 | DESC_TABLE);
        l1.add(1).write_volatile(RAM_BASE as u64 | normal);
        l1.add(2).write_volatile(RAM_BASE as u64 | normal);
    }
    HypMmuRegs {
        // Attr0 = Normal WB RW-allocate, Attr1 = Device.
        hmair0: 0x04ff,
        hmair1: 0,
        // RES1 bit 31; SH0 inner; ORGN0/IRGN0 WB-WA; T0SZ = 0.
        htcr: (1 << 31) | (0b11 << 12) | (1 << 10) | (1 << 8),
        httbr: l1 as u32 as u64,
        hsctlr_set: SCTLR_M | SCTLR_C | SCTLR_I,
    }
}

/// VTCR for the stage-2 self-test table: 32-bit IPA (T0SZ = 0, S = 0),
/// SL0 = 1 (start level 1), inner-shareable WB walks, RES1 bit 31.
pub const SELFTEST_VTCR: u64 = (1 << 31) | (0b11 << 12) | (1 << 10) | (1 << 8) | (0b01 << 6);
