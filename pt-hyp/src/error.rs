//! The errors of pt-hyp: one variant per cause.

use crate::arch::RegisterError;
use crate::memslot::SlotId;
use core::fmt;
use pt_core::ops::Error as OpError;
use pt_core::{GeometryError, GuestMemoryError, RangeError};

/// Why a stage-2 or hyp-mode operation was refused. Whenever one is returned the tables are as
/// they were before the call and no page leaked, except where a variant says otherwise.
///
/// `Display` writes a message with addresses in hex; [`source`](core::error::Error::source)
/// gives the wrapped error of [`Range`](Self::Range), [`Geometry`](Self::Geometry),
/// [`Register`](Self::Register) and [`GuestMemory`](Self::GuestMemory). New causes may be
/// added in a minor release (`#[non_exhaustive]`): keep a wildcard arm when matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The range is empty, unaligned or wraps around.
    Range(RangeError),
    /// The input-address size is not legal for this architecture and stage.
    Geometry(GeometryError),
    /// A register value could not be computed (VMID too large, bad output size, ...).
    Register(RegisterError),
    /// VMID 0 was asked for: it stays the host's unless
    /// [`Stage2Config::with_vmid0`](crate::Stage2Config::with_vmid0) insists.
    HostVmid,
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
    /// The slot is too large for a dirty bitmap: dirty logging covers at most
    /// [`MAX_LOGGED_SLOT`](crate::MAX_LOGGED_SLOT) bytes (2 GiB: 16 contiguous bitmap pages of
    /// one bit per 4 KiB page). Larger slots work without logging; split guest RAM into
    /// several slots to log it.
    SlotTooLarge {
        /// Size of the slot in bytes.
        size: u64,
    },
    /// The operation needs dirty logging to be enabled on the slot.
    NotLogging(SlotId),
    /// The buffer given to [`Stage2::get_dirty_log`](crate::Stage2::get_dirty_log) holds
    /// fewer words than the slot's bitmap (one `u64` per 64 pages); nothing was read or
    /// cleared.
    DirtyLogBufferTooSmall {
        /// The slot.
        slot: SlotId,
        /// Words in the buffer.
        words: usize,
        /// Words the slot's log needs, `ceil(pages / 64)`.
        needed: usize,
    },
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

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Range(e) => Some(e),
            Error::Geometry(e) => Some(e),
            Error::Register(e) => Some(e),
            Error::GuestMemory(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    /// A message; addresses in hex. A wrapped error is written after a colon (and is also
    /// the [`source`](core::error::Error::source)).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Range(e) => write!(f, "bad range: {e}"),
            Error::Geometry(e) => write!(f, "bad IPA size: {e}"),
            Error::Register(e) => write!(f, "register value refused: {e}"),
            Error::HostVmid => f.write_str("VMID 0 is the host's"),
            Error::InputTooLarge { end, limit } => {
                write!(f, "range end {end:#x} beyond the input space ({limit:#x})")
            }
            Error::OutputTooLarge { end, bits } => {
                write!(
                    f,
                    "output end {end:#x} beyond {bits}-bit physical addresses"
                )
            }
            Error::UnalignedOutput { oa } => {
                write!(f, "output address {oa:#x} not page aligned")
            }
            Error::Conflict { ia } => write!(f, "a different mapping exists at {ia:#x}"),
            Error::PartialBlock { ia } => {
                write!(f, "block at {ia:#x} straddles the edge of the range")
            }
            Error::NotMapped { ia } => write!(f, "nothing mapped at {ia:#x}"),
            Error::OutOfMemory => f.write_str("page allocator exhausted"),
            Error::CacheExhausted { needed, available } => write!(
                f,
                "page cache holds {available} page(s), {needed} needed: top it up and retry"
            ),
            Error::CacheTooSmall { min, capacity } => write!(
                f,
                "page cache of capacity {capacity} asked to hold {min} pages"
            ),
            Error::SlotOverlap { existing } => {
                write!(f, "memslot overlaps memslot {}", existing.0)
            }
            Error::NoSuchSlot(id) => write!(f, "no memslot {}", id.0),
            Error::TooManySlots => write!(f, "memslot table full ({} slots)", crate::MAX_SLOTS),
            Error::SlotTooLarge { size } => write!(
                f,
                "memslot of {size:#x} bytes too large for a dirty log (at most {:#x})",
                crate::MAX_LOGGED_SLOT
            ),
            Error::NotLogging(id) => write!(f, "memslot {} is not dirty logging", id.0),
            Error::DirtyLogBufferTooSmall {
                slot,
                words,
                needed,
            } => write!(
                f,
                "dirty-log buffer of {words} words too small for memslot {} ({needed} needed)",
                slot.0
            ),
            Error::OutsideSlot { slot, at } => {
                write!(f, "page {at:#x} outside memslot {}", slot.0)
            }
            Error::ExecutableDevice { ipa } => {
                write!(f, "device mapping at {ipa:#x} with execute permission")
            }
            Error::NotGuestAbort { ec } => {
                write!(f, "exception class {ec:#04x} is not a guest abort")
            }
            Error::GuestMemory(e) => write!(f, "guest memory unreachable: {e}"),
        }
    }
}
