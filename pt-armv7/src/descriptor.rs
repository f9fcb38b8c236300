//! The ARMv7 LPAE long-descriptor layout shared by HYP stage 1 and stage 2 (4 KiB granule).
//!
//! ARMv7 ARM (DDI 0406C) B3.6.1-B3.6.2, "Long-descriptor translation table format":
//!
//! ```text
//!  63    59 58   55 54  53  52  51  40 39             12 11 10  9 8  7 6  5  4     2  1  0
//! | table  | soft  | XN |PXN|Con| RES0 |  output address | nG|AF| SH | AP  |NS| AttrIndx | T| V|   stage 1
//! | attrs  | (55 =  | XN | - |Con| RES0 |  output address | - |AF| SH |S2AP |  MemAttr    | T| V|   stage 2
//! |        | logged)|
//! ```
//!
//! * bit 0 — valid; bit 1 — at levels 1-2: 1 = table, 0 = block; at level 3: 1 = page,
//!   0 = reserved (decoded as invalid). Blocks exist at levels 1 (1 GiB) and 2 (2 MiB) only.
//! * A table descriptor holds only the next-level table address in bits `[39:12]`: this crate
//!   never sets the hierarchical table attributes `[63:59]`.
//! * The output address is 40 bits (`MAX_OA_BITS`); bits `[51:40]` are RES0 on ARMv7 and are
//!   masked away by both encode and decode. The walker checks [`Format::oa_fits`] before it
//!   encodes, so a wider OA is rejected with an error there, never silently truncated.
//!
//! [`Format::oa_fits`]: pt_core::Format::oa_fits

use pt_core::geometry::{entry_size, ENTRIES_PER_TABLE, LAST_LEVEL};
use static_assertions::const_assert_eq;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Valid bit (bit 0).
pub const VALID: u64 = 1 << 0;
/// Bit 1: table (levels 1-2) or page (level 3); clear for a block.
pub const TABLE_OR_PAGE: u64 = 1 << 1;
/// Shift of stage-1 AttrIndx `[4:2]` (HMAIR index).
pub const ATTR_INDX_SHIFT: u32 = 2;
/// Mask of stage-1 AttrIndx `[4:2]`.
pub const ATTR_INDX_MASK: u64 = 0b111 << ATTR_INDX_SHIFT;
/// Shift of stage-2 MemAttr `[5:2]`.
pub const S2_MEMATTR_SHIFT: u32 = 2;
/// Mask of stage-2 MemAttr `[5:2]`.
pub const S2_MEMATTR_MASK: u64 = 0b1111 << S2_MEMATTR_SHIFT;
/// Stage-1 AP\[1\] (bit 6). Must be 1 in every HYP mapping (Linux `L_PTE_HYP == L_PTE_USER`).
pub const AP1: u64 = 1 << 6;
/// Stage-1 AP\[2\] (bit 7): read-only.
pub const AP2_RO: u64 = 1 << 7;
/// Stage-2 S2AP\[0\] (bit 6): the guest may read.
pub const S2AP_R: u64 = 1 << 6;
/// Stage-2 S2AP\[1\] (bit 7): the guest may write.
pub const S2AP_W: u64 = 1 << 7;
/// Shift of the shareability field SH `[9:8]`.
pub const SH_SHIFT: u32 = 8;
/// Mask of SH `[9:8]`.
pub const SH_MASK: u64 = 0b11 << SH_SHIFT;
/// SH = 0b11, inner shareable. Written for every memory type: for Device and
/// Strongly-ordered memory the field is ignored by the architecture (such memory is always
/// treated as outer shareable), and one value for all types keeps decode free of special cases
/// (Linux arm64 does the same through `PROT_DEFAULT`).
pub const SH_INNER: u64 = 0b11 << SH_SHIFT;
/// Access flag (bit 10).
pub const AF: u64 = 1 << 10;
/// Stage-1 not-global (bit 11). HYP mappings have no ASID: always 0 here.
pub const NG: u64 = 1 << 11;
/// Output-address bits `[39:12]` (40-bit PA).
pub const OA_MASK: u64 = ((1u64 << OA_BITS) - 1) & !0xfff;
/// Width of the ARMv7 LPAE output address.
pub const OA_BITS: u8 = 40;
/// Contiguous hint (bit 52): this entry is one of 16 adjacent entries with the same
/// attributes and a contiguous, 16-entry-aligned output range.
pub const CONTIGUOUS: u64 = 1 << 52;
/// Stage-1 PXN (bit 53). RES0 in HYP mappings (HYP has a single XN): never set here.
pub const PXN: u64 = 1 << 53;
/// Execute-never (bit 54), stage 1 (HYP XN) and stage 2.
pub const XN: u64 = 1 << 54;
/// Software bit 55 (of the four software bits `[58:55]`): at stage 2, the mapping was made
/// read-only by dirty logging (`Stage2Attrs::logged`).
pub const S2_LOGGED: u64 = 1 << 55;
/// Hierarchical attribute bits of a table descriptor `[63:59]` (NSTable, APTable, XNTable,
/// PXNTable). Never set by this crate.
pub const TABLE_ATTRS_MASK: u64 = 0b11111 << 59;

// Layout facts: a table page holds 512 eight-byte descriptors, and no two fields overlap.
const_assert_eq!(ENTRIES_PER_TABLE * 8, 4096);
const_assert_eq!(core::mem::size_of::<Descriptor>(), 8);
const_assert_eq!(
    OA_MASK & (VALID | TABLE_OR_PAGE | ATTR_INDX_MASK | AP1 | AP2_RO | SH_MASK | AF | NG),
    0
);
const_assert_eq!(
    OA_MASK & (CONTIGUOUS | PXN | XN | S2_LOGGED | TABLE_ATTRS_MASK),
    0
);
const_assert_eq!(
    S2_MEMATTR_MASK & (S2AP_R | S2AP_W | SH_MASK | AF | VALID | TABLE_OR_PAGE),
    0
);
const_assert_eq!(ATTR_INDX_MASK & (AP1 | AP2_RO | VALID | TABLE_OR_PAGE), 0);
const_assert_eq!((CONTIGUOUS | PXN | XN | S2_LOGGED) & TABLE_ATTRS_MASK, 0);
const_assert_eq!(OA_MASK, 0x0000_00ff_ffff_f000);

/// One raw LPAE descriptor as it sits in table memory (little-endian, 8 bytes).
///
/// `#[repr(transparent)]` over `u64` with the zerocopy traits, so a table page read for a test
/// or a dump can be viewed as descriptors without `unsafe`: see [`Descriptor::table`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(transparent)]
pub struct Descriptor(pub u64);

impl Descriptor {
    /// Views a byte buffer (for example a 4 KiB table page copied out of memory) as
    /// descriptors. `None` when the length is not a multiple of 8 or the buffer is not 8-byte
    /// aligned.
    pub fn table(bytes: &[u8]) -> Option<&[Descriptor]> {
        <[Descriptor]>::ref_from_bytes(bytes).ok()
    }
}

/// The contiguous hint added to a leaf descriptor (the caller must keep the architectural
/// rule: all 16 aligned neighbours carry the same attributes and a contiguous output range).
/// Neither format's `decode` reports the hint; it is invisible to the walker.
#[inline]
pub const fn with_contiguous(desc: u64) -> u64 {
    desc | CONTIGUOUS
}

/// True when `desc` carries the contiguous hint.
#[inline]
pub const fn is_contiguous(desc: u64) -> bool {
    desc & CONTIGUOUS != 0
}

/// What the two low bits of a descriptor say, for either regime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Invalid,
    Table,
    Leaf,
}

/// Blocks exist at levels 1 and 2 only (ARMv7 LPAE has no level 0).
#[inline]
pub(crate) const fn block_allowed(level: u8) -> bool {
    level == 1 || level == 2
}

/// Decodes the descriptor type. Level 3 with bits `[1:0] == 0b01` is reserved and decodes
/// as invalid; a block at a level that has none decodes as invalid; so does anything at a
/// level beyond 3.
#[inline]
pub(crate) const fn kind(desc: u64, level: u8) -> Kind {
    if desc & VALID == 0 || level > LAST_LEVEL {
        Kind::Invalid
    } else if level == LAST_LEVEL {
        if desc & TABLE_OR_PAGE != 0 {
            Kind::Leaf
        } else {
            Kind::Invalid
        }
    } else if desc & TABLE_OR_PAGE != 0 {
        Kind::Table
    } else if block_allowed(level) {
        Kind::Leaf
    } else {
        Kind::Invalid
    }
}

/// Output-address bits of a leaf at `level`: bits `[39:shift(level)]` (the bits below the
/// block size are RES0 in a block descriptor).
#[inline]
pub(crate) const fn leaf_oa_mask(level: u8) -> u64 {
    let level = if level > LAST_LEVEL {
        LAST_LEVEL
    } else {
        level
    };
    OA_MASK & !(entry_size(level) - 1)
}

/// Bits `[1:0]` of a valid leaf at `level`: 0b11 page at level 3, 0b01 block above.
#[inline]
pub(crate) const fn leaf_type_bits(level: u8) -> u64 {
    if level >= LAST_LEVEL {
        VALID | TABLE_OR_PAGE
    } else {
        VALID
    }
}

/// The table descriptor pointing at `next` (4 KiB aligned; bits outside `[39:12]` dropped).
#[inline]
pub(crate) const fn table(next: u64) -> u64 {
    (next & OA_MASK) | TABLE_OR_PAGE | VALID
}

/// `Format::leaf_step`: the OA is plain bits, so the next entry's descriptor is this one plus
/// the entry size (levels with leaves only).
#[inline]
pub(crate) const fn leaf_step(level: u8) -> Option<u64> {
    if block_allowed(level) || level == LAST_LEVEL {
        Some(entry_size(level))
    } else {
        None
    }
}

/// [`Format::any_table`](pt_core::Format::any_table) for this format: a table descriptor is
/// `bits[1:0] == 0b11` above level 3, so one OR of `d & (d >> 1)` over the entries holds the
/// answer in bit 0 (branch-free, vectorised by the compiler).
#[inline]
pub(crate) fn any_table(entries: &[u64], level: u8) -> bool {
    level < LAST_LEVEL && entries.iter().fold(0, |acc, &d| acc | (d & (d >> 1))) & 1 != 0
}
