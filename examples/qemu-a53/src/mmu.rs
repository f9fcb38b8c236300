//! EL2 stage-1 MMU enable, plus a TEMPORARY throwaway identity map used by
//! the self-test until pt-hyp provides the real tables.

use core::arch::asm;
use core::cell::UnsafeCell;

/// Register values for the EL2 stage-1 translation regime.
#[derive(Clone, Copy, Debug)]
pub struct HypMmuRegs {
    pub mair_el2: u64,
    pub tcr_el2: u64,
    pub ttbr0_el2: u64,
    /// Bits OR-ed into SCTLR_EL2 (normally M | C | I).
    pub sctlr_el2_set: u64,
}

pub const SCTLR_M: u64 = 1 << 0;
pub const SCTLR_C: u64 = 1 << 2;
pub const SCTLR_I: u64 = 1 << 12;
/// SCTLR_EL2 RES1 bits (ARMv8.0, HCR_EL2.E2H = 0); always set as well.
pub const SCTLR_EL2_RES1: u64 = 0x30c5_0830;

/// Invalidates EL2 TLBs and the I-cache, programs MAIR/TCR/TTBR0_EL2 and sets
/// the requested SCTLR_EL2 bits (plus its RES1 bits).
///
/// # Safety
/// The tables must map the running code, stack, data and the UART at their
/// current (identity) addresses with suitable attributes.
pub unsafe fn enable_hyp_mmu(regs: &HypMmuRegs) {
    // SAFETY: EL2 system register writes as required by the caller's
    // contract; the barriers order the table writes before the walk.
    unsafe {
        asm!(
            "dsb ish",
            "tlbi alle2",
            "ic iallu",
            "dsb ish",
            "isb",
            "msr mair_el2, {mair}",
            "msr tcr_el2, {tcr}",
            "msr ttbr0_el2, {ttbr}",
            "isb",
            "mrs {tmp}, sctlr_el2",
            "orr {tmp}, {tmp}, {set}",
            "msr sctlr_el2, {tmp}",
            "isb",
            mair = in(reg) regs.mair_el2,
            tcr = in(reg) regs.tcr_el2,
            ttbr = in(reg) regs.ttbr0_el2,
            set = in(reg) regs.sctlr_el2_set | SCTLR_EL2_RES1,
            tmp = out(reg) _,
            options(nostack),
        );
    }
}

pub fn sctlr_el2() -> u64 {
    let v;
    // SAFETY: reading SCTLR_EL2 at EL2 has no side effects.
    unsafe { asm!("mrs {}, sctlr_el2", out(reg) v, options(nomem, nostack)) };
    v
}

// ---------------------------------------------------------------------------
// TEMPORARY self-test tables (replaced by pt-hyp's tables in the scenario).

/// A 4 KiB-aligned translation table.
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
const AP_RW_EL2: u64 = 1 << 6; // AP[1] is RES1 in the EL2 regime
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const XN: u64 = 1 << 54;

/// Alias VA at which the self-test map also shows RAM (1 GiB block).
pub const RAM_ALIAS_VA: usize = 0x8000_0000;
pub const RAM_BASE: usize = 0x4000_0000;

/// Builds the throwaway identity map (32-bit VA, level 1 start):
/// VA 0x0900_0000 (2 MiB) -> device, VA 0x4000_0000 (1 GiB) -> RAM normal WB,
/// VA 0x8000_0000 (1 GiB) -> the same RAM (alias, to prove translation).
pub fn selftest_identity_map() -> HypMmuRegs {
    let l1 = L1.as_mut_ptr();
    let l2 = L2_LOW.as_mut_ptr();
    let uart = crate::uart::UART_BASE as u64;
    let normal = AF | SH_INNER | AP_RW_EL2 | ATTR_IDX_NORMAL | DESC_BLOCK;
    // SAFETY: the tables are statics of 512 entries and the MMU is still off.
    unsafe {
        l2.add(uart as usize >> 21).write_volatile(
            (uart & !0x1f_ffff) | XN | AF | AP_RW_EL2 | ATTR_IDX_DEVICE | DESC_BLOCK,
        );
        l1.write_volatile(l2 as u64 | DESC_TABLE);
        l1.add(1).write_volatile(RAM_BASE as u64 | normal);
        l1.add(2).write_volatile(RAM_BASE as u64 | normal);
    }
    HypMmuRegs {
        // Attr0 = Normal WB RW-allocate, Attr1 = Device-nGnRE.
        mair_el2: 0x04ff,
        // RES1 bits 31, 23; PS = 40 bits; SH0 inner; ORGN0/IRGN0 WB-WA;
        // TG0 4 KiB; T0SZ = 32 (4 GiB, walk starts at level 1).
        tcr_el2: (1 << 31) | (1 << 23) | (0b010 << 16) | (0b11 << 12) | (1 << 10) | (1 << 8) | 32,
        ttbr0_el2: l1 as u64,
        sctlr_el2_set: SCTLR_M | SCTLR_C | SCTLR_I,
    }
}

/// VTCR_EL2 for the stage-2 self-test table: 32-bit IPA, start level 1,
/// 4 KiB granule, inner-shareable WB walks, PS = 40 bits, RES1 bit 31.
pub const SELFTEST_VTCR: u64 =
    (1 << 31) | (0b010 << 16) | (0b11 << 12) | (1 << 10) | (1 << 8) | (0b01 << 6) | 32;
