//! Register values for the EL2 MMU and stage 2, computed from a [`Geometry`].
//!
//! What a hypervisor programs before turning translation on (KVM: `__kvm_hyp_init` for
//! `TCR_EL2`/`TTBR0_EL2`/`MAIR_EL2`/`SCTLR_EL2`, `kvm_get_vtcr` / `__load_stage2` for
//! `VTCR_EL2`/`VTTBR_EL2`). Field layouts are ARMv8.0 (Cortex-A53): 4 KiB granule, no VHE, 8-bit
//! VMIDs, 48-bit physical addresses at most. Every function checks its input against the
//! architecture's rules and returns a [`RegError`] naming the broken rule.

use core::fmt;
use pt_core::geometry::{ENTRIES_PER_TABLE, LAST_LEVEL};
use pt_core::{level_shift, Geometry, Limits, PhysAddr, PAGE_SIZE};

pub use crate::memattr::{attr_index, MAIR_EL2};

/// Why a register value could not be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegError {
    /// The physical-address size has no `PS` encoding (32, 36, 40, 42, 44 and 48 bits do).
    UnsupportedPaBits {
        /// The requested size.
        pa_bits: u8,
    },
    /// The input-address size is outside what `T0SZ` (16..=39) can express: 25..=48 bits.
    InputSizeOutOfRange {
        /// The geometry's input size.
        ia_bits: u8,
    },
    /// `TCR_EL2` walks from the level its `T0SZ` implies, with one root table; this geometry
    /// starts elsewhere (a stage-2 shape with concatenated root tables).
    NotAStage1Shape {
        /// The geometry's input size.
        ia_bits: u8,
        /// The geometry's start level.
        start_level: u8,
    },
    /// `VTCR_EL2.SL0` cannot express this start level, or the root it implies would hold fewer
    /// than 2 or more than 16 tables' worth of entries (ARM ARM: level-0 translation fault).
    InconsistentStartLevel {
        /// The geometry's input size.
        ia_bits: u8,
        /// The geometry's start level.
        start_level: u8,
    },
    /// A stage-2 walk starting at level 0 needs a physical-address size of at least 44 bits
    /// (ARM ARM `AArch64.S2InvalidSL`).
    Level0NeedsPa44 {
        /// The physical-address size given.
        pa_bits: u8,
    },
    /// The IPA size exceeds the physical-address size configured in `VTCR_EL2.PS`: the
    /// architecture makes that CONSTRAINED UNPREDICTABLE (QEMU faults), so it is refused.
    IpaExceedsPa {
        /// The geometry's input size.
        ia_bits: u8,
        /// The physical-address size given.
        pa_bits: u8,
    },
    /// The root table is not aligned to its size (whole pages: the root pages of the geometry).
    UnalignedRoot {
        /// The root address given.
        root: PhysAddr,
        /// The alignment required.
        align: u64,
    },
    /// The root table lies beyond the 48-bit `BADDR` field.
    RootBeyondOa {
        /// The root address given.
        root: PhysAddr,
    },
    /// ARMv8.0 VMIDs are 8 bits (`VTCR_EL2.VS` = 0).
    VmidTooWide {
        /// The VMID given.
        vmid: u16,
    },
    /// A VMID size other than 8 or 16 bits, or an `ID_AA64MMFR1_EL1.VMIDBits` value other than
    /// `0b0000` (8 bits) and `0b0010` (16 bits).
    UnsupportedVmidBits {
        /// The size asked for, or the raw `VMIDBits` field.
        bits: u8,
    },
}

impl core::error::Error for RegError {}

impl fmt::Display for RegError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RegError::UnsupportedPaBits { pa_bits } => {
                write!(f, "no PS encoding for {pa_bits}-bit physical addresses")
            }
            RegError::InputSizeOutOfRange { ia_bits } => {
                write!(
                    f,
                    "{ia_bits}-bit input addresses outside T0SZ range (25..=48 bits)"
                )
            }
            RegError::NotAStage1Shape {
                ia_bits,
                start_level,
            } => {
                write!(
                    f,
                    "{ia_bits}-bit tree starting at level {start_level} is not a TCR_EL2 walk"
                )
            }
            RegError::InconsistentStartLevel {
                ia_bits,
                start_level,
            } => {
                write!(
                    f,
                    "{ia_bits}-bit IPA cannot start at level {start_level} (VTCR_EL2.SL0)"
                )
            }
            RegError::Level0NeedsPa44 { pa_bits } => {
                write!(f, "stage 2 from level 0 needs 44-bit PA, have {pa_bits}")
            }
            RegError::IpaExceedsPa { ia_bits, pa_bits } => {
                write!(f, "{ia_bits}-bit IPA exceeds {pa_bits}-bit PA size")
            }
            RegError::UnalignedRoot { root, align } => {
                write!(f, "root {root:?} not aligned to {align:#x}")
            }
            RegError::RootBeyondOa { root } => write!(f, "root {root:?} beyond 48-bit BADDR"),
            RegError::VmidTooWide { vmid } => write!(f, "VMID {vmid} does not fit in 8 bits"),
            RegError::UnsupportedVmidBits { bits } => {
                write!(f, "unsupported VMID size {bits} (8 or 16 bits)")
            }
        }
    }
}

/// Bits `[5:0]` of `TCR_EL2` and `VTCR_EL2`: `T0SZ`, the input size is `64 - T0SZ` bits.
pub const T0SZ_MASK: u64 = 0x3f;
/// `VTCR_EL2` bits `[7:6]`: `SL0`, the stage-2 start level.
pub const SL0_SHIFT: u32 = 6;
/// Bits `[9:8]`: `IRGN0` = `0b01`, table walks inner write-back read/write-allocate.
pub const IRGN0_WBWA: u64 = 0b01 << 8;
/// Bits `[11:10]`: `ORGN0` = `0b01`, table walks outer write-back read/write-allocate.
pub const ORGN0_WBWA: u64 = 0b01 << 10;
/// Bits `[13:12]`: `SH0` = `0b11`, table walks inner shareable.
pub const SH0_INNER: u64 = 0b11 << 12;
/// Bits `[15:14]`: `TG0` = `0b00`, 4 KiB granule.
pub const TG0_4K: u64 = 0b00 << 14;
/// Bits `[18:16]`: `PS`, the physical-address size.
pub const PS_SHIFT: u32 = 16;
/// `VTCR_EL2` bit 19: `VS`, 16-bit VMIDs when set (left 0: 8-bit VMIDs).
pub const VTCR_VS16: u64 = 1 << 19;
/// `TCR_EL2` RES1 bits (23 and 31) in the EL2 regime without VHE.
pub const TCR_EL2_RES1: u64 = (1 << 31) | (1 << 23);
/// `VTCR_EL2` RES1 bit 31.
pub const VTCR_EL2_RES1: u64 = 1 << 31;
/// `VTTBR_EL2` bits `[55:48]`: the 8-bit VMID (bits `[63:48]` with 16-bit VMIDs).
pub const VTTBR_VMID_SHIFT: u32 = 48;
/// `TTBR0_EL2` / `VTTBR_EL2` `BADDR` bits `[47:1]` (bit 0 is CnP from ARMv8.2, left 0).
pub const BADDR_MASK: u64 = ((1 << 48) - 1) & !1;

/// Table-walk attributes shared by `TCR_EL2` and `VTCR_EL2`: write-back cacheable, inner
/// shareable walks of 4 KiB-granule tables (the tables live in normal write-back memory).
const WALK_ATTRS: u64 = IRGN0_WBWA | ORGN0_WBWA | SH0_INNER | TG0_4K;

/// The `PS` (`TCR_EL2`, `VTCR_EL2`) / `IPS` encoding of a physical-address size.
pub fn pa_bits_to_ps(pa_bits: u8) -> Result<u64, RegError> {
    Ok(match pa_bits {
        32 => 0b000,
        36 => 0b001,
        40 => 0b010,
        42 => 0b011,
        44 => 0b100,
        48 => 0b101,
        _ => return Err(RegError::UnsupportedPaBits { pa_bits }),
    })
}

/// The physical-address size `ID_AA64MMFR0_EL1.PARange` (bits `[3:0]`) reports, capped at the
/// 48 bits this crate's descriptors hold (a 52-bit `PARange` gives 48).
pub fn parange_to_pa_bits(id_aa64mmfr0_el1: u64) -> Result<u8, RegError> {
    Ok(match id_aa64mmfr0_el1 & 0xf {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 | 6 => 48,
        // 7..=15 are reserved; report the raw nibble.
        other => {
            return Err(RegError::UnsupportedPaBits {
                pa_bits: other as u8,
            })
        }
    })
}

/// The VMID size `ID_AA64MMFR1_EL1.VMIDBits` (bits `[7:4]`) reports: `0b0000` 8 bits,
/// `0b0010` 16 bits (ARMv8.1 VMID16; the only two values the architecture defines).
pub fn vmidbits_to_bits(id_aa64mmfr1_el1: u64) -> Result<u8, RegError> {
    match (id_aa64mmfr1_el1 >> 4) & 0xf {
        0b0000 => Ok(8),
        0b0010 => Ok(16),
        other => Err(RegError::UnsupportedVmidBits { bits: other as u8 }),
    }
}

fn t0sz(geom: &Geometry) -> Result<u64, RegError> {
    let ia_bits = geom.ia_bits();
    let limits = Limits::ARMV8_STAGE2;
    if ia_bits < limits.min_ia_bits || ia_bits > limits.max_ia_bits {
        return Err(RegError::InputSizeOutOfRange { ia_bits });
    }
    Ok(64 - ia_bits as u64)
}

/// `TCR_EL2` for the EL2 stage-1 tree `geom` and a physical-address size of `pa_bits` (the
/// hyp side of `__kvm_hyp_init`): `T0SZ`, write-back inner-shareable walks, 4 KiB granule,
/// `PS`, RES1 bits 23 and 31; `TBI` = 0.
///
/// `geom` must have the shape the hardware derives from `T0SZ` alone: start level
/// `4 - ceil((ia_bits - 12) / 9)`, one root table (a stage-2 geometry with concatenated root
/// tables is refused).
pub fn tcr_el2(geom: &Geometry, pa_bits: u8) -> Result<u64, RegError> {
    let t0sz = t0sz(geom)?;
    let ia_bits = geom.ia_bits();
    let walked_levels = (ia_bits as u32 - 12).div_ceil(9) as u8;
    if geom.start_level() != 4 - walked_levels || geom.root_entries() > ENTRIES_PER_TABLE {
        return Err(RegError::NotAStage1Shape {
            ia_bits,
            start_level: geom.start_level(),
        });
    }
    let ps = pa_bits_to_ps(pa_bits)?;
    Ok(TCR_EL2_RES1 | (ps << PS_SHIFT) | WALK_ATTRS | t0sz)
}

/// Checks that `root` can be a translation-table base for `geom`: inside 48 bits, aligned to
/// the root's pages.
fn baddr(geom_pages: usize, root: PhysAddr) -> Result<u64, RegError> {
    let align = geom_pages as u64 * PAGE_SIZE;
    if root.0 & (align - 1) != 0 {
        return Err(RegError::UnalignedRoot { root, align });
    }
    if root.0 & !BADDR_MASK != 0 {
        return Err(RegError::RootBeyondOa { root });
    }
    Ok(root.0)
}

/// `TTBR0_EL2` for the EL2 stage-1 root table at `root` (page aligned, below 2^48; the
/// architecture would accept the table size's alignment, pt-core allocates roots as whole
/// pages). No ASID at EL2 without VHE; CnP = 0.
pub fn ttbr0_el2(root: PhysAddr) -> Result<u64, RegError> {
    baddr(1, root)
}

/// `VTCR_EL2` for the stage-2 tree `geom` and a physical-address size of `pa_bits` (KVM's
/// `kvm_get_vtcr` / `__init_stage2_translation`): `T0SZ`, `SL0`, write-back inner-shareable
/// walks, 4 KiB granule, `PS`, `VS` = 0 (8-bit VMIDs), RES1 bit 31.
///
/// Refused: a start level `SL0` cannot express or whose root would hold fewer than 2 or more
/// than 16 tables of entries; a level-0 start with `pa_bits` < 44; an IPA wider than
/// `pa_bits`. `pa_bits` should be the smaller of the wanted size and
/// `ID_AA64MMFR0_EL1.PARange` ([`parange_to_pa_bits`]).
pub fn vtcr_el2(geom: &Geometry, pa_bits: u8) -> Result<u64, RegError> {
    vtcr_el2_vmid(geom, pa_bits, 8)
}

/// [`vtcr_el2`] for `vmid_bits`-bit VMIDs: 8 leaves `VS` (bit 19) clear, 16 sets it (ARMv8.1
/// VMID16, where `ID_AA64MMFR1_EL1.VMIDBits` is `0b0010`: [`vmidbits_to_bits`]). Any other
/// size is [`RegError::UnsupportedVmidBits`].
pub fn vtcr_el2_vmid(geom: &Geometry, pa_bits: u8, vmid_bits: u8) -> Result<u64, RegError> {
    let vs = match vmid_bits {
        8 => 0,
        16 => VTCR_VS16,
        bits => return Err(RegError::UnsupportedVmidBits { bits }),
    };
    let t0sz = t0sz(geom)?;
    let ps = pa_bits_to_ps(pa_bits)?;
    let ia_bits = geom.ia_bits();
    let start_level = geom.start_level();
    let inconsistent = RegError::InconsistentStartLevel {
        ia_bits,
        start_level,
    };
    // 4 KiB granule: SL0 = 0b00 level 2, 0b01 level 1, 0b10 level 0 (0b11 reserved in v8.0).
    if start_level > 2 {
        return Err(inconsistent);
    }
    let sl0 = (2 - start_level) as u64;
    // log2 of the root's entries must be 1..=stride + 4 (2 entries .. 16 concatenated tables).
    let root_bits = ia_bits as i32 - level_shift(start_level) as i32;
    if !(1..=9 + 4).contains(&root_bits) {
        return Err(inconsistent);
    }
    if start_level == 0 && pa_bits < 44 {
        return Err(RegError::Level0NeedsPa44 { pa_bits });
    }
    if ia_bits > pa_bits {
        return Err(RegError::IpaExceedsPa { ia_bits, pa_bits });
    }
    debug_assert!(start_level < LAST_LEVEL);
    Ok(VTCR_EL2_RES1 | vs | (ps << PS_SHIFT) | WALK_ATTRS | (sl0 << SL0_SHIFT) | t0sz)
}

/// `VTTBR_EL2` for the VM whose stage-2 tree `geom` has its root at `root`, with `vmid`
/// (KVM's `kvm_get_vttbr`): `BADDR` = `root`, which must be aligned to the whole concatenated
/// root (`geom.root_pages()` pages) and below 2^48; `VMID` in bits `[55:48]`, 8 bits on ARMv8.0.
pub fn vttbr_el2(geom: &Geometry, root: PhysAddr, vmid: u16) -> Result<u64, RegError> {
    vttbr_el2_vmid(geom, root, vmid, 8)
}

/// [`vttbr_el2`] for `vmid_bits`-bit VMIDs: with 8, `VMID` is bits `[55:48]` and a VMID above
/// 255 is [`RegError::VmidTooWide`]; with 16 (`VTCR_EL2.VS` set, [`vtcr_el2_vmid`]) it is bits
/// `[63:48]`. Any other size is [`RegError::UnsupportedVmidBits`].
pub fn vttbr_el2_vmid(
    geom: &Geometry,
    root: PhysAddr,
    vmid: u16,
    vmid_bits: u8,
) -> Result<u64, RegError> {
    let baddr = baddr(geom.root_pages(), root)?;
    match vmid_bits {
        8 if vmid > 0xff => return Err(RegError::VmidTooWide { vmid }),
        8 | 16 => {}
        bits => return Err(RegError::UnsupportedVmidBits { bits }),
    }
    Ok(((vmid as u64) << VTTBR_VMID_SHIFT) | baddr)
}

/// `SCTLR_EL2` bit 0: `M`, EL2 stage-1 translation on.
pub const SCTLR_EL2_M: u64 = 1 << 0;
/// `SCTLR_EL2` bit 2: `C`, data accesses cacheable.
pub const SCTLR_EL2_C: u64 = 1 << 2;
/// `SCTLR_EL2` bit 12: `I`, instruction fetches cacheable.
pub const SCTLR_EL2_I: u64 = 1 << 12;
/// `SCTLR_EL2` bit 19: `WXN`, writable memory is never executable.
pub const SCTLR_EL2_WXN: u64 = 1 << 19;
/// The ARMv8.0 `SCTLR_EL2` RES1 bits (no VHE): 4, 5, 11, 16, 18, 22, 23, 28, 29.
pub const SCTLR_EL2_RES1: u64 = (1 << 4)
    | (1 << 5)
    | (1 << 11)
    | (1 << 16)
    | (1 << 18)
    | (1 << 22)
    | (1 << 23)
    | (1 << 28)
    | (1 << 29);

/// `SCTLR_EL2` with the MMU and both caches on, little-endian, no alignment checks, no `WXN`:
/// RES1 | M | C | I (KVM: `SCTLR_ELx_FLAGS` in `__kvm_hyp_init`).
pub const fn sctlr_el2_mmu_on() -> u64 {
    SCTLR_EL2_RES1 | SCTLR_EL2_M | SCTLR_EL2_C | SCTLR_EL2_I
}

#[cfg(test)]
// Expected values spell out every field, zero ones included.
#[allow(clippy::identity_op)]
mod tests {
    use super::*;
    use pt_core::MemType;

    fn s1(bits: u8) -> Geometry {
        Geometry::new(Limits::ARMV8_STAGE1, bits).unwrap()
    }
    fn s2(bits: u8) -> Geometry {
        Geometry::new(Limits::ARMV8_STAGE2, bits).unwrap()
    }

    #[test]
    fn ps_encodings_are_the_architected_ones() {
        let table = [
            (32, 0b000),
            (36, 0b001),
            (40, 0b010),
            (42, 0b011),
            (44, 0b100),
            (48, 0b101),
        ];
        for (bits, ps) in table {
            assert_eq!(pa_bits_to_ps(bits), Ok(ps));
        }
        for bits in [0, 31, 33, 39, 41, 47, 52, 255] {
            assert_eq!(
                pa_bits_to_ps(bits),
                Err(RegError::UnsupportedPaBits { pa_bits: bits })
            );
        }
    }

    #[test]
    fn vmid16_sets_vs_and_fills_vttbr_63_48() {
        // ID_AA64MMFR1_EL1.VMIDBits [7:4]: 0b0000 = 8 bits, 0b0010 = 16 bits.
        assert_eq!(vmidbits_to_bits(0x0000_0000_0000_0000), Ok(8));
        assert_eq!(vmidbits_to_bits(0x0000_0000_1111_0020), Ok(16));
        assert_eq!(
            vmidbits_to_bits(0x10),
            Err(RegError::UnsupportedVmidBits { bits: 1 })
        );
        let g = s2(40);
        assert_eq!(
            vtcr_el2_vmid(&g, 40, 16),
            Ok(vtcr_el2(&g, 40).unwrap() | 1 << 19)
        );
        assert_eq!(vtcr_el2_vmid(&g, 40, 8), vtcr_el2(&g, 40));
        assert_eq!(
            vtcr_el2_vmid(&g, 40, 12),
            Err(RegError::UnsupportedVmidBits { bits: 12 })
        );
        let root = PhysAddr(0x8000_2000);
        assert_eq!(
            vttbr_el2_vmid(&g, root, 0xfedc, 16),
            Ok(0xfedc_0000_8000_2000)
        );
        assert_eq!(
            vttbr_el2_vmid(&g, root, 0x100, 8),
            Err(RegError::VmidTooWide { vmid: 0x100 })
        );
    }

    #[test]
    fn parange_maps_to_pa_bits_and_caps_52_at_48() {
        assert_eq!(parange_to_pa_bits(0x1122_0000_0000_0000), Ok(32));
        assert_eq!(parange_to_pa_bits(2), Ok(40));
        assert_eq!(parange_to_pa_bits(5), Ok(48));
        assert_eq!(parange_to_pa_bits(6), Ok(48));
        assert_eq!(
            parange_to_pa_bits(7),
            Err(RegError::UnsupportedPaBits { pa_bits: 7 })
        );
    }

    #[test]
    fn tcr_el2_48_bit_va_40_bit_pa() {
        let expect = (1u64 << 31)
            | (1 << 23)
            | (0b010 << 16)
            | (0b00 << 14)
            | (0b11 << 12)
            | (0b01 << 10)
            | (0b01 << 8)
            | 16;
        assert_eq!(tcr_el2(&s1(48), 40), Ok(expect));
    }

    #[test]
    fn tcr_el2_39_bit_va_48_bit_pa() {
        let expect = (1u64 << 31)
            | (1 << 23)
            | (0b101 << 16)
            | (0b11 << 12)
            | (0b01 << 10)
            | (0b01 << 8)
            | 25;
        assert_eq!(tcr_el2(&s1(39), 48), Ok(expect));
    }

    #[test]
    fn tcr_el2_32_bit_va_32_bit_pa() {
        let expect = (1u64 << 31) | (1 << 23) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | 32;
        assert_eq!(tcr_el2(&s1(32), 32), Ok(expect));
    }

    #[test]
    fn tcr_el2_accepts_every_stage1_geometry() {
        for bits in 25..=48 {
            let v = tcr_el2(&s1(bits), 48).unwrap();
            assert_eq!(v & 0x3f, 64 - bits as u64);
        }
    }

    #[test]
    fn tcr_el2_refuses_a_concatenated_stage2_shape() {
        // 40-bit stage 2 starts at level 1 with 1024 entries; TCR_EL2 with T0SZ = 24 walks
        // from level 0.
        assert_eq!(
            tcr_el2(&s2(40), 40),
            Err(RegError::NotAStage1Shape {
                ia_bits: 40,
                start_level: 1
            })
        );
        assert_eq!(
            tcr_el2(&s1(40), 41),
            Err(RegError::UnsupportedPaBits { pa_bits: 41 })
        );
    }

    #[test]
    fn vtcr_el2_40_bit_ipa_starts_at_level1() {
        let expect = (1u64 << 31)
            | (0 << 19)
            | (0b010 << 16)
            | (0b11 << 12)
            | (0b01 << 10)
            | (0b01 << 8)
            | (0b01 << 6)
            | 24;
        assert_eq!(vtcr_el2(&s2(40), 40), Ok(expect));
    }

    #[test]
    fn vtcr_el2_32_bit_ipa_starts_at_level2_with_four_tables() {
        // Issue 17, shortest walk: 32-bit IPA, T0SZ = 64 - 32 = 32; SL0 = 0b00 (level 2)
        // takes 22..=34 bits (AArch64.S2InconsistentSL), root 2^(32 - 21) = 2048 entries =
        // four concatenated level-2 tables. Before: SL0 = 0b01 (level 1, 4 entries).
        let expect = (1u64 << 31)
            | (0b000 << 16)
            | (0b11 << 12)
            | (0b01 << 10)
            | (0b01 << 8)
            | (0b00 << 6)
            | 32;
        assert_eq!(vtcr_el2(&s2(32), 32), Ok(expect));
        assert_eq!(vtcr_el2(&s2(32), 32), Ok(0x8000_3520));
        assert_eq!((s2(32).start_level(), s2(32).root_pages()), (2, 4));
    }

    /// VTCR_EL2 and VTTBR_EL2 per IPA size, worked out by hand: bit 31 RES1, PS [18:16]
    /// (32/36/40/42/44/48 bits = 0..=5), SH0/ORGN0/IRGN0 = 0x3500, SL0 [7:6] = 2 - start
    /// level, T0SZ = 64 - IPA bits. Start level: the deepest whose root fits 16 tables (level
    /// 2 up to 34 bits, level 1 up to 43, level 0 above). Root alignment: its pages.
    #[test]
    fn vtcr_el2_and_vttbr_el2_pinned_per_ipa_size() {
        #[rustfmt::skip]
        let table: &[(u8, u8, u64, u8, usize)] = &[
            // (IPA bits, PA bits, VTCR_EL2, start level, root pages)
            (32, 32, 0x8000_3520, 2, 4),  // SL0 0, T0SZ 0x20: 2048 entries
            (36, 36, 0x8001_355c, 1, 1),  // SL0 1, T0SZ 0x1c: 64 entries
            (39, 40, 0x8002_3559, 1, 1),  // SL0 1, T0SZ 0x19: 512 entries
            (40, 40, 0x8002_3558, 1, 2),  // SL0 1, T0SZ 0x18: 1024 entries
            (42, 42, 0x8003_3556, 1, 8),  // SL0 1, T0SZ 0x16: 4096 entries
            (44, 44, 0x8004_3594, 0, 1),  // SL0 2, T0SZ 0x14: 32 entries
            (48, 48, 0x8005_3590, 0, 1),  // SL0 2, T0SZ 0x10: 512 entries
        ];
        for &(ipa, pa, vtcr, start, pages) in table {
            let g = s2(ipa);
            assert_eq!(vtcr_el2(&g, pa), Ok(vtcr), "{ipa}-bit IPA");
            assert_eq!((g.start_level(), g.root_pages()), (start, pages), "{ipa}");
            let align = pages as u64 * 0x1000;
            let root = PhysAddr(0x8000_0000 + align);
            assert_eq!(
                vttbr_el2(&g, root, 7),
                Ok((7u64 << 48) | (0x8000_0000 + align)),
                "{ipa}"
            );
            if pages > 1 {
                assert_eq!(
                    vttbr_el2(&g, PhysAddr(0x8000_0000 + align / 2), 7),
                    Err(RegError::UnalignedRoot {
                        root: PhysAddr(0x8000_0000 + align / 2),
                        align
                    }),
                    "{ipa}"
                );
            }
        }
        // 32-bit: the four-table root needs 16 KiB.
        assert_eq!(
            vttbr_el2(&s2(32), PhysAddr(0x4001_4000), 1),
            Ok((1u64 << 48) | 0x4001_4000)
        );
        assert!(vttbr_el2(&s2(32), PhysAddr(0x4001_2000), 1).is_err());
    }

    #[test]
    fn vtcr_el2_48_bit_ipa_starts_at_level0() {
        let expect = (1u64 << 31)
            | (0b101 << 16)
            | (0b11 << 12)
            | (0b01 << 10)
            | (0b01 << 8)
            | (0b10 << 6)
            | 16;
        assert_eq!(vtcr_el2(&s2(48), 48), Ok(expect));
    }

    #[test]
    fn vtcr_el2_30_bit_ipa_starts_at_level2() {
        let expect = (1u64 << 31)
            | (0b001 << 16)
            | (0b11 << 12)
            | (0b01 << 10)
            | (0b01 << 8)
            | (0b00 << 6)
            | 34;
        assert_eq!(vtcr_el2(&s2(30), 36), Ok(expect));
    }

    #[test]
    fn vtcr_el2_accepts_every_stage2_geometry_with_enough_pa() {
        for bits in 25..=48 {
            let v = vtcr_el2(&s2(bits), 48).unwrap();
            let sl0 = (v >> 6) & 0b11;
            assert_eq!(2 - sl0 as u8, s2(bits).start_level());
        }
    }

    #[test]
    fn vtcr_el2_refuses_ipa_wider_than_pa() {
        assert_eq!(
            vtcr_el2(&s2(40), 36),
            Err(RegError::IpaExceedsPa {
                ia_bits: 40,
                pa_bits: 36
            })
        );
    }

    #[test]
    fn vtcr_el2_refuses_level0_start_below_44_bit_pa() {
        // A stage-1 shaped 40-bit tree (level 0, 2 entries) is a legal SL0/T0SZ pair, but level 0
        // needs PA >= 44.
        assert_eq!(
            vtcr_el2(&s1(40), 40),
            Err(RegError::Level0NeedsPa44 { pa_bits: 40 })
        );
        assert!(vtcr_el2(&s1(40), 44).is_ok());
    }

    #[test]
    fn vtcr_el2_refuses_bad_pa_size() {
        assert_eq!(
            vtcr_el2(&s2(40), 52),
            Err(RegError::UnsupportedPaBits { pa_bits: 52 })
        );
    }

    #[test]
    fn ttbr0_el2_is_the_root_address_checked() {
        assert_eq!(ttbr0_el2(PhysAddr(0x4008_0000)), Ok(0x4008_0000));
        assert_eq!(
            ttbr0_el2(PhysAddr(0x4008_0800)),
            Err(RegError::UnalignedRoot {
                root: PhysAddr(0x4008_0800),
                align: 0x1000
            })
        );
        assert_eq!(
            ttbr0_el2(PhysAddr(1 << 48)),
            Err(RegError::RootBeyondOa {
                root: PhysAddr(1 << 48)
            })
        );
    }

    #[test]
    fn vttbr_el2_has_vmid_in_55_48_and_concatenated_root_alignment() {
        let g = s2(40); // two concatenated root tables: 8 KiB alignment
        assert_eq!(
            vttbr_el2(&g, PhysAddr(0x4010_2000), 5),
            Ok((5u64 << 48) | 0x4010_2000)
        );
        assert_eq!(
            vttbr_el2(&g, PhysAddr(0x4010_0000), 255),
            Ok((0xffu64 << 48) | 0x4010_0000)
        );
        assert_eq!(
            vttbr_el2(&g, PhysAddr(0x4010_1000), 1),
            Err(RegError::UnalignedRoot {
                root: PhysAddr(0x4010_1000),
                align: 0x2000
            })
        );
        assert_eq!(
            vttbr_el2(&g, PhysAddr(0x4010_0000), 256),
            Err(RegError::VmidTooWide { vmid: 256 })
        );
        assert_eq!(
            vttbr_el2(&s2(32), PhysAddr(0x1_0000_0000_0000), 1),
            Err(RegError::RootBeyondOa {
                root: PhysAddr(0x1_0000_0000_0000)
            })
        );
        assert_eq!(
            vttbr_el2(&s2(43), PhysAddr(0x10_000), 1),
            Ok((1u64 << 48) | 0x10_000),
            "16 tables: 64 KiB"
        );
        assert!(vttbr_el2(&s2(43), PhysAddr(0x8_000), 1).is_err());
    }

    #[test]
    fn sctlr_el2_res1_and_mmu_on() {
        let res1 = (1u64 << 29)
            | (1 << 28)
            | (1 << 23)
            | (1 << 22)
            | (1 << 18)
            | (1 << 16)
            | (1 << 11)
            | (1 << 5)
            | (1 << 4);
        assert_eq!(SCTLR_EL2_RES1, res1);
        assert_eq!(SCTLR_EL2_RES1, 0x30c5_0830);
        assert_eq!(sctlr_el2_mmu_on(), res1 | (1 << 12) | (1 << 2) | 1);
        assert_eq!(SCTLR_EL2_WXN, 1 << 19);
    }

    #[test]
    fn regs_reexports_mair_and_attr_index() {
        assert_eq!(MAIR_EL2, 0x0004_44ff);
        assert_eq!(attr_index(MemType::DeviceNGnRE), 2);
    }

    #[test]
    fn errors_display() {
        extern crate std;
        use std::string::ToString;
        assert_eq!(
            RegError::VmidTooWide { vmid: 300 }.to_string(),
            "VMID 300 does not fit in 8 bits"
        );
    }
}
