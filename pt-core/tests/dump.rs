//! The table dump (`pt_core::ops::dump`): exact output on the odd fake format, so the
//! coalescing rules (same level, same attributes, contiguous input and output) are pinned
//! independently of the LPAE layout.

mod common;

use common::{ByIpa, VTTBR};
use pt_core::ops::{self, DumpStats, MapRequest};
use pt_core::testkit::fake::{Fake, FakeAttrs};
use pt_core::testkit::Arena;
use pt_core::{Format, Geometry, PageAllocator, PhysAddr, TlbBatch, TlbScope, Walker};

const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;

fn tree(arena: &Arena) -> Walker<'_, Fake, Arena> {
    let g = Geometry::new(Fake::LIMITS, 32).unwrap();
    let root = arena.alloc_contiguous_zeroed(g.root_pages()).unwrap();
    // SAFETY: the root was just allocated from this allocator for this geometry.
    unsafe { Walker::new(g, root, arena) }
}

fn map(w: &Walker<'_, Fake, Arena>, ia: u64, size: u64, oa: u64, attrs: u8, leaf_level: u8) {
    let req = MapRequest {
        ia,
        size,
        oa: PhysAddr(oa),
        attrs: FakeAttrs(attrs),
        leaf_level,
        oa_bits: 48,
    };
    ops::map(w, &req, &common::Rec::<true>).unwrap();
}

fn free(w: &Walker<'_, Fake, Arena>) {
    ops::free_tree(
        w,
        &mut TlbBatch::new(&ByIpa {}, TlbScope::Stage2 { vttbr: VTTBR }),
    );
}

fn dump(w: &Walker<'_, Fake, Arena>) -> (String, DumpStats) {
    let mut out = String::new();
    let stats = ops::dump(w, &mut out).unwrap();
    (out, stats)
}

#[test]
fn empty_tree_prints_header_and_root_only() {
    let arena = Arena::new(PhysAddr(0x1000_0000), 64);
    let w = tree(&arena);
    let (out, stats) = dump(&w);
    assert_eq!(
        out,
        "---[ fake: 32-bit input, start level 2, root 0x10000000 (4 pages) ]---\n\
         ---[ 0 leaves in 0 ranges, 0 mapped ]---\n\
         ---[ table pages: L2 4 (root), L3 0; total 4 ]---\n"
    );
    assert_eq!(stats.table_pages(), 4);
    free(&w);
}

#[test]
fn leaves_merge_only_with_same_level_attrs_and_contiguous_addresses() {
    let arena = Arena::new(PhysAddr(0x1000_0000), 64);
    let w = tree(&arena);
    // A 2 MiB block and three pages after it, contiguous in both spaces: two lines (levels).
    map(&w, 0x4000_0000, M2 + 3 * K4, 0x8000_0000, 1, 2);
    // Next page, same attributes, output elsewhere: a new line.
    map(&w, 0x4020_3000, K4, 0x9000_0000, 1, 3);
    // Next page, output contiguous, other attributes: a new line.
    map(&w, 0x4020_4000, K4, 0x9000_1000, 2, 3);
    // A hole in the input, output contiguous, same attributes: a new line.
    map(&w, 0x4020_6000, K4, 0x9000_2000, 2, 3);
    // Two pages across two level-3 tables: one line.
    map(&w, 0x405f_f000, 2 * K4, 0xa000_0000, 3, 3);
    let (out, stats) = dump(&w);
    assert_eq!(
        out,
        "---[ fake: 32-bit input, start level 2, root 0x10000000 (4 pages) ]---\n\
         0x40000000-0x40200000     2M L2 -> 0x000080000000 attrs=0x01\n\
         0x40200000-0x40203000    12K L3 -> 0x000080200000 attrs=0x01\n\
         0x40203000-0x40204000     4K L3 -> 0x000090000000 attrs=0x01\n\
         0x40204000-0x40205000     4K L3 -> 0x000090001000 attrs=0x02\n\
         0x40206000-0x40207000     4K L3 -> 0x000090002000 attrs=0x02\n\
         0x405ff000-0x40601000     8K L3 -> 0x0000a0000000 attrs=0x03\n\
         ---[ 9 leaves in 6 ranges, 2080K mapped ]---\n\
         ---[ table pages: L2 4 (root), L3 3; total 7 ]---\n"
    );
    assert_eq!(
        stats,
        DumpStats {
            lines: 6,
            leaves: 9,
            bytes: M2 + 8 * K4,
            tables: [0, 0, 4, 3],
        }
    );
    assert_eq!(stats.table_pages(), arena.live_pages());
    free(&w);
    assert_eq!(arena.live_pages(), 0);
}

#[test]
fn dump_with_describes_attributes_through_the_closure() {
    let arena = Arena::new(PhysAddr(0x1000_0000), 64);
    let w = tree(&arena);
    map(&w, 0xc000_0000, 4 * M2, 0x4000_0000, 7, 2);
    let mut out = String::new();
    let mut describe = |a: &FakeAttrs, o: &mut dyn core::fmt::Write| write!(o, "<{}>", a.0);
    let stats = ops::dump_with(&w, &mut out, &mut describe).unwrap();
    assert_eq!(
        out.lines().nth(1),
        Some("0xc0000000-0xc0800000     8M L2 -> 0x000040000000 <7>")
    );
    assert_eq!((stats.lines, stats.leaves), (1, 4));
    free(&w);
}

#[test]
fn a_failing_writer_stops_the_dump() {
    struct Full;
    impl core::fmt::Write for Full {
        fn write_str(&mut self, _: &str) -> core::fmt::Result {
            Err(core::fmt::Error)
        }
    }
    let arena = Arena::new(PhysAddr(0x1000_0000), 64);
    let w = tree(&arena);
    map(&w, 0, K4, 0, 1, 3);
    assert_eq!(ops::dump(&w, &mut Full), Err(core::fmt::Error));
    free(&w);
}
