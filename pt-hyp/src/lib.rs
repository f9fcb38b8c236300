#![doc = include_str!("lib.md")]
#![no_std]
#![deny(missing_docs)]

pub mod arch;
mod bitmap;
pub mod cache;
pub mod dump;
pub mod error;
pub mod fault;
pub mod memslot;
pub mod stage2;

pub use arch::{Arch, Armv7, Armv8, RegisterError};
pub use cache::{PageCache, FAULT_PAGES};
pub use error::Error;
pub use fault::{
    AbortKind, AbortOutcome, Armv7AbortRegs, Armv8AbortRegs, DecodeError, FaultArch, FaultStatus,
    GuestAbort, InjectReason, Injection, MmioAccess,
};
pub use memslot::{Memslot, SlotDesc, SlotFlags, SlotId};
pub use pt_core::ops::DumpStats;
pub use pt_core::{
    GuestMemory, GuestMemoryError, Ipa, MemType, PageAllocator, Perms, PhysAddr, Stage1Attrs,
    Stage2Attrs, VirtAddr,
};
pub use stage2::{BlockSize, S2Translation, Stage2, MAX_SLOTS};
pub mod hyp;

/// The README's Rust blocks (the quick start), compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
