//! The VMSAv8-64 long-descriptor layout shared by EL2 stage 1 and stage 2 (4 KiB granule).
//!
//! ARM ARM (DDI 0487) D5.3 "VMSAv8-64 translation table format descriptors":
//!
//! ```text
//!  63    59 58  55 54  53  52  51  48 47                 12 11  10  9 8 7 6 5  2 1 0
//! | table  | SW   |XN |PXN|Cont| res |   output address     |nG |AF |SH |AP |attr| T V |
//! ```
//!
//! - bit 0 (V) is the valid bit;
//! - bit 1 (T) at levels 0..=2 selects table (1) or block (0); level 0 has no blocks with the
//!   4 KiB granule (a level-0 "block" is a translation fault, decoded as invalid); at level 3
//!   bits `[1:0]` must be `0b11` (page) and `0b01` is reserved, decoded as invalid;
//! - a table descriptor holds the next-level table address in bits `[47:12]` and nothing else
//!   here (the hierarchical attribute bits `[63:59]` stay 0, and are RES0 at stage 2);
//! - a leaf (block or page) holds its output address in bits `[47:n]`, `n` = 30 at level 1,
//!   21 at level 2, 12 at level 3; the attribute fields around it depend on the regime
//!   ([`crate::stage1`], [`crate::stage2`]).
//!
//! The output address is plain bits, so the descriptor of the next entry of a run is this one
//! plus the entry size ([`pt_core::Format::leaf_step`]).

use pt_core::geometry::{ENTRIES_PER_TABLE, LAST_LEVEL};
use pt_core::{entry_size, PhysAddr, PAGE_SIZE};
use static_assertions::{assert_eq_size, const_assert, const_assert_eq};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Width of the output address a VMSAv8-64 descriptor holds with the 4 KiB granule (ARMv8.0,
/// no FEAT_LPA): 48 bits.
pub const OA_BITS: u8 = 48;

/// Bit 0: the descriptor is valid.
pub const VALID: u64 = 1 << 0;
/// Bit 1: table (levels 0..=2) or page (level 3). Clear with `VALID` set: block (levels 1, 2).
pub const TYPE_TABLE_OR_PAGE: u64 = 1 << 1;
/// The low two bits of a table descriptor and of a level-3 page descriptor.
pub const KIND_TABLE: u64 = VALID | TYPE_TABLE_OR_PAGE;
/// The low two bits of a block descriptor (levels 1 and 2).
pub const KIND_BLOCK: u64 = VALID;
/// The low two bits of a level-3 page descriptor.
pub const KIND_PAGE: u64 = VALID | TYPE_TABLE_OR_PAGE;
/// Bits `[47:12]`: next-level table address, or (with the level's low bits clear) the output
/// address of a leaf.
pub const ADDR_MASK: u64 = ((1u64 << OA_BITS) - 1) & !(PAGE_SIZE - 1);
/// Bits `[9:8]`: shareability of a leaf.
pub const SH_MASK: u64 = 0b11 << 8;
/// SH = `0b11`: inner shareable.
pub const SH_INNER: u64 = 0b11 << 8;
/// Bit 10: access flag of a leaf.
pub const AF: u64 = 1 << 10;
/// Bit 52: the contiguous hint of a leaf (16 adjacent, aligned entries with identical
/// attributes may share one TLB entry).
pub const CONTIGUOUS: u64 = 1 << 52;
/// Bit 54: execute never (stage 1 at EL2: `XN`; stage 2: `XN`, ARMv8.0 has no `XN[0]`).
pub const XN: u64 = 1 << 54;
/// Bits `[58:55]`: reserved for software use in leaf descriptors.
pub const SW_MASK: u64 = 0b1111 << 55;
/// Bits `[63:59]`: hierarchical attributes of a table descriptor (never set by this crate).
pub const TABLE_ATTR_MASK: u64 = 0b11111 << 59;

/// Number of entries a contiguous-hint run spans with the 4 KiB granule, at every level.
pub const CONTIGUOUS_ENTRIES: usize = 16;

assert_eq_size!(Descriptor, u64);
const_assert_eq!(
    ENTRIES_PER_TABLE * core::mem::size_of::<Descriptor>(),
    PAGE_SIZE as usize
);
const_assert_eq!(ADDR_MASK, 0x0000_ffff_ffff_f000);
// The fields shared by both regimes do not overlap one another.
const_assert!(disjoint(&[
    KIND_TABLE,
    SH_MASK,
    AF,
    ADDR_MASK,
    CONTIGUOUS,
    XN,
    SW_MASK,
    TABLE_ATTR_MASK
]));

/// True when no two masks of `masks` share a bit (for the layout assertions of this crate).
pub(crate) const fn disjoint(masks: &[u64]) -> bool {
    let mut seen = 0u64;
    let mut i = 0;
    while i < masks.len() {
        if seen & masks[i] != 0 {
            return false;
        }
        seen |= masks[i];
        i += 1;
    }
    true
}

/// Sets the contiguous hint (bit 52) of a leaf descriptor.
///
/// The caller owes the architecture's rule: all [`CONTIGUOUS_ENTRIES`] entries of the aligned
/// run must be valid leaves with consecutive output addresses and identical attributes, all
/// with the hint, before any of them is live (ARM ARM D5.5 "The Contiguous bit"). Neither
/// [`crate::HypFormat`] nor [`crate::S2Format`] decodes the hint into the attributes, so a
/// hinted leaf decodes like the plain one.
#[inline]
pub const fn with_contiguous(desc: u64) -> u64 {
    desc | CONTIGUOUS
}

/// Whether the contiguous hint (bit 52) of `desc` is set.
#[inline]
pub const fn is_contiguous(desc: u64) -> bool {
    desc & CONTIGUOUS != 0
}

/// One raw translation-table entry, laid out as the MMU reads it (a little-endian `u64`).
///
/// Readable straight out of a table page with `zerocopy` (e.g.
/// [`Descriptor::table`]), for dumps and tests; live tables are only written through pt-core's
/// table module, never through this type.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(transparent)]
pub struct Descriptor(pub u64);

impl Descriptor {
    /// The entries of a table page given as bytes (a whole number of 8-byte, 8-aligned
    /// entries), or `None` when the length or alignment does not fit.
    pub fn table(bytes: &[u8]) -> Option<&[Descriptor]> {
        <[Descriptor]>::ref_from_bytes(bytes).ok()
    }

    /// The raw value.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }
}

/// What a descriptor is, regime-independent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Invalid,
    Table(PhysAddr),
    Leaf(PhysAddr),
}

/// Bits `[47:shift(level)]`: the output-address bits of a leaf at `level` (1..=3).
#[inline]
pub(crate) const fn leaf_oa_mask(level: u8) -> u64 {
    ADDR_MASK & !(entry_size(level) - 1)
}

/// Whether a leaf may sit at `level`: blocks at levels 1 and 2, pages at level 3.
#[inline]
pub(crate) const fn leaf_allowed(level: u8) -> bool {
    level >= 1 && level <= LAST_LEVEL
}

/// Decodes the regime-independent part of `desc` at `level`. Levels above 3 hold nothing.
#[inline]
pub(crate) fn kind(desc: u64, level: u8) -> Kind {
    if desc & VALID == 0 || level > LAST_LEVEL {
        return Kind::Invalid;
    }
    let bit1 = desc & TYPE_TABLE_OR_PAGE != 0;
    match (level, bit1) {
        (LAST_LEVEL, true) => Kind::Leaf(PhysAddr(desc & leaf_oa_mask(level))),
        // Level 3 `0b01` is reserved: translation fault.
        (LAST_LEVEL, false) => Kind::Invalid,
        (_, true) => Kind::Table(PhysAddr(desc & ADDR_MASK)),
        // A level-0 block does not exist with the 4 KiB granule: translation fault.
        (0, false) => Kind::Invalid,
        (_, false) => Kind::Leaf(PhysAddr(desc & leaf_oa_mask(level))),
    }
}

/// Fast validity check matching [`kind`].
#[inline]
pub(crate) fn is_valid(desc: u64, level: u8) -> bool {
    match level {
        0 => desc & KIND_TABLE == KIND_TABLE,
        1 | 2 => desc & VALID != 0,
        LAST_LEVEL => desc & KIND_PAGE == KIND_PAGE,
        _ => false,
    }
}

/// Fast table check matching [`kind`].
#[inline]
pub(crate) fn is_table(desc: u64, level: u8) -> bool {
    level < LAST_LEVEL && desc & KIND_TABLE == KIND_TABLE
}

/// A table descriptor pointing at `next` (bits outside `[47:12]` of `next` are dropped).
/// Levels 0..=2 only; at any other level the result is the invalid descriptor.
#[inline]
pub(crate) fn table(next: PhysAddr, level: u8) -> u64 {
    if level >= LAST_LEVEL {
        return 0;
    }
    (next.0 & ADDR_MASK) | KIND_TABLE
}

/// The address and type bits of a leaf at `level` mapping `oa`, or `None` where no leaf may
/// sit. Output-address bits outside `[47:shift(level)]` are dropped: callers check
/// [`pt_core::Format::oa_fits`] and alignment first (pt-core's operations do).
#[inline]
pub(crate) fn leaf_base(oa: PhysAddr, level: u8) -> Option<u64> {
    if !leaf_allowed(level) {
        return None;
    }
    let kind = if level == LAST_LEVEL {
        KIND_PAGE
    } else {
        KIND_BLOCK
    };
    Some((oa.0 & leaf_oa_mask(level)) | kind)
}

/// [`Format::any_table`](pt_core::Format::any_table) for this format: a table descriptor is
/// `bits[1:0] == 0b11` above level 3, so one OR of `d & (d >> 1)` over the entries holds the
/// answer in bit 0 (branch-free, vectorised by the compiler).
#[inline]
pub(crate) fn any_table(entries: &[u64], level: u8) -> bool {
    level < LAST_LEVEL && entries.iter().fold(0, |acc, &d| acc | (d & (d >> 1))) & 1 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_page_reads_as_512_descriptors() {
        #[repr(align(8))]
        struct Page([u8; 4096]);
        let mut page = Page([0; 4096]);
        page.0[8..16].copy_from_slice(&0x4000_1003u64.to_le_bytes());
        let entries = Descriptor::table(&page.0).unwrap();
        assert_eq!(entries.len(), 512);
        assert_eq!(entries[1], Descriptor(0x4000_1003));
        assert_eq!(entries[0].raw(), 0);
        assert!(Descriptor::table(&page.0[1..9]).is_none(), "misaligned");
        assert!(
            Descriptor::table(&page.0[..12]).is_none(),
            "not a whole entry"
        );
    }

    #[test]
    fn contiguous_hint_is_bit_52() {
        assert_eq!(with_contiguous(0x403), 0x403 | (1 << 52));
        assert!(is_contiguous(1 << 52));
        assert!(!is_contiguous(0x403));
    }

    #[test]
    fn level_0_block_and_level_3_reserved_encoding_are_invalid() {
        assert_eq!(kind(0x80_0000_0001, 0), Kind::Invalid);
        assert_eq!(kind(0x4000_0001, 3), Kind::Invalid);
        assert!(!is_valid(0x80_0000_0001, 0));
        assert!(!is_valid(0x4000_0001, 3));
        assert!(!is_valid(0x4000_0003, 4));
        assert_eq!(kind(0x4000_0003, 4), Kind::Invalid);
    }

    #[test]
    fn no_table_or_leaf_where_the_architecture_has_none() {
        assert_eq!(table(PhysAddr(0x1000), 3), 0);
        assert_eq!(leaf_base(PhysAddr(0), 0), None);
        assert_eq!(leaf_base(PhysAddr(0), 4), None);
    }
}
