//! The walker descends once per table, never once per page: counted through the allocator's
//! `phys_to_virt` (called once each time the walker enters a table) and through a counting
//! visitor.

mod common;

use common::{new_root, req};
use pt_core::ops::{map, map_from, unmap, PartialBlock, TableSource};
use pt_core::testkit::fake::Fake;
use pt_core::testkit::Arena;
use pt_core::{
    Entries, Format, Geometry, LeafFlow, PageAllocator, PhysAddr, TableFlow, TlbBatch, TlbScope,
    Visitor, Walker,
};
use std::cell::Cell;
use std::convert::Infallible;

const GIB: u64 = 1 << 30;

/// An allocator around the arena that counts `phys_to_virt` calls (untraced, so that a 1 GiB
/// map does not record a quarter million writes).
struct Counting<'a> {
    arena: &'a Arena,
    p2v: Cell<usize>,
}

impl<'a> Counting<'a> {
    fn new(arena: &'a Arena) -> Self {
        Self {
            arena,
            p2v: Cell::new(0),
        }
    }
    fn take_count(&self) -> usize {
        self.p2v.replace(0)
    }
}

// SAFETY: forwards to the arena, whose pages and addresses it hands on unchanged.
unsafe impl PageAllocator for Counting<'_> {
    fn alloc_zeroed(&self) -> Option<PhysAddr> {
        self.arena.alloc_zeroed()
    }
    fn alloc_contiguous_zeroed(&self, pages: usize) -> Option<PhysAddr> {
        self.arena.alloc_contiguous_zeroed(pages)
    }
    fn free(&self, pa: PhysAddr, pages: usize) {
        self.arena.free(pa, pages)
    }
    fn phys_to_virt(&self, pa: PhysAddr) -> *mut u64 {
        self.p2v.set(self.p2v.get() + 1);
        self.arena.phys_to_virt(pa)
    }
}

/// A table source that hands out pre-allocated pages without touching them.
struct Pages(Vec<PhysAddr>);

impl TableSource for Pages {
    fn available(&self) -> usize {
        self.0.len()
    }
    fn take(&mut self) -> Option<PhysAddr> {
        self.0.pop()
    }
}

fn pages(arena: &Arena, n: usize) -> Pages {
    Pages((0..n).map(|_| arena.alloc_zeroed().unwrap()).collect())
}

#[derive(Default)]
struct Count {
    leaf_calls: usize,
    leaf_entries: usize,
    longest_run: usize,
    pre: usize,
    post: usize,
}

impl<F: Format, P: PageAllocator> Visitor<F, P> for Count {
    type Error = Infallible;
    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Infallible> {
        self.leaf_calls += 1;
        self.leaf_entries += run.len();
        self.longest_run = self.longest_run.max(run.len());
        Ok(LeafFlow::Done)
    }
    fn table_pre(&mut self, _: &mut Entries<'_, F, P>) -> Result<TableFlow, Infallible> {
        self.pre += 1;
        Ok(TableFlow::Descend)
    }
    fn table_post(&mut self, _: &mut Entries<'_, F, P>) -> Result<(), Infallible> {
        self.post += 1;
        Ok(())
    }
}

fn tree39<'a>(c: &'a Counting<'a>) -> Walker<'a, Fake, Counting<'a>> {
    let g = Geometry::new(Fake::LIMITS, 39).unwrap();
    // SAFETY: the root was just allocated from this allocator for this geometry.
    unsafe { Walker::new(g, new_root(c, g), c) }
}

#[test]
fn mapping_1gib_of_pages_enters_each_table_once() {
    let arena = Arena::standard();
    let c = Counting::new(&arena);
    let w = tree39(&c);
    let mut src = pages(&arena, 513);
    c.take_count();
    map_from(
        &w,
        &req(0, GIB, 0x40_0000_0000, 1, 3),
        &mut src,
        &common::Rec::<true>,
    )
    .unwrap();
    // Plan walk: the root only (its entry 0 is invalid: 513 tables counted, none entered).
    // Apply walk: the root, the new level-2 table and the 512 new level-3 tables.
    assert_eq!(c.take_count(), 1 + (1 + 1 + 512));
    assert_eq!(src.available(), 0);
}

#[test]
fn mapping_2gib_of_pages_costs_twice_the_tables_not_the_pages() {
    let arena = Arena::standard();
    let c = Counting::new(&arena);
    let w = tree39(&c);
    let mut src = pages(&arena, 2 + 1024);
    c.take_count();
    map_from(
        &w,
        &req(0, 2 * GIB, 0x40_0000_0000, 1, 3),
        &mut src,
        &common::Rec::<true>,
    )
    .unwrap();
    assert_eq!(c.take_count(), 1 + (1 + 2 + 1024));
}

#[test]
fn map_with_its_own_reserve_adds_two_touches_per_reserved_page() {
    let arena = Arena::standard();
    let c = Counting::new(&arena);
    let w = tree39(&c);
    c.take_count();
    map(&w, &req(0, GIB, 0x40_0000_0000, 1, 3), &common::Rec::<true>).unwrap();
    // Plan 1; reserving 513 pages links each through its first word (513); the apply walk
    // enters 514 tables and unlinks each reserved page as it takes it (513).
    assert_eq!(c.take_count(), 1 + 513 + 514 + 513);
    assert_eq!(arena.live_pages(), 1 + 513);
}

#[test]
fn mapping_512_pages_into_existing_tables_enters_three_tables() {
    let arena = Arena::standard();
    let c = Counting::new(&arena);
    let w = tree39(&c);
    map(&w, &req(0, 4096, 0x1000, 1, 3), &common::Rec::<true>).unwrap();
    let mut src = pages(&arena, 1);
    c.take_count();
    // [2 MiB, 4 MiB): L1 entry 0 and its L2 table exist, one L3 table is new.
    map_from(
        &w,
        &req(1 << 21, 1 << 21, 0x20_0000, 1, 3),
        &mut src,
        &common::Rec::<true>,
    )
    .unwrap();
    assert_eq!(c.take_count(), 2 + 3);
}

#[test]
fn walking_a_fully_mapped_gib_calls_the_leaf_visitor_once_per_table() {
    let arena = Arena::standard();
    let c = Counting::new(&arena);
    let w = tree39(&c);
    map(&w, &req(0, GIB, 0x40_0000_0000, 1, 3), &common::Rec::<true>).unwrap();
    c.take_count();
    let mut v = Count::default();
    let Ok(()) = w.walk(0, GIB, &mut v);
    assert_eq!(v.leaf_calls, 512);
    assert_eq!(v.leaf_entries, 512 * 512);
    assert_eq!(v.longest_run, 512);
    assert_eq!((v.pre, v.post), (1 + 512, 1 + 512));
    assert_eq!(c.take_count(), 1 + 1 + 512);
}

#[test]
fn unmapping_a_whole_gib_frees_the_subtree_per_table() {
    let arena = Arena::standard();
    let c = Counting::new(&arena);
    let w = tree39(&c);
    map(&w, &req(0, GIB, 0x40_0000_0000, 1, 3), &common::Rec::<true>).unwrap();
    c.take_count();
    let m = common::Rec::<true>;
    let mut tlb = TlbBatch::new(
        &m,
        TlbScope::Stage2 {
            vttbr: common::VTTBR,
        },
    );
    unmap(&w, 0, GIB, PartialBlock::Refuse, &mut tlb).unwrap();
    // The Refuse check enters the root only (the L1 entry is covered whole, so no partial
    // block can hide below it); the unmap walk enters the root only (L1 entry 0 is cut in one
    // store); freeing the detached subtree enters the L2 table only: level-3 tables hold no
    // tables and are freed from their parent entries without being read.
    assert_eq!(c.take_count(), 1 + 1 + 1);
    assert_eq!(arena.live_pages(), 1);
}
