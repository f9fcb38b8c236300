//! The errors of pt-hyp: one variant per cause.

use crate::arch::RegisterError;
use crate::memslot::SlotId;
use core::fmt;
use pt_core::ops::Error as OpError;
use pt_core::{GeometryError, GuestMemoryError, RangeError};

/// Why a stage-2 or hyp-mode operation was refused. Whenever one is returned the tables are as
/// they were before the call and no page leaked, except where a variant says otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The range is empty, unaligned or wraps around.
    Range(RangeError),
    /// The input-address size is not legal for this architecture and stage.
    Geometry(GeometryError),
    /// A register value could not be computed (VMID too large, bad output size, ...).
    Register(RegisterError),
    /// The input range reaches past the IPA (or VA) space of the tree.
    InputTooLarge {
        /// End of the range.
        end: u64,
        /// Size of the input space.
        limit: u64,
    },
    /// The output range reaches past the output-address size.
    OutputTooLarge {
        /// End of the output range.
        end: u64,
        /// Output-address bits.
        bits: u8,
    },
    /// The output address is not page aligned.
    UnalignedOutput {
        /// The output address.
        oa: u64,
    },
    /// A different mapping already exists at this input address.
    Conflict {
        /// First conflicting input address.
        ia: u64,
    },
    /// A block straddles the edge of the range and the operation cannot change part of it.
    PartialBlock {
        /// Input address of the block.
        ia: u64,
    },
    /// Nothing (or no block, for a split) is mapped at this input address.
    NotMapped {
        /// The input address.
        ia: u64,
    },
    /// The page allocator is exhausted.
    OutOfMemory,
    /// The top-up cache holds fewer pages than the operation needs; top it up and retry.
    CacheExhausted {
        /// Pages needed.
        needed: usize,
        /// Pages held.
        available: usize,
    },
    /// A [`PageCache`](crate::PageCache) was asked to hold more pages than its capacity
    /// (`PageCache::top_up` with a minimum above `N`).
    CacheTooSmall {
        /// Pages asked for.
        min: usize,
        /// The cache's capacity.
        capacity: usize,
    },
    /// A memslot would overlap an existing one (in IPA space).
    SlotOverlap {
        /// The existing slot.
        existing: SlotId,
    },
    /// No memslot has this id.
    NoSuchSlot(SlotId),
    /// The memslot table is full.
    TooManySlots,
    /// The slot is too large for its dirty bitmap (at most 16 bitmap pages, 2 GiB of guest
    /// memory) or for the output size.
    SlotTooLarge {
        /// Size of the slot in bytes.
        size: u64,
    },
    /// The operation needs dirty logging to be enabled on the slot.
    NotLogging(SlotId),
    /// The page index is outside the slot.
    OutsideSlot {
        /// The slot.
        slot: SlotId,
        /// Offending page index (or IPA).
        at: u64,
    },
    /// A stage-2 mapping of device memory with execute permission was asked for: device
    /// memory is never executable at stage 2 (KVM's `PAGE_S2_DEVICE` has XN).
    ExecutableDevice {
        /// First IPA of the request.
        ipa: u64,
    },
    /// The syndrome handed to the guest-abort handler is not a guest data or instruction
    /// abort (the caller's exit decoding sent the wrong exit here).
    NotGuestAbort {
        /// The exception class found, `syndrome[31:26]`.
        ec: u8,
    },
    /// The guest-memory port could not lend a virtual address for cache maintenance. When an
    /// unmap reports it, the range *was* unmapped (and its TLB entries invalidated), but the
    /// named memory and what follows it in that leaf were not cleaned; a new mapping that
    /// reports it was not made.
    GuestMemory(GuestMemoryError),
}

impl From<GuestMemoryError> for Error {
    fn from(e: GuestMemoryError) -> Self {
        Error::GuestMemory(e)
    }
}

impl From<OpError> for Error {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Range(r) => Error::Range(r),
            OpError::InputTooLarge { end, limit } => Error::InputTooLarge { end, limit },
            OpError::OutputTooLarge { end, bits } => Error::OutputTooLarge { end, bits },
            OpError::UnalignedOutput { oa } => Error::UnalignedOutput { oa },
            OpError::Conflict { ia } => Error::Conflict { ia },
            OpError::PartialBlock { ia } => Error::PartialBlock { ia },
            OpError::NotMapped { ia } => Error::NotMapped { ia },
            OpError::OutOfMemory => Error::OutOfMemory,
            OpError::CacheExhausted { needed, available } => {
                Error::CacheExhausted { needed, available }
            }
        }
    }
}

impl From<RangeError> for Error {
    fn from(e: RangeError) -> Self {
        Error::Range(e)
    }
}

impl From<GeometryError> for Error {
    fn from(e: GeometryError) -> Self {
        Error::Geometry(e)
    }
}

impl From<RegisterError> for Error {
    fn from(e: RegisterError) -> Self {
        Error::Register(e)
    }
}

impl core::error::Error for Error {}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
