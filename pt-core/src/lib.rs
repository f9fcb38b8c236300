//! # pt-core
//!
//! The architecture-neutral core of the pt-arm page-table crates: address newtypes, the geometry
//! of a table tree, the descriptor [`Format`] trait that the ARMv7 and ARMv8 backends implement,
//! one generic [`Walker`] on which every operation is a visitor, the operations themselves
//! ([`ops`]), and the seams to the machine ([`PageAllocator`], [`Maintenance`]).
//!
//! With the `testkit` feature (host only) it also provides the test kit: an arena allocator of
//! fake physical pages, a recorder of every TLB/cache/barrier operation and a
//! break-before-make checker.
#![no_std]
#![deny(missing_docs)]

#[cfg(feature = "testkit")]
extern crate std;

pub mod addr;
pub mod attrs;
pub mod format;
pub mod geometry;
pub mod machine;
pub mod ops;
pub mod table;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod tlb;
pub mod trace;
pub mod walk;

pub use addr::{
    AddrRange, Address, Ipa, PhysAddr, RangeError, VirtAddr, BLOCK_1G, BLOCK_2M, PAGE_SHIFT,
    PAGE_SIZE,
};
pub use attrs::{MemType, Perms, Stage1Attrs, Stage2Attrs};
pub use format::{Entry, Format};
pub use geometry::{entry_size, level_shift, Geometry, GeometryError, Limits, Stage};
pub use machine::{Barrier, CacheOp, DescKind, Maintenance, PageAllocator, TlbOp, TraceEvent};
pub use table::Entries;
pub use tlb::{TlbBatch, TlbScope, TLB_BATCH_THRESHOLD};
pub use walk::{LeafFlow, TableFlow, Visitor, Walker};
