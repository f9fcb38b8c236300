//! The operations on a tree, each a [`Visitor`](crate::Visitor) on the one walker.
//!
//! | operation | KVM function it serves |
//! |---|---|
//! | [`map`] / [`map_from`] | `kvm_set_spte`, `stage2_set_pmd_huge`, `create_hyp_mappings`, `kvm_phys_addr_ioremap` |
//! | [`unmap`] / [`unmap_reporting`] | `unmap_stage2_range` (the sink gets each removed leaf for `kvm_flush_dcache_pte`), `stage2_dissolve_pmd` |
//! | [`update`] | `stage2_wp_range` with `stage2_wp_puds` / `stage2_wp_pmds` / `stage2_wp_ptes` (one level-generic visitor), `kvm_mmu_write_protect_pt_masked`, `handle_access_fault`, `kvm_age_hva` |
//! | [`translate`] | the walk `kvm_handle_guest_abort` and the MMU notifiers do |
//! | [`free_tree`] / [`free_tree_reporting`] | `kvm_free_stage2_pgd`, `free_hyp_pgds` |
//! | [`split_block`] | `stage2_split` (a live split keeping the mapping) |
//! | [`for_each_leaf`] | the walk of `stage2_flush_vm` (pt-hyp's `flush_dcache_vm` cleans each RAM leaf) |
//! | [`break_before_make`] | `kvm_set_pte` after `kvm_tlb_flush_vmid_ipa` |
//! | [`dump`] / [`dump_with`] | Linux's `ptdump_walk_pgd` (`arch/arm64/mm/ptdump.c`) |

mod bbm;
mod dump;
mod free;
mod leaves;
mod map;
mod query;
mod reserve;
mod split;
mod unmap;
mod update;

pub use bbm::break_before_make;
pub use dump::{dump, dump_with, DescribeAttrs, DumpStats};
pub use free::{free_tree, free_tree_reporting};
pub use leaves::{for_each_leaf, Leaf};
pub use map::{map, map_from, tables_needed, MapRequest};
pub use query::{translate, Translation};
pub use reserve::{Reserve, TableSource};
pub use split::split_block;
pub use unmap::{unmap, unmap_reporting, PartialBlock, UnmapSink};
pub use update::{update, update_attrs};

use crate::addr::RangeError;
use core::fmt;

/// Why an operation was refused. The tree is unchanged when an operation returns an error,
/// except where a variant says otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The range is empty, unaligned or wraps.
    Range(RangeError),
    /// The range reaches past the input-address space of the tree.
    InputTooLarge {
        /// End of the requested range.
        end: u64,
        /// Size of the input space.
        limit: u64,
    },
    /// The output range reaches past what the format (or the configured output size) holds.
    OutputTooLarge {
        /// End of the output range.
        end: u64,
        /// Output-address bits available.
        bits: u8,
    },
    /// The output address is not page aligned.
    UnalignedOutput {
        /// The output address.
        oa: u64,
    },
    /// A different valid mapping already covers `ia`.
    Conflict {
        /// First conflicting input address.
        ia: u64,
    },
    /// A block straddles the edge of the range at `ia` and the operation may not change it
    /// in part.
    PartialBlock {
        /// Input address of the block.
        ia: u64,
    },
    /// No mapping (or no block, for a split) at `ia`.
    NotMapped {
        /// The input address.
        ia: u64,
    },
    /// The page allocator is exhausted (the tree is unchanged and nothing leaked).
    OutOfMemory,
    /// The pre-filled table source holds fewer pages than the operation needs.
    CacheExhausted {
        /// Pages the operation needs.
        needed: usize,
        /// Pages the source holds.
        available: usize,
    },
}

impl From<RangeError> for Error {
    fn from(e: RangeError) -> Self {
        Error::Range(e)
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Range(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Range(e) => write!(f, "bad range: {e}"),
            Error::InputTooLarge { end, limit } => {
                write!(f, "range end {end:#x} beyond the input space ({limit:#x})")
            }
            Error::OutputTooLarge { end, bits } => {
                write!(f, "output end {end:#x} beyond {bits}-bit output addresses")
            }
            Error::UnalignedOutput { oa } => write!(f, "output address {oa:#x} not page aligned"),
            Error::Conflict { ia } => write!(f, "conflicting mapping at {ia:#x}"),
            Error::PartialBlock { ia } => write!(f, "block at {ia:#x} straddles the range"),
            Error::NotMapped { ia } => write!(f, "nothing mapped at {ia:#x}"),
            Error::OutOfMemory => f.write_str("out of table memory"),
            Error::CacheExhausted { needed, available } => {
                write!(f, "table cache holds {available} page(s), {needed} needed")
            }
        }
    }
}

/// Checks that `[start, start + size)` is a valid, page-aligned range inside an input space of
/// `ia_size` bytes, and returns its end.
pub fn check_input(start: u64, size: u64, ia_size: u64) -> Result<u64, Error> {
    let r = crate::AddrRange::new(crate::Ipa(start), size)?;
    let end = r.end().0;
    if end > ia_size {
        return Err(Error::InputTooLarge {
            end,
            limit: ia_size,
        });
    }
    Ok(end)
}
