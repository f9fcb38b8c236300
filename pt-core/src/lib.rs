//! # pt-core
//!
//! The architecture-neutral core of the pt-arm page-table crates: address newtypes, the geometry
//! of a table tree, the descriptor [`Format`] trait that the ARMv7 and ARMv8 backends implement,
//! one generic [`Walker`] on which every operation is a visitor, the operations themselves
//! ([`ops`]: map, unmap, update, translate, split, free, clean, dump), and the seams to the
//! machine ([`PageAllocator`], [`Maintenance`]).
//!
//! Most hypervisors use it through `pt-hyp`, which picks the formats and does the bookkeeping
//! (VMIDs, memslots, dirty logging, guest aborts). Use pt-core directly to write a new
//! operation (a [`Visitor`]) or a new backend (a [`Format`] and a [`Maintenance`]).
//!
//! ```
//! use pt_core::ops::{self, MapRequest};
//! use pt_core::testkit::{fake::{Fake, FakeAttrs}, Arena, RecordingMaint};
//! use pt_core::{Entries, Entry, Format, Geometry, LeafFlow, PageAllocator, PhysAddr, Visitor, Walker};
//!
//! // A 32-bit tree of the test kit's fake format, its tables from an arena of fake pages.
//! let arena = Arena::standard();
//! let geom = Geometry::new(Fake::LIMITS, 32).unwrap();
//! let root = arena.alloc_contiguous_zeroed(geom.root_pages()).unwrap();
//! // SAFETY: `root` was just allocated from `arena` for this geometry.
//! let w = unsafe { Walker::<Fake, _>::new(geom, root, &arena) };
//!
//! // 2 MiB + 4 KiB at 0x4000_0000: one block and one page.
//! let req = MapRequest {
//!     ia: 0x4000_0000, size: 0x20_1000, oa: PhysAddr(0x1000_0000),
//!     attrs: FakeAttrs(1), leaf_level: 2, oa_bits: 40,
//! };
//! ops::map(&w, &req, &RecordingMaint).unwrap(); // barriers go through a `Maintenance`
//! assert_eq!(ops::translate(&w, 0x4020_0010).unwrap().oa, PhysAddr(0x1020_0010));
//!
//! // An operation of your own is a visitor: here, counting the leaves per level.
//! #[derive(Default)]
//! struct Count([usize; 4]);
//! impl<F: Format, P: PageAllocator> Visitor<F, P> for Count {
//!     type Error = core::convert::Infallible;
//!     fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Self::Error> {
//!         for k in 0..run.len() {
//!             if let Entry::Leaf { .. } = run.decode(k) {
//!                 self.0[usize::from(run.level())] += 1;
//!             }
//!         }
//!         Ok(LeafFlow::Done)
//!     }
//! }
//! let mut count = Count::default();
//! w.walk(0, geom.ia_size(), &mut count).unwrap();
//! assert_eq!(count.0, [0, 0, 1, 1]);
//!
//! // The dump is such a visitor too.
//! let mut text = String::new();
//! ops::dump(&w, &mut text).unwrap();
//! assert!(text.contains("0x40000000-0x40200000     2M L2 -> 0x000010000000 attrs=0x01"));
//! ```
//!
//! ## Soundness
//!
//! Safe code cannot make pt-core dereference an address nobody vouched for. The promises are
//! `unsafe`: an allocator is an `unsafe impl` of [`PageAllocator`] (it vouches for the
//! pages and `phys_to_virt`), guest memory an `unsafe impl` of [`GuestMemory`], a walker over
//! a root is built with the `unsafe fn` [`Walker::new`], and only [`Entries::set_raw`]
//! (`unsafe`) stores an arbitrary descriptor. These do not compile:
//!
//! ```compile_fail,E0133
//! use pt_core::testkit::{fake::Fake, Arena};
//! use pt_core::{Geometry, PhysAddr, Walker, Format};
//! let arena = Arena::standard();
//! let geom = Geometry::new(Fake::LIMITS, 32).unwrap();
//! // A made-up root: E0133, the constructor is unsafe.
//! let w = Walker::<Fake, _>::new(geom, PhysAddr(0xdead_0000), &arena);
//! ```
//!
//! ```compile_fail,E0200
//! use pt_core::{PageAllocator, PhysAddr};
//! struct Liar;
//! // E0200: implementing the allocator contract needs `unsafe impl`.
//! impl PageAllocator for Liar {
//!     fn alloc_zeroed(&self) -> Option<PhysAddr> { Some(PhysAddr(0x1000)) }
//!     fn alloc_contiguous_zeroed(&self, _: usize) -> Option<PhysAddr> { None }
//!     fn free(&self, _: PhysAddr, _: usize) {}
//!     fn phys_to_virt(&self, pa: PhysAddr) -> *mut u64 { pa.0 as usize as *mut u64 }
//! }
//! ```
//!
//! ```compile_fail,E0624
//! use pt_core::testkit::fake::Fake;
//! use pt_core::testkit::Arena;
//! use pt_core::{Entries, Format, PhysAddr};
//! // E0624: the raw store of a descriptor (a table pointing anywhere) is crate-private;
//! // outside pt-core it is the unsafe `set_raw`.
//! fn poke(e: &mut Entries<'_, Fake, Arena>) {
//!     e.set(0, Fake::encode_table(PhysAddr(0xdead_0000), 1));
//! }
//! ```
//!
//! ## Features
//!
//! - `testkit` (off by default; needs `std`, for host tests only): the module `testkit`, an arena
//!   allocator of fake physical pages, a per-thread recorder of every table write and
//!   TLB/cache/barrier operation, a break-before-make checker fed by it, a simulated TLB and a
//!   deliberately odd fake [`Format`]. Enable it in `[dev-dependencies]`, never in a
//!   hypervisor build.
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
pub use geometry::{
    checked_entry_size, checked_level_shift, entry_size, level_shift, Geometry, GeometryError,
    Limits, Stage,
};
pub use machine::{
    guest_dcache, Barrier, CacheOp, DescKind, GuestMemory, GuestMemoryError, Maintenance,
    PageAllocator, TlbOp, TraceEvent,
};
pub use table::Entries;
pub use tlb::{TlbBatch, TlbScope, TLB_BATCH_THRESHOLD};
pub use walk::{LeafFlow, TableFlow, Visitor, Walker};
