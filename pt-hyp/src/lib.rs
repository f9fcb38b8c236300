#![doc = include_str!("lib.md")]
#![no_std]
#![deny(missing_docs)]

pub mod arch;
mod bitmap;
pub mod cache;
pub mod cpu;
pub mod dump;
pub mod error;
pub mod fault;
pub mod memslot;
pub mod stage2;

pub use arch::{Arch, Armv7, Armv8, RegisterError};
pub use cache::{PageCache, DEFAULT_CAPACITY, FAULT_PAGES};
pub use cpu::CpuCaps;
pub use error::Error;
pub use fault::{
    AbortKind, AbortOutcome, Armv7AbortRegs, Armv8AbortRegs, DecodeError, FaultArch, FaultStatus,
    GuestAbort, InjectReason, Injection, MmioAccess,
};
pub use memslot::{Memslot, SlotDesc, SlotFlags, SlotId};
pub use pt_core::ops::{DumpStats, Leaf, Translation};
pub use pt_core::{
    AddrRange, Address, CacheOp, DescKind, Format, Geometry, GeometryError, GuestMemory,
    GuestMemoryError, Ipa, Limits, Maintenance, MemType, PageAllocator, Perms, PhysAddr,
    RangeError, Stage1Attrs, Stage2Attrs, TraceEvent, VirtAddr, BLOCK_1G, BLOCK_2M, PAGE_SIZE,
};
pub use stage2::{BlockSize, S2Translation, Stage2, Stage2Config, MAX_LOGGED_SLOT, MAX_SLOTS};

/// The crates pt-hyp is built on, re-exported so that every type in pt-hyp's signatures is
/// reachable from pt-hyp at the version it uses: no direct dependency (with a matching
/// version) is needed. The items a hypervisor meets most are also re-exported at the crate
/// root above ([`Geometry`], [`RangeError`], [`Translation`], [`Address`], ...).
pub use pt_armv7;
/// The ARMv8 backend (see [`pt_armv7`]).
pub use pt_armv8;
/// The architecture-neutral core (see [`pt_armv7`]).
pub use pt_core;
pub mod hyp;

/// The README's Rust blocks (the quick start), compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
