//! Register values the hypervisor programs: HMAIR0/1, HTCR, HTTBR, VTCR, VTTBR, HSCTLR.
//!
//! Each value is computed from the [`Geometry`] of the tree it describes, and illegal input
//! (a geometry ARMv7 cannot express, a misaligned or too-wide root, an oversized VMID) is a
//! [`RegError`], never a panic and never a silently wrong register. Bit positions are from the
//! ARMv7 ARM (DDI 0406C) B4.1.67 (HSCTLR), B4.1.74 (HTCR), B4.1.76 (HTTBR), B4.1.159 (VTCR),
//! B4.1.160 (VTTBR), cross-checked against the AArch32 views in the ARMv8 ARM (G8.2).

use core::fmt;
use pt_core::{Geometry, PhysAddr, PAGE_SIZE};

pub use crate::memattr::{attr_index, HMAIR0, HMAIR1};

/// Why a register value could not be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegError {
    /// The geometry's input-address size cannot be expressed by the register's T0SZ field.
    InputSize {
        /// Input-address size of the geometry, in bits.
        bits: u8,
        /// Smallest size the register can express.
        min: u8,
        /// Largest size the register can express.
        max: u8,
    },
    /// The geometry starts at a level this register cannot start a walk at, or at one that
    /// the architecture does not allow for this input size.
    StartLevel {
        /// Input-address size of the geometry, in bits.
        bits: u8,
        /// Start level of the geometry.
        level: u8,
    },
    /// The translation-table base is not aligned as the register requires.
    Misaligned {
        /// The base address.
        addr: u64,
        /// The required alignment in bytes.
        align: u64,
    },
    /// The translation-table base does not fit in the 40-bit physical address space.
    AddressTooWide {
        /// The base address.
        addr: u64,
    },
    /// The VMID does not fit in VTTBR's 8-bit VMID field.
    VmidTooLarge {
        /// The requested VMID.
        vmid: u16,
    },
}

impl core::error::Error for RegError {}

impl fmt::Display for RegError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RegError::InputSize { bits, min, max } => {
                write!(
                    f,
                    "{bits}-bit input addresses not expressible (allowed {min}..={max})"
                )
            }
            RegError::StartLevel { bits, level } => {
                write!(
                    f,
                    "a {bits}-bit tree cannot start at level {level} on ARMv7"
                )
            }
            RegError::Misaligned { addr, align } => {
                write!(f, "table base {addr:#x} not aligned to {align:#x}")
            }
            RegError::AddressTooWide { addr } => {
                write!(
                    f,
                    "table base {addr:#x} beyond the 40-bit physical address space"
                )
            }
            RegError::VmidTooLarge { vmid } => write!(f, "VMID {vmid} does not fit in 8 bits"),
        }
    }
}

/// Width of the physical address in HTTBR/VTTBR.BADDR.
pub const PA_BITS: u32 = 40;

/// Walk attributes shared by HTCR and VTCR: IRGN0 `[9:8]` = 0b01 (inner write-back
/// write-allocate).
pub const TCR_IRGN0_WBWA: u32 = 0b01 << 8;
/// ORGN0 `[11:10]` = 0b01 (outer write-back write-allocate).
pub const TCR_ORGN0_WBWA: u32 = 0b01 << 10;
/// SH0 `[13:12]` = 0b11 (inner shareable).
pub const TCR_SH0_INNER: u32 = 0b11 << 12;

/// HTCR bit 31, UNK/SBOP on ARMv7 (RES1 in the ARMv8 AArch32 view).
///
/// ARMv8's AArch32 HTCR also has bit 23 RES1; on ARMv7 bits `[29:14]` are UNK/SBZP, so bit
/// 23 is **not** set here (this crate targets Cortex-A15). See [`HTCR_RES1_ARMV8`].
pub const HTCR_RES1: u32 = 1 << 31;
/// HTCR bit 23: RES1 only when an ARMv8 CPU runs this code in AArch32 HYP mode (SBZP on
/// ARMv7). Not part of [`htcr`]; OR it in yourself on such a CPU.
pub const HTCR_RES1_ARMV8: u32 = 1 << 23;
/// VTCR bit 31, UNK/SBOP on ARMv7 (RES1 in the ARMv8 AArch32 view).
pub const VTCR_RES1: u32 = 1 << 31;
/// VTCR.S, bit 4: must equal T0SZ\[3\].
pub const VTCR_S: u32 = 1 << 4;
/// VTCR.SL0 shift (bits `[7:6]`).
pub const VTCR_SL0_SHIFT: u32 = 6;
/// VTCR.SL0 = 0b00: the walk starts at level 2.
pub const VTCR_SL0_LEVEL2: u32 = 0b00;
/// VTCR.SL0 = 0b01: the walk starts at level 1.
pub const VTCR_SL0_LEVEL1: u32 = 0b01;
/// VTTBR.VMID shift (bits `[55:48]`).
pub const VTTBR_VMID_SHIFT: u32 = 48;

/// HYP VA sizes HTCR.T0SZ (unsigned, 0..=7) can express.
const HTCR_BITS: (u8, u8) = (25, 32);
/// IPA sizes VTCR.T0SZ (signed, -8..=7) can express.
const VTCR_BITS: (u8, u8) = (25, 40);

fn check_bits(geom: &Geometry, (min, max): (u8, u8)) -> Result<i32, RegError> {
    let bits = geom.ia_bits();
    if bits < min || bits > max {
        return Err(RegError::InputSize { bits, min, max });
    }
    Ok(32 - bits as i32)
}

/// HTCR for the HYP stage-1 tree `geom` (`__do_hyp_init` / `kvm_get_hyp_pgd` users):
/// T0SZ `[2:0]` = 32 - ia_bits, IRGN0 = ORGN0 = 0b01 (write-back write-allocate),
/// SH0 = 0b11, bit 31 set ([`HTCR_RES1`]).
///
/// ARMv7 starts a stage-1 LPAE walk at level 1 when T0SZ is 0 or 1 and at level 2 when it is
/// 2..=7; a geometry that starts elsewhere is a [`RegError::StartLevel`].
pub fn htcr(geom: &Geometry) -> Result<u32, RegError> {
    let t0sz = check_bits(geom, HTCR_BITS)?;
    let level = if t0sz <= 1 { 1 } else { 2 };
    if geom.start_level() != level {
        return Err(RegError::StartLevel {
            bits: geom.ia_bits(),
            level: geom.start_level(),
        });
    }
    Ok(HTCR_RES1 | TCR_SH0_INNER | TCR_ORGN0_WBWA | TCR_IRGN0_WBWA | t0sz as u32)
}

/// HTTBR for the HYP stage-1 root at `root`: BADDR `[39:x]`, everything else 0.
///
/// HTTBR's alignment `x` depends on HTCR.T0SZ (`14 - T0SZ` when the walk starts at level 2,
/// `5 - T0SZ` at level 1) and is at most 12; without the geometry this function requires the
/// strictest one, 4 KiB, which every root pt-core allocates satisfies.
pub fn httbr(root: PhysAddr) -> Result<u64, RegError> {
    check_base(root.0, PAGE_SIZE)?;
    Ok(root.0)
}

fn check_base(addr: u64, align: u64) -> Result<(), RegError> {
    if addr & (align - 1) != 0 {
        return Err(RegError::Misaligned { addr, align });
    }
    if addr >> PA_BITS != 0 {
        return Err(RegError::AddressTooWide { addr });
    }
    Ok(())
}

/// VTCR.SL0 and the signed T0SZ of the stage-2 tree `geom`, checked against the ARMv7 rules:
/// SL0 = 0b00 (start at level 2) needs T0SZ in -2..=7 (25- to 34-bit IPA, up to 16
/// concatenated level-2 tables); SL0 = 0b01 (level 1) needs T0SZ in -8..=1 (31 to 40 bits, up
/// to two concatenated level-1 tables). Any other combination makes the MMU report a level-1
/// translation fault on every access, so it is refused here.
fn vtcr_fields(geom: &Geometry) -> Result<(u32, i32), RegError> {
    let t0sz = check_bits(geom, VTCR_BITS)?;
    let (sl0, legal) = match geom.start_level() {
        2 => (VTCR_SL0_LEVEL2, -2..=7),
        1 => (VTCR_SL0_LEVEL1, -8..=1),
        level => {
            return Err(RegError::StartLevel {
                bits: geom.ia_bits(),
                level,
            })
        }
    };
    if !legal.contains(&t0sz) {
        return Err(RegError::StartLevel {
            bits: geom.ia_bits(),
            level: geom.start_level(),
        });
    }
    Ok((sl0, t0sz))
}

/// VTCR for the stage-2 tree `geom` (KVM's `VTCR` setup in `__kvm_hyp_init` /
/// `kvm_arm_init_stage2`): T0SZ `[3:0]` = 32 - ia_bits as a signed 4-bit value (40-bit IPA:
/// -8 = 0b1000), S (bit 4) = T0SZ\[3\], SL0 `[7:6]` from the start level, IRGN0 = ORGN0 = 0b01,
/// SH0 = 0b11, bit 31 set ([`VTCR_RES1`]).
pub fn vtcr(geom: &Geometry) -> Result<u32, RegError> {
    let (sl0, t0sz) = vtcr_fields(geom)?;
    let t0sz_field = (t0sz as u32) & 0xf;
    let s = if t0sz_field & 0b1000 != 0 { VTCR_S } else { 0 };
    Ok(VTCR_RES1
        | TCR_SH0_INNER
        | TCR_ORGN0_WBWA
        | TCR_IRGN0_WBWA
        | sl0 << VTCR_SL0_SHIFT
        | s
        | t0sz_field)
}

/// The alignment, in bytes, VTTBR.BADDR needs for the stage-2 tree `geom`: `2^x` with
/// `x = 14 - T0SZ` (SL0 = 0b00) or `x = 5 - T0SZ` (SL0 = 0b01), i.e. the size of the
/// (possibly concatenated) root: 8 KiB for a 40-bit IPA, 32 bytes for 32 bits.
pub fn vttbr_alignment(geom: &Geometry) -> Result<u64, RegError> {
    let (sl0, t0sz) = vtcr_fields(geom)?;
    let x = if sl0 == VTCR_SL0_LEVEL2 {
        14 - t0sz
    } else {
        5 - t0sz
    };
    Ok(1u64 << x)
}

/// VTTBR for the VM whose stage-2 root is at `root` with geometry `geom` and VMID `vmid`
/// (`kvm->arch.vttbr` in KVM's `update_vttbr`): BADDR `[39:x]` = `root`, VMID `[55:48]`.
///
/// Errors: `root` not aligned to [`vttbr_alignment`], `root` at or beyond 2^40, `vmid` > 255
/// (ARMv7 VMIDs are 8 bits), or a geometry VTCR cannot describe.
pub fn vttbr(root: PhysAddr, geom: &Geometry, vmid: u16) -> Result<u64, RegError> {
    let align = vttbr_alignment(geom)?;
    check_base(root.0, align)?;
    if vmid > 0xff {
        return Err(RegError::VmidTooLarge { vmid });
    }
    Ok(root.0 | (vmid as u64) << VTTBR_VMID_SHIFT)
}

/// The VMID field of a VTTBR value.
#[inline]
pub const fn vttbr_vmid(vttbr: u64) -> u8 {
    (vttbr >> VTTBR_VMID_SHIFT) as u8
}

/// HSCTLR.M (bit 0): HYP stage-1 MMU enable.
pub const HSCTLR_M: u32 = 1 << 0;
/// HSCTLR.A (bit 1): alignment checking. Not set by [`hsctlr_mmu_on`]: Rust code for
/// `armv7a-none-eabi` may use unaligned accesses.
pub const HSCTLR_A: u32 = 1 << 1;
/// HSCTLR.C (bit 2): data and unified caches enabled in HYP mode.
pub const HSCTLR_C: u32 = 1 << 2;
/// HSCTLR.CP15BEN (bit 5): CP15 barrier operations enabled. A real control bit on ARMv7
/// (not RES1; in the ARMv8 AArch32 view bit 5 is CP15BEN as well).
pub const HSCTLR_CP15BEN: u32 = 1 << 5;
/// HSCTLR.I (bit 12): instruction caches enabled in HYP mode.
pub const HSCTLR_I: u32 = 1 << 12;
/// HSCTLR.WXN (bit 19): writable implies execute-never.
pub const HSCTLR_WXN: u32 = 1 << 19;
/// HSCTLR.EE (bit 25): big-endian exception entry and table walks.
pub const HSCTLR_EE: u32 = 1 << 25;
/// HSCTLR.TE (bit 30): exceptions taken in Thumb state.
pub const HSCTLR_TE: u32 = 1 << 30;
/// HSCTLR bits that are reserved and must be written as one on ARMv7: 3, 4, 6, 11, 16, 18,
/// 22, 23, 28, 29 (`0x30C5_0858`).
///
/// Source, bit by bit: ARMv7-A/R ARM (DDI 0406C.c) B4.1, "HSCTLR, Hyp System Control
/// Register". Its fields are M (0), A (1), C (2), I (12), WXN (19), FI (21), EE (25) and
/// TE (30); of the reserved bits, `[29:28]`, `[23:22]`, `[18]`, `[16]`, `[11]`, `[6]` and
/// `[4:3]` are UNK/SBOP (write one) and `[31]`, `[27:26]`, `[24]`, `[20]`, `[17]`, `[15:13]`,
/// `[10:7]` UNK/SBZP (write zero) — the same split as Xen's ARMv7 `HSCTLR_RES1` /
/// `HSCTLR_RES0`. Bit 5 is the one bit sources classify differently: CP15BEN (a control) in
/// the ARMv8 AArch32 HSCTLR (DDI 0487), a should-be-one bit in Xen's ARMv7 list. It is left
/// out of this mask and set by [`hsctlr_mmu_on`] as [`HSCTLR_CP15BEN`], so the value written
/// has it set under either reading.
///
/// Bit 6 is where the ARMv8 AArch32 view differs: DDI 0487 makes it RES0 (and bits 4:3 the
/// LSMAOE/nTLSMD controls, RES1 without FEAT_LSMAOC). This crate programs an ARMv7 CPU
/// (Cortex-A15), so bit 6 is set. `0x30C5_0818` (bits 3, 4, 11, 16, 18, 22, 23, 28, 29) is
/// the ARMv8 AArch32 RES1 set and misses bit 6.
pub const HSCTLR_RES1: u32 = (1 << 3)
    | (1 << 4)
    | (1 << 6)
    | (1 << 11)
    | (1 << 16)
    | (1 << 18)
    | (1 << 22)
    | (1 << 23)
    | (1 << 28)
    | (1 << 29);

/// HSCTLR with the HYP MMU and caches on, as written at the end of `__do_hyp_init`:
/// [`HSCTLR_RES1`] | CP15BEN | I | C | M; little-endian, ARM-state exceptions, no WXN, no
/// alignment checking.
#[inline]
pub const fn hsctlr_mmu_on() -> u32 {
    HSCTLR_RES1 | HSCTLR_CP15BEN | HSCTLR_I | HSCTLR_C | HSCTLR_M
}
