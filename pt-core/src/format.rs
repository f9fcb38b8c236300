//! The descriptor format a backend implements.
//!
//! pt-core knows no bit layout. A [`Format`] tells the walker how a 64-bit descriptor at a given
//! level decodes (invalid, next-level table, or leaf with output address and attributes) and how
//! to encode one. ARMv7 LPAE and ARMv8 implement it for hyp stage 1 and for stage 2; pt-core's
//! own tests use a deliberately odd fake format whose encoding differs per level.

use crate::addr::PhysAddr;
use crate::geometry::Limits;
use core::fmt::Debug;

/// A decoded descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry<A> {
    /// Faults on access.
    Invalid,
    /// Points at the next-level table.
    Table(PhysAddr),
    /// Maps `entry_size(level)` bytes at `oa` (a block above level 3, a page at level 3).
    Leaf {
        /// Output address.
        oa: PhysAddr,
        /// Attributes in the regime's own type.
        attrs: A,
    },
}

/// A translation-table descriptor format for one regime (hyp stage 1 or stage 2) of one
/// architecture.
///
/// Every method is a pure function of its arguments. Implementations must keep three laws,
/// which the walker relies on and the backends' tests check:
/// `decode(encode_table(pa, l), l) == Table(pa)`, `decode(encode_leaf(oa, a, l), l) == Leaf{oa, a}`
/// and `decode(INVALID, l) == Invalid`.
pub trait Format: 'static {
    /// The attribute type of this regime.
    type Attrs: Copy + Eq + Debug;

    /// Short name for messages and dumps, e.g. `"armv8-s2"`.
    const NAME: &'static str;

    /// Stage, input sizes and levels the architecture allows for this regime.
    const LIMITS: Limits;

    /// Widest output address the descriptor can hold, in bits.
    const MAX_OA_BITS: u8;

    /// The invalid descriptor written when an entry is cleared.
    const INVALID: u64 = 0;

    /// Whether an entry at `level` may be a block (level 3 entries are pages, always leaves).
    fn block_allowed(level: u8) -> bool;

    /// Decodes `desc` found at `level`.
    fn decode(desc: u64, level: u8) -> Entry<Self::Attrs>;

    /// Fast check: does `desc` at `level` point at a next-level table?
    fn is_table(desc: u64, level: u8) -> bool;

    /// Fast check over entries of one table at `level`: does any of them point at a
    /// next-level table? Freeing a subtree asks it for a chunk of entries at a time, and reads
    /// a chunk entry by entry only when the answer is yes. The default asks
    /// [`is_table`](Self::is_table) for each entry; a format whose table check is a bit test
    /// overrides it with a branch-free reduction over the chunk.
    fn any_table(entries: &[u64], level: u8) -> bool {
        entries.iter().any(|&d| Self::is_table(d, level))
    }

    /// Fast check: is `desc` at `level` valid (table or leaf)?
    fn is_valid(desc: u64, level: u8) -> bool;

    /// A table descriptor at `level` pointing at the table at `next`.
    fn encode_table(next: PhysAddr, level: u8) -> u64;

    /// A leaf descriptor at `level` (block or page) mapping `oa` with `attrs`.
    fn encode_leaf(oa: PhysAddr, attrs: Self::Attrs, level: u8) -> u64;

    /// When the output address sits in the descriptor as plain bits, the amount to add to a
    /// leaf descriptor of `level` to get the descriptor of the next entry (same attributes,
    /// output address one entry further). This lets the map visitor fill a run of entries with
    /// one add per entry. `None` makes it encode each entry.
    fn leaf_step(level: u8) -> Option<u64> {
        let _ = level;
        None
    }

    /// True when `oa` fits in the output-address bits of this format.
    fn oa_fits(oa: PhysAddr, size: u64) -> bool {
        match (
            oa.0.checked_add(size),
            1u64.checked_shl(u32::from(Self::MAX_OA_BITS)),
        ) {
            (Some(end), Some(limit)) => end <= limit,
            // A 64-bit (or wider) output size holds every end that does not wrap.
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}
