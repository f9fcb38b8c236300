//! The shape of a translation-table tree, derived from the input-address size.
//!
//! With the 4 KiB granule every level resolves 9 bits and a page resolves 12, so level `L`
//! entries cover `2^(12 + 9 * (3 - L))` bytes. A tree needs `ceil((bits - 12) / 9)` levels; the
//! first (start) level then holds `2^(bits - shift(start))` entries, which may be fewer than 512.
//!
//! Stage 1 has no choice: the hardware derives the start level from `T0SZ` alone, one root
//! table. Stage 2 may start one or two levels lower with up to 16 *concatenated* root tables
//! (ARM ARM DDI 0487 "Stage 2 translation table lookup", `AArch64.S2InconsistentSL`; ARMv7
//! DDI 0406C B3.6.6 and VTCR B4.1.159), and [`Geometry::new`] takes the **shortest walk the
//! architecture allows**: the deepest start level (at most level 2, what `SL0` encodes with the
//! 4 KiB granule) whose root fits in 16 tables. Level 0 is never concatenated. ARMv8 `SL0` =
//! 0/1/2 start level 2/1/0 for 22..=34 / 31..=43 / 40..=48 bits; ARMv7 `SL0` = 0 (level 2)
//! takes `T0SZ` -2..=7 (25..=34 bits), `SL0` = 1 (level 1) `T0SZ` -8..=1 (31..=40 bits).
//!
//! | IPA bits | ARMv8 stage 2: start, root tables (entries), levels | ARMv7 stage 2 | KVM arm64 | KVM arm32 |
//! |---|---|---|---|---|
//! | 25..=30 | L2, 1 (16..512), 2 | same as ARMv8 | below its 32-bit minimum | - |
//! | 31 | L2, 2, 2 | same | below its minimum | - |
//! | 32 | L2, 4, 2 | same | L2, 4, 2 | - |
//! | 33 | L2, 8, 2 | same | L2, 8, 2 | - |
//! | 34 | L2, 16, 2 | same | L2, 16, 2 | - |
//! | 35..=39 | L1, 1 (32..512), 3 | same | L1, 1, 3 | - |
//! | 40 | L1, 2, 3 | same | L1, 2, 3 | always this: L1, 2, 3 |
//! | 41..=43 | L1, 4 / 8 / 16, 3 | - (40 bits at most) | L1, 4 / 8 / 16, 3 | - |
//! | 44..=48 | L0, 1 (32..512), 4 | - | L0, 1, 4 | - |
//!
//! KVM arm64 picks `stage2_pgtable_levels(ipa)` = `ARM64_HW_PGTABLE_LEVELS(ipa - 4)` =
//! `(ipa - 8) / 9` levels (allowing 16 concatenated tables, at least 2 levels), so it agrees
//! with this rule for every IPA size it supports (32..=48 bits). KVM arm32 (removed in Linux
//! 5.7) always ran guests with a 40-bit IPA: `VTCR.T0SZ` = -8, `SL0` = 1, two level-1 tables.
//! Before issue 17 this crate started 31- to 34-bit stage 2 at level 1 (three levels); a
//! 32-bit VM now walks two.

use core::fmt;

/// Which translation stage a tree serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Hyp-mode (EL2 / HYP) stage-1 translation of the hypervisor's own virtual addresses.
    Stage1,
    /// Stage-2 translation of a guest's intermediate physical addresses.
    Stage2,
}

/// The input-address sizes an architecture accepts for one stage, and its first level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The stage these limits describe.
    pub stage: Stage,
    /// Smallest input-address size in bits.
    pub min_ia_bits: u8,
    /// Largest input-address size in bits.
    pub max_ia_bits: u8,
    /// Lowest-numbered level the architecture has (0 on ARMv8, 1 on ARMv7 LPAE).
    pub min_level: u8,
}

impl Limits {
    /// ARMv7 LPAE HYP-mode stage 1 (HTCR.T0SZ 0..=7: 25- to 32-bit VA).
    pub const ARMV7_STAGE1: Limits = Limits {
        stage: Stage::Stage1,
        min_ia_bits: 25,
        max_ia_bits: 32,
        min_level: 1,
    };
    /// ARMv7 LPAE stage 2 (VTCR.T0SZ is signed 4-bit, -8..=7: 25- to 40-bit IPA).
    pub const ARMV7_STAGE2: Limits = Limits {
        stage: Stage::Stage2,
        min_ia_bits: 25,
        max_ia_bits: 40,
        min_level: 1,
    };
    /// ARMv8 EL2 stage 1 (TCR_EL2.T0SZ 16..=39: 25- to 48-bit VA).
    pub const ARMV8_STAGE1: Limits = Limits {
        stage: Stage::Stage1,
        min_ia_bits: 25,
        max_ia_bits: 48,
        min_level: 0,
    };
    /// ARMv8 stage 2 (VTCR_EL2.T0SZ 16..=39: 25- to 48-bit IPA).
    pub const ARMV8_STAGE2: Limits = Limits {
        stage: Stage::Stage2,
        min_ia_bits: 25,
        max_ia_bits: 48,
        min_level: 0,
    };
}

/// Why a geometry was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GeometryError {
    /// The input-address size is outside what the architecture allows for this stage.
    UnsupportedInputSize {
        /// The requested size.
        bits: u8,
        /// The smallest allowed size.
        min: u8,
        /// The largest allowed size.
        max: u8,
    },
    /// The [`Limits`] admit the size, but no tree of 4 KiB tables has that shape: the size
    /// needs a start level above the last level (12 bits or fewer), a start level below
    /// `min_level` (or `min_level` is past [`LAST_LEVEL`]), or a root of more than 16
    /// concatenated tables. Only hand-made limits get here; the `Limits` constants of the
    /// supported architectures never do.
    NoTreeShape {
        /// The requested size.
        bits: u8,
        /// The lowest-numbered start level the limits allow.
        min_level: u8,
    },
}

impl core::error::Error for GeometryError {}

impl fmt::Display for GeometryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GeometryError::UnsupportedInputSize { bits, min, max } => {
                write!(
                    f,
                    "{bits}-bit input addresses unsupported (allowed {min}..={max})"
                )
            }
            GeometryError::NoTreeShape { bits, min_level } => write!(
                f,
                "no tree of 4 KiB tables starting at level {min_level} or below resolves \
                 {bits}-bit input addresses"
            ),
        }
    }
}

/// Number of entries in one 4 KiB table.
pub const ENTRIES_PER_TABLE: usize = 512;
/// Most concatenated root tables the architecture allows at stage 2.
pub const MAX_CONCATENATED: usize = 16;
/// Deepest (leaf-only) level.
pub const LAST_LEVEL: u8 = 3;
/// Input-address bits a page resolves (the 4 KiB page offset).
const PAGE_BITS: u32 = 12;
/// Deepest level a stage-2 walk can start at with the 4 KiB granule: `VTCR.SL0` /
/// `VTCR_EL2.SL0` encode levels 2, 1 (and 0 on ARMv8) only (level 3 needs ARMv8.4 TTST).
pub const STAGE2_LAST_START_LEVEL: u8 = 2;

/// The shape of one tree: input size, start level and root size.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    ia_bits: u8,
    start_level: u8,
    root_entries: u32,
}

/// Bits of input address resolved below an entry of `level` (its size is `1 << shift`):
/// 39, 30, 21 and 12 for levels 0 to 3.
///
/// Total: a level past [`LAST_LEVEL`] (which does not exist) is taken as [`LAST_LEVEL`], so
/// the result is always a valid shift and never panics. Use [`checked_level_shift`] to tell
/// such a level apart.
#[inline]
pub const fn level_shift(level: u8) -> u32 {
    let level = if level > LAST_LEVEL {
        LAST_LEVEL
    } else {
        level
    };
    12 + 9 * (LAST_LEVEL - level) as u32
}

/// Bytes covered by one entry of `level`: 512 GiB, 1 GiB, 2 MiB and 4 KiB for levels 0 to 3.
///
/// Total like [`level_shift`]: a level past [`LAST_LEVEL`] is taken as [`LAST_LEVEL`] (one
/// page). Use [`checked_entry_size`] to tell such a level apart.
#[inline]
pub const fn entry_size(level: u8) -> u64 {
    1u64 << level_shift(level)
}

/// [`level_shift`] of `level`, or `None` when `level` is past [`LAST_LEVEL`].
#[inline]
pub const fn checked_level_shift(level: u8) -> Option<u32> {
    if level > LAST_LEVEL {
        None
    } else {
        Some(level_shift(level))
    }
}

/// [`entry_size`] of `level`, or `None` when `level` is past [`LAST_LEVEL`].
#[inline]
pub const fn checked_entry_size(level: u8) -> Option<u64> {
    if level > LAST_LEVEL {
        None
    } else {
        Some(entry_size(level))
    }
}

/// Stage 1: the start level the hardware derives from `T0SZ` alone, one root table of
/// `2^root_bits` entries (1..=9 bits). `None` for 12 bits or fewer and for more than 48.
fn stage1_shape(ia_bits: u8) -> Option<(u8, u32)> {
    let walked = (ia_bits as u32).checked_sub(PAGE_BITS).filter(|&w| w > 0)?;
    let levels = walked.div_ceil(9);
    if levels > LAST_LEVEL as u32 + 1 {
        return None;
    }
    let start_level = (LAST_LEVEL as u32 + 1 - levels) as u8;
    Some((start_level, ia_bits as u32 - level_shift(start_level)))
}

/// Stage 2: the shortest walk the architecture allows. The highest start level at or above
/// which the root needs at most 16 concatenated tables (`2^13` entries); the start level is
/// at most [`STAGE2_LAST_START_LEVEL`] (what `SL0` encodes with the 4 KiB granule) and the
/// root holds at least 2 entries; a level-0 root is a single table (the ARM ARM concatenates
/// only at levels 1 and 2 with the 4 KiB granule). `None` below 22 and above 48 bits.
fn stage2_shape(ia_bits: u8) -> Option<(u8, u32)> {
    let max_root_bits = (MAX_CONCATENATED * ENTRIES_PER_TABLE).ilog2();
    let mut start_level = STAGE2_LAST_START_LEVEL;
    loop {
        let root_bits = (ia_bits as u32).checked_sub(level_shift(start_level))?;
        if root_bits == 0 {
            return None;
        }
        let max = if start_level == 0 {
            ENTRIES_PER_TABLE.ilog2()
        } else {
            max_root_bits
        };
        if root_bits <= max {
            return Some((start_level, root_bits));
        }
        start_level = start_level.checked_sub(1)?;
    }
}

impl Geometry {
    /// Derives the geometry for `ia_bits`-bit input addresses under `limits`.
    ///
    /// Total for every `limits` and `ia_bits`: a size outside `limits` is
    /// [`GeometryError::UnsupportedInputSize`]; a size the limits admit but no tree can
    /// resolve (possible only with hand-made limits) is [`GeometryError::NoTreeShape`].
    pub fn new(limits: Limits, ia_bits: u8) -> Result<Self, GeometryError> {
        if ia_bits < limits.min_ia_bits || ia_bits > limits.max_ia_bits {
            return Err(GeometryError::UnsupportedInputSize {
                bits: ia_bits,
                min: limits.min_ia_bits,
                max: limits.max_ia_bits,
            });
        }
        let no_shape = GeometryError::NoTreeShape {
            bits: ia_bits,
            min_level: limits.min_level,
        };
        if limits.min_level > LAST_LEVEL {
            return Err(no_shape);
        }
        let (start_level, root_bits) = match limits.stage {
            Stage::Stage1 => stage1_shape(ia_bits),
            Stage::Stage2 => stage2_shape(ia_bits),
        }
        .ok_or(no_shape)?;
        // Hand-made limits may ask for a start level below the one the size needs; the
        // supported architectures' limits never do.
        if start_level < limits.min_level {
            return Err(no_shape);
        }
        Ok(Self {
            ia_bits,
            start_level,
            root_entries: 1u32 << root_bits,
        })
    }

    /// Size of the input address space in bits.
    #[inline]
    pub fn ia_bits(&self) -> u8 {
        self.ia_bits
    }

    /// Size of the input address space in bytes.
    #[inline]
    pub fn ia_size(&self) -> u64 {
        1u64 << self.ia_bits
    }

    /// Level of the root table(s).
    #[inline]
    pub fn start_level(&self) -> u8 {
        self.start_level
    }

    /// Number of levels walked, root included.
    #[inline]
    pub fn levels(&self) -> u8 {
        LAST_LEVEL + 1 - self.start_level
    }

    /// Entries in the root, across all concatenated tables.
    #[inline]
    pub fn root_entries(&self) -> usize {
        self.root_entries as usize
    }

    /// Number of concatenated root tables (1 when the root is a single, possibly partial, table).
    #[inline]
    pub fn root_tables(&self) -> usize {
        self.root_entries().div_ceil(ENTRIES_PER_TABLE)
    }

    /// Pages allocated for the root (the root is always given whole pages).
    #[inline]
    pub fn root_pages(&self) -> usize {
        self.root_tables()
    }

    /// Entries of a table at `level` in this tree.
    #[inline]
    pub fn entries_at(&self, level: u8) -> usize {
        if level == self.start_level {
            self.root_entries()
        } else {
            ENTRIES_PER_TABLE
        }
    }

    /// Index of the entry for input address `ia` in its table at `level` (a level past
    /// [`LAST_LEVEL`] is taken as [`LAST_LEVEL`], as in [`level_shift`]).
    #[inline]
    pub fn index(&self, level: u8, ia: u64) -> usize {
        ((ia >> level_shift(level)) as usize) & (self.entries_at(level) - 1)
    }

    /// Greatest number of table pages below the root that mapping one page can need.
    #[inline]
    pub fn max_tables_per_map(&self) -> usize {
        (self.levels() - 1) as usize
    }
}

impl fmt::Debug for Geometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Geometry({}-bit, start L{}, {} root entries in {} table(s))",
            self.ia_bits,
            self.start_level,
            self.root_entries,
            self.root_tables()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (limits, bits, start level, root entries), worked out by hand from the ARM ARM: a level
    /// `L` entry covers `2^(12 + 9 * (3 - L))` bytes; the root holds `2^(bits - that)` entries.
    #[rustfmt::skip]
    const LEGAL: &[(Limits, u8, u8, usize)] = &[
        // ARMv8 stage 2 (VTCR_EL2, 4 KiB granule; DDI 0487 "Stage 2 translation table
        // lookup", AArch64.S2InconsistentSL): SL0=0 level 2 for 22..=34 bits (T0SZ >= 25 caps
        // it at 25), SL0=1 level 1 for 31..=43, SL0=2 level 0 for 40..=48; up to 16
        // concatenated tables. Shortest walk: level 2 up to 34 bits, level 1 up to 43.
        (Limits::ARMV8_STAGE2, 25, 2, 1 << (25 - 21)),
        (Limits::ARMV8_STAGE2, 30, 2, 1 << (30 - 21)),
        (Limits::ARMV8_STAGE2, 31, 2, 2 * 512),
        (Limits::ARMV8_STAGE2, 32, 2, 4 * 512),
        (Limits::ARMV8_STAGE2, 34, 2, 16 * 512),
        (Limits::ARMV8_STAGE2, 35, 1, 1 << (35 - 30)),
        (Limits::ARMV8_STAGE2, 36, 1, 64),
        (Limits::ARMV8_STAGE2, 39, 1, 512),
        (Limits::ARMV8_STAGE2, 40, 1, 2 * 512),
        (Limits::ARMV8_STAGE2, 42, 1, 8 * 512),
        (Limits::ARMV8_STAGE2, 43, 1, 16 * 512),
        (Limits::ARMV8_STAGE2, 44, 0, 1 << (44 - 39)),
        (Limits::ARMV8_STAGE2, 48, 0, 512),
        // ARMv8 EL2 stage 1 (TCR_EL2): no concatenation, level 0 from 40 bits.
        (Limits::ARMV8_STAGE1, 25, 2, 16),
        (Limits::ARMV8_STAGE1, 32, 1, 4),
        (Limits::ARMV8_STAGE1, 39, 1, 512),
        (Limits::ARMV8_STAGE1, 40, 0, 2),
        (Limits::ARMV8_STAGE1, 48, 0, 512),
        // ARMv7 LPAE stage 2 (VTCR, DDI 0406C B3.6.6 / B4.1.159): SL0=0 level 2 for T0SZ
        // -2..=7 (25..=34 bits), SL0=1 level 1 for T0SZ -8..=1 (31..=40 bits). Shortest
        // walk: level 2 up to 34 bits (32-bit: four concatenated tables), level 1 above.
        (Limits::ARMV7_STAGE2, 25, 2, 16),
        (Limits::ARMV7_STAGE2, 30, 2, 512),
        (Limits::ARMV7_STAGE2, 31, 2, 2 * 512),
        (Limits::ARMV7_STAGE2, 32, 2, 4 * 512),
        (Limits::ARMV7_STAGE2, 34, 2, 16 * 512),
        (Limits::ARMV7_STAGE2, 35, 1, 32),
        (Limits::ARMV7_STAGE2, 36, 1, 64),
        (Limits::ARMV7_STAGE2, 40, 1, 1024),
        // ARMv7 HYP stage 1 (HTCR): level 1 for 31..32 bits, level 2 below.
        (Limits::ARMV7_STAGE1, 32, 1, 4),
        (Limits::ARMV7_STAGE1, 30, 2, 512),
        (Limits::ARMV7_STAGE1, 25, 2, 16),
    ];

    #[test]
    fn every_legal_size_has_the_architected_shape() {
        for &(limits, bits, start, entries) in LEGAL {
            let g = Geometry::new(limits, bits).unwrap();
            assert_eq!(g.start_level(), start, "{limits:?} {bits}");
            assert_eq!(g.root_entries(), entries, "{limits:?} {bits}");
            assert_eq!(g.levels(), 4 - start);
            assert_eq!(g.root_tables(), entries.div_ceil(512));
        }
    }

    #[test]
    fn every_size_in_range_is_legal_and_covers_exactly_the_input_space() {
        for limits in [
            Limits::ARMV7_STAGE1,
            Limits::ARMV7_STAGE2,
            Limits::ARMV8_STAGE1,
            Limits::ARMV8_STAGE2,
        ] {
            for bits in limits.min_ia_bits..=limits.max_ia_bits {
                let g = Geometry::new(limits, bits).unwrap();
                assert!(g.start_level() >= limits.min_level);
                assert!(g.root_tables() <= MAX_CONCATENATED);
                let covered = g.root_entries() as u128 * entry_size(g.start_level()) as u128;
                assert_eq!(covered, 1u128 << bits, "{limits:?} {bits}");
                if limits.stage == Stage::Stage1 {
                    assert!(g.root_entries() <= 512, "stage 1 never concatenates");
                }
            }
        }
    }

    #[test]
    fn illegal_sizes_are_errors() {
        let cases = [
            (Limits::ARMV7_STAGE1, 24),
            (Limits::ARMV7_STAGE1, 33),
            (Limits::ARMV7_STAGE2, 41),
            (Limits::ARMV7_STAGE2, 24),
            (Limits::ARMV8_STAGE1, 49),
            (Limits::ARMV8_STAGE2, 49),
            (Limits::ARMV8_STAGE2, 0),
        ];
        for (limits, bits) in cases {
            assert_eq!(
                Geometry::new(limits, bits),
                Err(GeometryError::UnsupportedInputSize {
                    bits,
                    min: limits.min_ia_bits,
                    max: limits.max_ia_bits
                })
            );
        }
    }

    #[test]
    fn index_of_concatenated_root_uses_the_extra_bits() {
        let g = Geometry::new(Limits::ARMV8_STAGE2, 40).unwrap();
        // bit 39 selects the second concatenated table: index 512 + (ia >> 30 & 511)
        assert_eq!(g.index(1, 0x80_4000_0000), 512 + 1);
        assert_eq!(g.index(2, 0x80_4020_0000), 1);
        assert_eq!(g.index(3, 0x80_4020_3000), 3);
    }
}
