//! Freeing with this crate's formats: the branch-free table check of the free scan
//! (`Format::any_table`) agrees with `is_table`, and freeing a tree or cutting whole subtrees
//! leaves no table behind wherever the tables sit in the scanned chunks.

use pt_armv8::{HypFormat, Maint, S2Format};
use pt_core::ops::{self, MapRequest, PartialBlock};
use pt_core::testkit::Arena;
use pt_core::{
    Format, Geometry, PageAllocator, Perms, PhysAddr, Stage2Attrs, TlbBatch, TlbScope, Walker,
};

const PAGE: u64 = 4096;
const M2: u64 = 1 << 21;
const G1: u64 = 1 << 30;

/// Descriptors with every pattern of the low four bits, with and without high bits.
fn samples() -> Vec<u64> {
    let mut v = Vec::new();
    for low in 0..16u64 {
        for high in [0, 0x8000_0000_1000, 0xfff0_0000_0000_0000, !0xf] {
            v.push(high | low);
        }
    }
    v
}

fn agrees<F: Format>() {
    let s = samples();
    for level in 0..=4u8 {
        // Every single descriptor, and chunks of every length holding at most one table.
        for &d in &s {
            assert_eq!(
                F::any_table(&[d], level),
                F::is_table(d, level),
                "{d:#x} at {level}"
            );
        }
        let plain: Vec<u64> = s
            .iter()
            .copied()
            .filter(|&d| !F::is_table(d, level))
            .collect();
        assert!(!F::any_table(&plain, level), "level {level}");
        for &t in s.iter().filter(|&&d| F::is_table(d, level)) {
            for at in [0, 1, plain.len() / 2, plain.len()] {
                let mut chunk = plain.clone();
                chunk.insert(at, t);
                assert!(F::any_table(&chunk, level), "{t:#x} at {at}, level {level}");
            }
        }
        assert!(!F::any_table(&[], level));
    }
}

#[test]
fn any_table_agrees_with_is_table() {
    agrees::<S2Format>();
    agrees::<HypFormat>();
}

const CHUNK_EDGES: [u64; 10] = [0, 1, 31, 62, 63, 64, 65, 300, 510, 511];
const ROOT_EDGES: [u64; 7] = [0, 1, 63, 64, 511, 512, 1023];

fn map(w: &Walker<'_, S2Format, &Arena>, ia: u64, size: u64, oa: u64, leaf_level: u8) {
    let req = MapRequest {
        ia,
        size,
        oa: PhysAddr(oa),
        attrs: Stage2Attrs::ram(Perms::RWX),
        leaf_level,
        oa_bits: 40,
    };
    ops::map(w, &req, &Maint).unwrap();
}

#[test]
fn stage2_free_and_cut_leave_no_table_behind_at_any_chunk_edge() {
    let arena = Arena::standard();
    let alloc = &arena;
    let geom = Geometry::new(<S2Format as Format>::LIMITS, 40).unwrap();
    let root = alloc.alloc_contiguous_zeroed(geom.root_pages()).unwrap();
    // SAFETY: a zeroed root of this geometry from this allocator.
    let w = unsafe { Walker::<S2Format, _>::new(geom, root, &alloc) };
    let build = || {
        for r in ROOT_EDGES {
            for j in CHUNK_EDGES {
                map(&w, r * G1 + j * M2 + 7 * PAGE, PAGE, 0x1000, 3);
                map(&w, r * G1 + (j ^ 2) * M2, M2, 0x20_0000, 2);
            }
        }
        map(&w, 2 * G1, G1, 0x4000_0000, 1);
    };
    build();
    assert_eq!(arena.live_pages(), 2 + 7 + 70);
    let m = Maint;
    let mut tlb = TlbBatch::new(&m, TlbScope::Stage2 { vttbr: 1 << 48 });
    ops::unmap(&w, 63 * G1, 2 * G1, PartialBlock::Refuse, &mut tlb).unwrap();
    assert_eq!(arena.live_pages(), 2 + 5 + 50);
    ops::unmap(
        &w,
        511 * G1 + 62 * M2,
        4 * M2,
        PartialBlock::Refuse,
        &mut tlb,
    )
    .unwrap();
    assert_eq!(arena.live_pages(), 2 + 5 + 46);
    ops::free_tree(&w, &mut tlb);
    assert_eq!(arena.live_pages(), 0, "every table freed, none twice");
}
