//! Why a hyp-mode table operation was refused.

use core::fmt;
use pt_core::ops;
use pt_core::{GeometryError, PhysAddr, RangeError, VirtAddr};

/// Why a [`HypTables`](super::HypTables) operation was refused: one variant per cause, never a
/// panic. Unless a method says otherwise, the tables are unchanged when it returns an error.
///
/// `Display` writes a message with addresses in hex; `source` gives the wrapped error of
/// `Geometry`, `BadIoArea` and `Range`. New causes may be added in a minor release: keep a
/// wildcard arm when matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HypError {
    /// The VA size is not one the architecture's hyp regime allows.
    Geometry(GeometryError),
    /// The physical-address size is wider than the descriptors hold (or below 32 bits).
    UnsupportedPaBits {
        /// The requested size.
        bits: u8,
        /// The widest size the format holds.
        max: u8,
    },
    /// The private I/O area is empty, unaligned or wraps.
    BadIoArea(RangeError),
    /// The private I/O area reaches past the hyp VA space.
    IoAreaOutsideVa {
        /// End of the I/O area.
        end: u64,
        /// Size of the VA space.
        limit: u64,
    },
    /// A range is empty, not page aligned, or wraps.
    Range(RangeError),
    /// A hyp VA range reaches past the VA space (`va_bits`).
    OutsideVa {
        /// End of the range.
        end: u64,
        /// Size of the VA space.
        limit: u64,
    },
    /// A physical range reaches past the configured physical-address size.
    OutputTooLarge {
        /// End of the physical range.
        end: u64,
        /// Physical-address bits available.
        bits: u8,
    },
    /// The physical address is not page aligned.
    UnalignedPhys {
        /// The address.
        pa: PhysAddr,
    },
    /// The caller's kernel-VA to hyp-VA conversion has no answer for this kernel VA.
    NotConvertible {
        /// The kernel virtual address.
        kva: u64,
    },
    /// Writable and executable together, without the explicit opt-in
    /// ([`map_range_allow_wx`](super::HypTables::map_range_allow_wx)).
    WriteExec {
        /// First VA of the refused range.
        va: VirtAddr,
    },
    /// The range touches the private I/O area, whose VAs only
    /// [`create_io_mappings`](super::HypTables::create_io_mappings) and
    /// [`create_exec_mappings`](super::HypTables::create_exec_mappings) hand out.
    InIoArea {
        /// First VA of the range inside the I/O area.
        va: VirtAddr,
    },
    /// The I/O area has too little room left for the request.
    IoAreaFull {
        /// Bytes requested.
        size: u64,
        /// Bytes left after the last allocation.
        available: u64,
    },
    /// The identity map and another mapping want the same VA with different targets or
    /// attributes (either order: an idmap over a live hyp mapping, or a hyp mapping over the
    /// idmap). Identical mappings are accepted.
    IdmapCollision {
        /// First colliding VA.
        va: VirtAddr,
    },
    /// An identity map is already in place for another range (there is one idmap, as in
    /// KVM's `hyp_idmap_start..hyp_idmap_end`).
    IdmapAlreadyMapped {
        /// Start of the existing idmap.
        start: PhysAddr,
        /// Its size.
        size: u64,
    },
    /// A different valid mapping already covers `va` (remapping a live range differently).
    Conflict {
        /// First conflicting VA.
        va: VirtAddr,
    },
    /// A block straddles the edge of the range to unmap.
    PartialBlock {
        /// First VA of the block.
        va: VirtAddr,
    },
    /// The page allocator is exhausted.
    OutOfMemory,
}

impl HypError {
    /// The error of a pt-core operation, with the VA it names.
    pub(super) fn from_op(e: ops::Error) -> Self {
        match e {
            ops::Error::Range(r) => HypError::Range(r),
            ops::Error::InputTooLarge { end, limit } => HypError::OutsideVa { end, limit },
            ops::Error::OutputTooLarge { end, bits } => HypError::OutputTooLarge { end, bits },
            ops::Error::UnalignedOutput { oa } => HypError::UnalignedPhys { pa: PhysAddr(oa) },
            ops::Error::Conflict { ia } => HypError::Conflict { va: VirtAddr(ia) },
            ops::Error::PartialBlock { ia } => HypError::PartialBlock { va: VirtAddr(ia) },
            // Neither arises from the operations the hyp manager calls (no split, maps take
            // tables from the allocator); the closest cause is kept.
            ops::Error::NotMapped { ia } => HypError::Conflict { va: VirtAddr(ia) },
            ops::Error::OutOfMemory | ops::Error::CacheExhausted { .. } => HypError::OutOfMemory,
        }
    }
}

impl From<RangeError> for HypError {
    fn from(e: RangeError) -> Self {
        HypError::Range(e)
    }
}

impl core::error::Error for HypError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            HypError::Geometry(e) => Some(e),
            HypError::BadIoArea(e) | HypError::Range(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for HypError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HypError::Geometry(e) => write!(f, "hyp VA size: {e}"),
            HypError::UnsupportedPaBits { bits, max } => {
                write!(f, "{bits}-bit physical addresses unsupported (32..={max})")
            }
            HypError::BadIoArea(e) => write!(f, "bad I/O area: {e}"),
            HypError::IoAreaOutsideVa { end, limit } => {
                write!(
                    f,
                    "I/O area end {end:#x} beyond the hyp VA space ({limit:#x})"
                )
            }
            HypError::Range(e) => write!(f, "bad range: {e}"),
            HypError::OutsideVa { end, limit } => {
                write!(f, "range end {end:#x} beyond the hyp VA space ({limit:#x})")
            }
            HypError::OutputTooLarge { end, bits } => {
                write!(
                    f,
                    "physical end {end:#x} beyond {bits}-bit physical addresses"
                )
            }
            HypError::UnalignedPhys { pa } => {
                write!(f, "physical address {:#x} not page aligned", pa.0)
            }
            HypError::NotConvertible { kva } => {
                write!(f, "kernel VA {kva:#x} has no hyp VA or PA")
            }
            HypError::WriteExec { va } => {
                write!(
                    f,
                    "writable and executable mapping at {:#x} not opted in",
                    va.0
                )
            }
            HypError::InIoArea { va } => write!(f, "VA {:#x} lies in the private I/O area", va.0),
            HypError::IoAreaFull { size, available } => {
                write!(
                    f,
                    "I/O area has {available:#x} bytes left, {size:#x} requested"
                )
            }
            HypError::IdmapCollision { va } => {
                write!(
                    f,
                    "identity map collides with another mapping at {:#x}",
                    va.0
                )
            }
            HypError::IdmapAlreadyMapped { start, size } => {
                write!(f, "identity map already set at {:#x} (+{size:#x})", start.0)
            }
            HypError::Conflict { va } => write!(f, "conflicting mapping at {:#x}", va.0),
            HypError::PartialBlock { va } => write!(f, "block at {:#x} straddles the range", va.0),
            HypError::OutOfMemory => f.write_str("out of table memory"),
        }
    }
}
