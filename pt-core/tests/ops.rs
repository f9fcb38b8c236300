//! The operations on the odd fake format: map / translate / unmap / update / split / free, their
//! TLB maintenance, their page accounting and their errors.

mod common;

use common::{dump, new_root, req, Rec, VTTBR};
use pt_core::ops::{
    free_tree, map, map_from, split_block, translate, unmap, update, Error, PartialBlock, Reserve,
    TableSource, Translation,
};
use pt_core::testkit::fake::{Fake, FakeAttrs, FakeStage1};
use pt_core::testkit::{log, Arena};
use pt_core::{
    Barrier, DescKind, Format, Geometry, Ipa, Maintenance, PhysAddr, RangeError, TlbBatch, TlbOp,
    TlbScope, TraceEvent, VirtAddr, Walker, TLB_BATCH_THRESHOLD,
};

const PAGE: u64 = 4096;
const M2: u64 = 1 << 21;
const G1: u64 = 1 << 30;

fn tree<F: Format>(arena: &Arena, bits: u8) -> Walker<'_, F, Arena> {
    let g = Geometry::new(F::LIMITS, bits).unwrap();
    // SAFETY: the root was just allocated from this allocator for this geometry.
    unsafe { Walker::new(g, new_root(arena, g), arena) }
}

fn s2<M: Maintenance>(m: &M) -> TlbBatch<'_, M> {
    TlbBatch::new(m, TlbScope::Stage2 { vttbr: VTTBR })
}

fn snapshot<F: Format>(w: &Walker<'_, F, Arena>) -> Vec<common::DumpEntry> {
    dump::<F, Arena>(w.alloc(), w.geometry(), w.root())
}

fn ipa(ipa: u64, level: u8) -> TlbOp {
    TlbOp::S2Ipa {
        vttbr: VTTBR,
        ipa: Ipa(ipa),
        level,
    }
}

const COMBINED: TlbOp = TlbOp::S2CombinedForVmid { vttbr: VTTBR };
const VMID: TlbOp = TlbOp::S2Vmid { vttbr: VTTBR };
const BY_IPA_BARRIERS: [Barrier; 4] = [
    Barrier::DsbIshSt,
    Barrier::DsbIsh,
    Barrier::DsbIsh,
    Barrier::Isb,
];
const WHOLE_BARRIERS: [Barrier; 3] = [Barrier::DsbIshSt, Barrier::DsbIsh, Barrier::Isb];

fn at(oa: u64, attrs: u8, level: u8, leaf_ia: u64, ia: u64) -> Option<Translation<FakeAttrs>> {
    let leaf_oa = PhysAddr(oa - (ia - leaf_ia));
    Some(Translation {
        oa: PhysAddr(oa),
        attrs: FakeAttrs(attrs),
        level,
        leaf_ia,
        desc: Fake::encode_leaf(leaf_oa, FakeAttrs(attrs), level),
    })
}

// ---------------------------------------------------------------------------------------------
// map / translate / unmap

#[test]
fn map_translate_unmap_round_trip_on_a_concatenated_root() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 40);
    assert_eq!(arena.live_pages(), 2);
    let second_root = 0x80_0000_0000; // first IA of the second concatenated root table
    map(&w, &req(G1, G1, 0x40_0000_0000, 7, 1), &common::Rec::<true>).unwrap();
    map(
        &w,
        &req(second_root + M2, M2, 0x20_0000, 9, 2),
        &common::Rec::<true>,
    )
    .unwrap();
    map(&w, &req(PAGE, 3 * PAGE, 0x7000, 1, 3), &common::Rec::<true>).unwrap();
    assert_eq!(arena.live_pages(), 2 + 1 + 2);

    let ia = G1 + 0x1234_5678;
    assert_eq!(translate(&w, ia), at(0x40_1234_5678, 7, 1, G1, ia));
    let ia = second_root + M2 + 0x1_0abc;
    assert_eq!(translate(&w, ia), at(0x21_0abc, 9, 2, second_root + M2, ia));
    assert_eq!(translate(&w, 0x3010), at(0x9010, 1, 3, 0x3000, 0x3010));
    assert_eq!(translate(&w, 0), None);
    assert_eq!(translate(&w, 0x4000), None);
    assert_eq!(translate(&w, 2 * G1), None);
    assert_eq!(translate(&w, 1 << 40), None, "beyond the input space");

    let m = Rec::<true>;
    let mut tlb = s2(&m);
    unmap(&w, G1, G1, PartialBlock::Refuse, &mut tlb).unwrap();
    unmap(&w, second_root + M2, M2, PartialBlock::Refuse, &mut tlb).unwrap();
    unmap(&w, PAGE, 3 * PAGE, PartialBlock::Refuse, &mut tlb).unwrap();
    assert_eq!(translate(&w, G1), None);
    assert_eq!(translate(&w, second_root + M2), None);
    assert_eq!(translate(&w, 0x3010), None);
    assert_eq!(snapshot(&w), []);
    assert_eq!(arena.live_pages(), 2, "only the concatenated root is left");
}

#[test]
fn map_uses_the_largest_leaf_alignment_allows() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 39);
    // [2 MiB - 4 KiB, 4 MiB + 4 KiB) with leaf_level 2: a page, a 2 MiB block, a page.
    map(
        &w,
        &req(M2 - PAGE, M2 + 2 * PAGE, 0x1000_0000 - PAGE, 3, 2),
        &common::Rec::<true>,
    )
    .unwrap();
    assert_eq!(translate(&w, M2 - PAGE).unwrap().level, 3);
    assert_eq!(translate(&w, M2).unwrap().level, 2);
    assert_eq!(translate(&w, 2 * M2).unwrap().level, 3);
    assert_eq!(translate(&w, 2 * M2 + PAGE), None);
    // The same with leaf_level 3 gives pages only; with an output misaligned for a block too.
    map(
        &w,
        &req(8 * M2, M2, 0x2000_0000, 3, 3),
        &common::Rec::<true>,
    )
    .unwrap();
    assert_eq!(translate(&w, 8 * M2).unwrap().level, 3);
    map(
        &w,
        &req(10 * M2, M2, 0x3000_1000, 3, 1),
        &common::Rec::<true>,
    )
    .unwrap();
    assert_eq!(translate(&w, 10 * M2).unwrap().level, 3);
    // leaf_level 1 and a 1 GiB-aligned pair: a 1 GiB block.
    map(
        &w,
        &req(4 * G1, G1, 0x40_0000_0000, 3, 1),
        &common::Rec::<true>,
    )
    .unwrap();
    assert_eq!(translate(&w, 4 * G1 + 5).unwrap().level, 1);
}

#[test]
fn identical_remap_is_a_no_op() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 39);
    map(
        &w,
        &req(M2 - PAGE, M2 + 2 * PAGE, 0x1000_0000 - PAGE, 3, 2),
        &common::Rec::<true>,
    )
    .unwrap();
    let before = snapshot(&w);
    let (live, calls) = (arena.live_pages(), arena.allocation_calls());
    log::clear();
    map(
        &w,
        &req(M2 - PAGE, M2 + 2 * PAGE, 0x1000_0000 - PAGE, 3, 2),
        &common::Rec::<true>,
    )
    .unwrap();
    // A sub-range of the block, asked for as pages, is the same mapping too.
    map(
        &w,
        &req(M2 + 5 * PAGE, 2 * PAGE, 0x1000_0000 + 5 * PAGE, 3, 3),
        &common::Rec::<true>,
    )
    .unwrap();
    assert_eq!(log::writes(), 0);
    assert_eq!(log::tlb_ops(), []);
    assert_eq!(snapshot(&w), before);
    assert_eq!(
        (arena.live_pages(), arena.allocation_calls()),
        (live, calls)
    );
}

#[test]
fn conflicting_map_is_refused_and_leaves_the_tree_unchanged() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 39);
    map(&w, &req(M2, M2, 0x1000_0000, 3, 2), &common::Rec::<true>).unwrap();
    map(
        &w,
        &req(0x10_0000, PAGE, 0x5000, 3, 3),
        &common::Rec::<true>,
    )
    .unwrap();
    let before = snapshot(&w);
    let live = arena.live_pages();
    log::clear();
    // Other output, other attributes, and a range that starts in free space and runs into
    // the block (the free page in front must not be mapped either).
    assert_eq!(
        map(&w, &req(M2, PAGE, 0x2000_0000, 3, 3), &common::Rec::<true>),
        Err(Error::Conflict { ia: M2 })
    );
    assert_eq!(
        map(
            &w,
            &req(M2 + PAGE, PAGE, 0x1000_1000, 4, 3),
            &common::Rec::<true>
        ),
        Err(Error::Conflict { ia: M2 + PAGE })
    );
    assert_eq!(
        map(
            &w,
            &req(M2 - 2 * PAGE, 4 * PAGE, 0x2000_0000, 3, 3),
            &common::Rec::<true>
        ),
        Err(Error::Conflict { ia: M2 })
    );
    assert_eq!(
        map(&w, &req(0, M2, 0x3000_0000, 3, 3), &common::Rec::<true>),
        Err(Error::Conflict { ia: 0x10_0000 })
    );
    assert_eq!(log::writes(), 0);
    assert_eq!(snapshot(&w), before);
    assert_eq!(arena.live_pages(), live);
}

/// [512 GiB - 4 KiB, 512 GiB + 4 KiB) in a 48-bit tree: a level-1, level-2 and level-3 table on
/// each side of a level-0 boundary.
fn six_table_request() -> pt_core::ops::MapRequest<FakeAttrs> {
    req((1 << 39) - PAGE, 2 * PAGE, 0x9000_0000, 5, 3)
}

#[test]
fn map_out_of_memory_at_every_allocation_leaves_the_tree_unchanged() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 48);
    map(
        &w,
        &req((1 << 39) - 2 * M2, PAGE, 0x1000, 1, 3),
        &common::Rec::<true>,
    )
    .unwrap(); // shares L1 and L2
    let before = snapshot(&w);
    let live = arena.live_pages();
    let r = req((1 << 39) - PAGE, 2 * PAGE, 0x9000_0000, 5, 3);
    // Left of the boundary only the L3 table is new; right of it L1, L2 and L3.
    for k in 1..=4 {
        log::clear();
        arena.fail_nth(k);
        assert_eq!(
            map(&w, &r, &common::Rec::<true>),
            Err(Error::OutOfMemory),
            "failing allocation {k}"
        );
        assert_eq!(log::writes(), 0);
        assert_eq!(snapshot(&w), before);
        assert_eq!(arena.live_pages(), live, "failing allocation {k}: leak");
    }
    arena.fail_nth(5);
    let calls = arena.allocation_calls();
    map(&w, &r, &common::Rec::<true>).unwrap();
    arena.stop_failing();
    assert_eq!(arena.allocation_calls() - calls, 4);
    assert_eq!(arena.live_pages(), live + 4);
    assert_eq!(translate(&w, 1 << 39).unwrap().oa, PhysAddr(0x9000_1000));
}

#[test]
fn map_from_a_too_small_source_is_cache_exhausted_before_any_write() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 48);
    let before = snapshot(&w);
    let mut five = Reserve::fill(&arena, 5).unwrap();
    log::clear();
    assert_eq!(
        map_from(&w, &six_table_request(), &mut five, &common::Rec::<true>),
        Err(Error::CacheExhausted {
            needed: 6,
            available: 5
        })
    );
    assert_eq!(log::writes(), 0);
    assert_eq!(snapshot(&w), before);
    assert_eq!(five.available(), 5);
    drop(five);
    assert_eq!(arena.live_pages(), 1);
    let mut six = Reserve::fill(&arena, 6).unwrap();
    map_from(&w, &six_table_request(), &mut six, &common::Rec::<true>).unwrap();
    assert_eq!(six.available(), 0);
    assert_eq!(arena.live_pages(), 1 + 6);
}

#[test]
fn unmap_frees_every_table_that_becomes_empty() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 48);
    let top = (1 << 48) - PAGE;
    let spots = [0, 3 * G1 + PAGE, 600 * G1, top];
    for (i, &ia) in spots.iter().enumerate() {
        map(
            &w,
            &req(ia, PAGE, 0x1000 * (i as u64 + 1), 1, 3),
            &common::Rec::<true>,
        )
        .unwrap();
    }
    map(&w, &req(4 * M2, M2, 0x20_0000, 1, 2), &common::Rec::<true>).unwrap();
    map(
        &w,
        &req(5 * M2 + PAGE, PAGE, 0x10_0000, 1, 3),
        &common::Rec::<true>,
    )
    .unwrap();
    // root; L0[0]: L1, L2 (blocks and pages of the first GiB), L3 for page 0, L3 at 10 MiB;
    // L1[3]: L2, L3; L0[1]: L1, L2, L3; L0[511]: L1, L2, L3.
    assert_eq!(arena.live_pages(), 1 + 4 + 2 + 3 + 3);
    let m = Rec::<true>;
    let mut tlb = s2(&m);
    let mut unmap_page = |ia: u64| unmap(&w, ia, PAGE, PartialBlock::Refuse, &mut tlb).unwrap();
    unmap_page(top);
    assert_eq!(arena.live_pages(), 10);
    unmap_page(600 * G1);
    assert_eq!(arena.live_pages(), 7);
    unmap_page(3 * G1 + PAGE);
    assert_eq!(arena.live_pages(), 5);
    unmap_page(0);
    assert_eq!(
        arena.live_pages(),
        4,
        "the L2 table still holds the block and a page"
    );
    unmap_page(5 * M2 + PAGE);
    assert_eq!(arena.live_pages(), 3);
    unmap(&w, 4 * M2, M2, PartialBlock::Refuse, &mut tlb).unwrap();
    assert_eq!(arena.live_pages(), 1);
    assert_eq!(arena.freed_pages(), 12);
    assert_eq!(snapshot(&w), []);
}

#[test]
fn unmap_of_a_whole_gib_cuts_the_subtree_in_one_store() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 39);
    for ia in [G1, G1 + 5 * M2, 2 * G1 - PAGE] {
        map(&w, &req(ia, PAGE, 0x1000, 1, 3), &common::Rec::<true>).unwrap();
    }
    map(&w, &req(0, PAGE, 0x1000, 1, 3), &common::Rec::<true>).unwrap(); // a neighbour that stays
    assert_eq!(arena.live_pages(), 1 + 4 + 2);
    log::clear();
    let m = Rec::<true>;
    unmap(&w, G1, G1, PartialBlock::Refuse, &mut s2(&m)).unwrap();
    assert_eq!(log::writes(), 1);
    assert_eq!(log::tlb_ops(), [VMID]);
    assert_eq!(log::barriers(), WHOLE_BARRIERS);
    assert_eq!(arena.live_pages(), 1 + 2);
    assert_eq!(translate(&w, 0).unwrap().oa, PhysAddr(0x1000));
}

#[test]
fn unmap_of_more_tables_than_one_deferred_batch_frees_them_all_after_invalidation() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 39);
    for i in 0..70 {
        map(
            &w,
            &req(i * M2 + PAGE, PAGE, 0x1000, 1, 3),
            &common::Rec::<true>,
        )
        .unwrap();
    }
    assert_eq!(arena.live_pages(), 1 + 1 + 70);
    log::clear();
    let m = Rec::<true>;
    unmap(&w, 0, 70 * M2, PartialBlock::Refuse, &mut s2(&m)).unwrap();
    // 70 level-3 tables cut whole (a VMID flush each 64 deferred frees), then the emptied L2.
    assert_eq!(log::writes(), 70 + 1);
    assert_eq!(log::tlb_ops(), [VMID, VMID]);
    assert_eq!(arena.live_pages(), 1);
}

#[test]
fn unmap_of_pages_invalidates_each_page_and_each_emptied_table_by_ipa() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 39);
    map(&w, &req(M2, 2 * PAGE, 0x1000, 1, 3), &common::Rec::<true>).unwrap();
    log::clear();
    let m = Rec::<true>;
    unmap(&w, M2, 2 * PAGE, PartialBlock::Refuse, &mut s2(&m)).unwrap();
    // Two pages, then the emptied L3 table (L2 entry 1), then the emptied L2 table (L1 entry 0).
    assert_eq!(
        log::tlb_ops(),
        [
            ipa(M2, 3),
            ipa(M2 + PAGE, 3),
            ipa(M2, 2),
            ipa(0, 1),
            COMBINED
        ]
    );
    assert_eq!(log::barriers(), BY_IPA_BARRIERS);
    assert_eq!(log::writes(), 4);
    assert_eq!(arena.live_pages(), 1);
}

#[test]
fn unmap_of_part_of_a_block_is_refused_or_takes_the_whole_block() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 39);
    map(&w, &req(M2, M2, 0x1000_0000, 3, 2), &common::Rec::<true>).unwrap();
    map(&w, &req(0, PAGE, 0x1000, 3, 3), &common::Rec::<true>).unwrap();
    let before = snapshot(&w);
    log::clear();
    let m = Rec::<true>;
    assert_eq!(
        unmap(&w, M2 + PAGE, PAGE, PartialBlock::Refuse, &mut s2(&m)),
        Err(Error::PartialBlock { ia: M2 })
    );
    assert_eq!(
        unmap(&w, 0, M2 + PAGE, PartialBlock::Refuse, &mut s2(&m)),
        Err(Error::PartialBlock { ia: M2 })
    );
    assert_eq!((log::writes(), log::tlb_ops()), (0, vec![]));
    assert_eq!(snapshot(&w), before);
    unmap(&w, M2 + PAGE, PAGE, PartialBlock::Whole, &mut s2(&m)).unwrap();
    assert_eq!(translate(&w, M2), None);
    assert_eq!(translate(&w, 2 * M2 - PAGE), None);
    assert_eq!(translate(&w, 0).unwrap().oa, PhysAddr(0x1000));
    assert_eq!(log::tlb_ops(), [ipa(M2, 2), COMBINED]);
}

// ---------------------------------------------------------------------------------------------
// update

/// Pages at 0..4 and a block at 2 MiB, all with attributes 1.
fn update_tree(arena: &Arena) -> Walker<'_, Fake, Arena> {
    let w = tree::<Fake>(arena, 39);
    map(&w, &req(0, 4 * PAGE, 0x10_0000, 1, 3), &common::Rec::<true>).unwrap();
    map(&w, &req(M2, M2, 0x20_0000, 1, 2), &common::Rec::<true>).unwrap();
    w
}

#[test]
fn update_rewrites_changed_leaves_with_one_invalidation_each() {
    let arena = Arena::standard();
    let w = update_tree(&arena);
    log::clear();
    let m = Rec::<true>;
    let mut seen = Vec::new();
    let n = update(
        &w,
        0,
        2 * M2,
        PartialBlock::Refuse,
        &mut s2(&m),
        |ia, l, oa, a| {
            seen.push((ia, l, oa, a));
            if ia == PAGE {
                a
            } else {
                FakeAttrs(2)
            }
        },
    )
    .unwrap();
    assert_eq!(n, 4);
    let one = FakeAttrs(1);
    assert_eq!(
        seen,
        [
            (0, 3, PhysAddr(0x10_0000), one),
            (PAGE, 3, PhysAddr(0x10_1000), one),
            (2 * PAGE, 3, PhysAddr(0x10_2000), one),
            (3 * PAGE, 3, PhysAddr(0x10_3000), one),
            (M2, 2, PhysAddr(0x20_0000), one),
        ]
    );
    assert_eq!(log::writes(), 4);
    assert_eq!(
        log::tlb_ops(),
        [
            ipa(0, 3),
            ipa(2 * PAGE, 3),
            ipa(3 * PAGE, 3),
            ipa(M2, 2),
            COMBINED
        ]
    );
    assert_eq!(log::barriers(), BY_IPA_BARRIERS);
    assert_eq!(translate(&w, 0).unwrap().attrs, FakeAttrs(2));
    assert_eq!(translate(&w, PAGE).unwrap().attrs, FakeAttrs(1));
    assert_eq!(translate(&w, M2 + 77).unwrap(), {
        let mut t = at(0x20_0000 + 77, 2, 2, M2, M2 + 77).unwrap();
        t.desc = Fake::encode_leaf(PhysAddr(0x20_0000), FakeAttrs(2), 2);
        t
    });
}

#[test]
fn update_without_invalidation_by_ipa_is_one_vmid_flush() {
    let arena = Arena::standard();
    let w = update_tree(&arena);
    log::clear();
    let m = Rec::<false>;
    let n = update(
        &w,
        0,
        2 * M2,
        PartialBlock::Refuse,
        &mut s2(&m),
        |_, _, _, _| FakeAttrs(2),
    );
    assert_eq!(n, Ok(5));
    assert_eq!(log::tlb_ops(), [VMID]);
    assert_eq!(log::barriers(), WHOLE_BARRIERS);
}

#[test]
fn update_of_exactly_the_threshold_stays_by_ipa_and_one_more_is_a_vmid_flush() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 39);
    let t = TLB_BATCH_THRESHOLD as u64;
    map(
        &w,
        &req(0, (t + 1) * PAGE, 0x10_0000, 1, 3),
        &common::Rec::<true>,
    )
    .unwrap();
    let m = Rec::<true>;
    log::clear();
    let n = update(
        &w,
        0,
        t * PAGE,
        PartialBlock::Refuse,
        &mut s2(&m),
        |_, _, _, _| FakeAttrs(2),
    );
    assert_eq!(n, Ok(TLB_BATCH_THRESHOLD));
    let mut want: Vec<TlbOp> = (0..t).map(|i| ipa(i * PAGE, 3)).collect();
    want.push(COMBINED);
    assert_eq!(log::tlb_ops(), want);
    log::clear();
    let n = update(
        &w,
        0,
        (t + 1) * PAGE,
        PartialBlock::Refuse,
        &mut s2(&m),
        |_, _, _, _| FakeAttrs(3),
    );
    assert_eq!(n, Ok(TLB_BATCH_THRESHOLD + 1));
    assert_eq!(log::tlb_ops(), [VMID]);
    assert_eq!(log::barriers(), WHOLE_BARRIERS);
}

#[test]
fn update_that_changes_nothing_writes_and_invalidates_nothing() {
    let arena = Arena::standard();
    let w = update_tree(&arena);
    log::clear();
    let m = Rec::<true>;
    let n = update(
        &w,
        0,
        2 * M2,
        PartialBlock::Refuse,
        &mut s2(&m),
        |_, _, _, a| a,
    );
    assert_eq!(n, Ok(0));
    assert_eq!(log::records(), []);
}

#[test]
fn update_of_part_of_a_block_is_refused_or_changes_the_whole_block() {
    let arena = Arena::standard();
    let w = update_tree(&arena);
    let m = Rec::<true>;
    log::clear();
    let set2 = |_: u64, _: u8, _: PhysAddr, _: FakeAttrs| FakeAttrs(2);
    assert_eq!(
        update(&w, M2 + PAGE, PAGE, PartialBlock::Refuse, &mut s2(&m), set2),
        Err(Error::PartialBlock { ia: M2 })
    );
    assert_eq!(log::records(), []);
    assert_eq!(
        update(&w, M2 + PAGE, PAGE, PartialBlock::Whole, &mut s2(&m), set2),
        Ok(1)
    );
    assert_eq!(translate(&w, M2).unwrap().attrs, FakeAttrs(2));
    assert_eq!(log::tlb_ops(), [ipa(M2, 2), COMBINED]);
}

#[test]
fn hyp_update_invalidates_by_va() {
    let arena = Arena::standard();
    let w = tree::<FakeStage1>(&arena, 39);
    map(&w, &req(0, 2 * PAGE, 0x10_0000, 1, 3), &common::Rec::<true>).unwrap();
    log::clear();
    let m = Rec::<false>; // no stage-2 by-IPA: irrelevant for the hyp regime
    let mut tlb = TlbBatch::new(&m, TlbScope::Hyp);
    let n = update(
        &w,
        0,
        2 * PAGE,
        PartialBlock::Refuse,
        &mut tlb,
        |_, _, _, _| FakeAttrs(2),
    );
    assert_eq!(n, Ok(2));
    assert_eq!(
        log::tlb_ops(),
        [
            TlbOp::HypVa { va: VirtAddr(0) },
            TlbOp::HypVa { va: VirtAddr(PAGE) }
        ]
    );
    assert_eq!(log::barriers(), WHOLE_BARRIERS);
}

// ---------------------------------------------------------------------------------------------
// split_block

#[test]
fn split_block_keeps_every_translation_and_breaks_before_making() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 39);
    map(&w, &req(G1, G1, 0x40_0000_0000, 6, 1), &common::Rec::<true>).unwrap();
    let live = arena.live_pages();
    let m = Rec::<true>;
    let mut src = Reserve::fill(&arena, 1).unwrap();
    log::clear();
    assert_eq!(
        split_block(&w, G1 + 5 * M2 + 3, &mut src, &mut s2(&m)),
        Ok(true)
    );
    assert_eq!(arena.live_pages(), live + 1);
    for i in 0..512 {
        let ia = G1 + i * M2 + 0x1230;
        assert_eq!(
            translate(&w, ia),
            at(0x40_0000_0000 + i * M2 + 0x1230, 6, 2, G1 + i * M2, ia)
        );
    }
    // 512 leaves written into the new (unlinked) table, then block -> invalid, the
    // invalidation of the block, and invalid -> table.
    assert_eq!(log::writes(), 512 + 2);
    assert_eq!(log::tlb_ops(), [ipa(G1, 1), COMBINED]);
    // The invalidation's barriers, then DSB ISHST: the new table visible before returning.
    let mut barriers = BY_IPA_BARRIERS.to_vec();
    barriers.push(Barrier::DsbIshSt);
    assert_eq!(log::barriers(), barriers);
    let kinds: Vec<(DescKind, DescKind)> = log::records()
        .iter()
        .filter_map(|r| match r {
            pt_core::trace::Record::Table(TraceEvent::Write {
                old_kind, new_kind, ..
            }) => Some((*old_kind, *new_kind)),
            _ => None,
        })
        .skip(512)
        .collect();
    let l2 = match kinds[1].1 {
        DescKind::Table(t) => t,
        k => panic!("{k:?}"),
    };
    assert_eq!(
        kinds,
        [
            (DescKind::Leaf(PhysAddr(0x40_0000_0000)), DescKind::Invalid),
            (DescKind::Invalid, DescKind::Table(l2))
        ]
    );

    // And a 2 MiB block into pages.
    let mut src = Reserve::fill(&arena, 1).unwrap();
    assert_eq!(
        split_block(&w, G1 + 4 * M2, &mut src, &mut s2(&m)),
        Ok(true)
    );
    for i in 0..512 {
        let ia = G1 + 4 * M2 + i * PAGE + 8;
        assert_eq!(
            translate(&w, ia),
            at(0x40_0000_0000 + 4 * M2 + i * PAGE + 8, 6, 3, ia - 8, ia)
        );
    }
    // A page cannot be split; nothing mapped is an error.
    let mut empty = Reserve::fill(&arena, 0).unwrap();
    assert_eq!(
        split_block(&w, G1 + 4 * M2, &mut empty, &mut s2(&m)),
        Ok(false)
    );
    assert_eq!(
        split_block(&w, 5 * PAGE, &mut empty, &mut s2(&m)),
        Err(Error::NotMapped { ia: 5 * PAGE })
    );
    assert_eq!(arena.live_pages(), live + 2);
}

#[test]
fn split_block_without_a_page_is_cache_exhausted_and_changes_nothing() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 39);
    map(&w, &req(M2, M2, 0x20_0000, 6, 2), &common::Rec::<true>).unwrap();
    let before = snapshot(&w);
    let m = Rec::<true>;
    let mut empty = Reserve::fill(&arena, 0).unwrap();
    log::clear();
    assert_eq!(
        split_block(&w, M2, &mut empty, &mut s2(&m)),
        Err(Error::CacheExhausted {
            needed: 1,
            available: 0
        })
    );
    assert_eq!(log::records(), []);
    assert_eq!(snapshot(&w), before);
}

// ---------------------------------------------------------------------------------------------
// for_each_leaf

#[test]
fn for_each_leaf_reports_the_covered_part_of_each_leaf_with_its_descriptor() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 39);
    let m = Rec::<true>;
    map(&w, &req(M2 - 2 * PAGE, 2 * PAGE, 0x100_0000, 1, 3), &m).unwrap();
    map(&w, &req(M2, M2, 0x4000_0000, 2, 2), &m).unwrap();
    let mut leaves = Vec::new();
    // From the second page to the middle of the block.
    pt_core::ops::for_each_leaf(&w, M2 - PAGE, M2 + M2 / 2, |l| leaves.push(l));
    let page_desc = Fake::encode_leaf(PhysAddr(0x100_1000), FakeAttrs(1), 3);
    let block_desc = Fake::encode_leaf(PhysAddr(0x4000_0000), FakeAttrs(2), 2);
    assert_eq!(
        leaves,
        [
            pt_core::ops::Leaf {
                ia: M2 - PAGE,
                level: 3,
                oa: PhysAddr(0x100_1000),
                size: PAGE,
                leaf_ia: M2 - PAGE,
                attrs: FakeAttrs(1),
                desc: page_desc,
            },
            pt_core::ops::Leaf {
                ia: M2,
                level: 2,
                oa: PhysAddr(0x4000_0000),
                size: M2 / 2,
                leaf_ia: M2,
                attrs: FakeAttrs(2),
                desc: block_desc,
            },
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// free_tree

#[test]
fn free_tree_returns_every_page() {
    for bits in [30, 39, 40, 43, 48] {
        let arena = Arena::standard();
        let w = tree::<Fake>(&arena, bits);
        let space = w.geometry().ia_size();
        map(&w, &req(0, 3 * PAGE, 0x1000, 1, 3), &common::Rec::<true>).unwrap();
        map(
            &w,
            &req(
                space - 2 * M2 - PAGE,
                M2 + 2 * PAGE,
                0x4000_0000 - PAGE,
                1,
                2,
            ),
            &common::Rec::<true>,
        )
        .unwrap();
        map(
            &w,
            &req(space / 2, M2, 0x20_0000, 1, 2),
            &common::Rec::<true>,
        )
        .unwrap();
        assert!(arena.live_pages() > w.geometry().root_pages());
        log::clear();
        let m = Rec::<true>;
        free_tree(&w, &mut s2(&m));
        assert_eq!(arena.live_pages(), 0, "{bits}-bit");
        assert_eq!(arena.freed_pages(), arena.allocated_pages());
        assert_eq!(log::tlb_ops(), [VMID]);
        assert_eq!(log::writes(), 0, "freeing writes no descriptor");
    }
}

// ---------------------------------------------------------------------------------------------
// errors

#[test]
fn bad_input_ranges_are_typed_errors_and_change_nothing() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 39);
    map(&w, &req(0, PAGE, 0x1000, 1, 3), &common::Rec::<true>).unwrap();
    let before = snapshot(&w);
    let live = arena.live_pages();
    log::clear();
    let limit = 1u64 << 39;
    let m = Rec::<true>;
    let too_large = Err(Error::InputTooLarge {
        end: limit + PAGE,
        limit,
    });
    let wraps = Err(Error::Range(RangeError::Wraps));
    let unaligned_start = Err(Error::Range(RangeError::Unaligned {
        value: 0x1001,
        align: PAGE,
    }));
    let unaligned_size = Err(Error::Range(RangeError::Unaligned {
        value: 0x800,
        align: PAGE,
    }));
    let empty = Err(Error::Range(RangeError::Empty));
    let top = 0xffff_ffff_ffff_f000;
    let f = |_: u64, _: u8, _: PhysAddr, _: FakeAttrs| FakeAttrs(9);

    assert_eq!(
        map(
            &w,
            &req(limit - PAGE, 2 * PAGE, 0, 1, 3),
            &common::Rec::<true>
        ),
        too_large
    );
    assert_eq!(
        map(&w, &req(top, 2 * PAGE, 0, 1, 3), &common::Rec::<true>),
        wraps
    );
    assert_eq!(
        map(&w, &req(0x1001, PAGE, 0, 1, 3), &common::Rec::<true>),
        unaligned_start
    );
    assert_eq!(
        map(&w, &req(0x1000, 0x800, 0, 1, 3), &common::Rec::<true>),
        unaligned_size
    );
    assert_eq!(
        map(&w, &req(0x1000, 0, 0, 1, 3), &common::Rec::<true>),
        empty
    );

    let mut tlb = s2(&m);
    let p = PartialBlock::Whole;
    assert_eq!(unmap(&w, limit - PAGE, 2 * PAGE, p, &mut tlb), too_large);
    assert_eq!(unmap(&w, top, 2 * PAGE, p, &mut tlb), wraps);
    assert_eq!(unmap(&w, 0x1001, PAGE, p, &mut tlb), unaligned_start);
    assert_eq!(unmap(&w, 0x1000, 0x800, p, &mut tlb), unaligned_size);
    assert_eq!(unmap(&w, 0, 0, p, &mut tlb), empty);

    assert_eq!(
        update(&w, limit - PAGE, 2 * PAGE, p, &mut tlb, f),
        too_large.map(|()| 0)
    );
    assert_eq!(update(&w, top, 2 * PAGE, p, &mut tlb, f), wraps.map(|()| 0));
    assert_eq!(
        update(&w, 0x1001, PAGE, p, &mut tlb, f),
        unaligned_start.map(|()| 0)
    );
    assert_eq!(
        update(&w, 0, 0x800, p, &mut tlb, f),
        unaligned_size.map(|()| 0)
    );
    assert_eq!(update(&w, 0, 0, p, &mut tlb, f), empty.map(|()| 0));

    let mut src = Reserve::fill(&arena, 1).unwrap();
    assert_eq!(
        split_block(&w, limit, &mut src, &mut tlb),
        Err(Error::InputTooLarge { end: limit, limit })
    );
    drop(src);
    drop(tlb);

    assert_eq!(translate(&w, limit), None);
    assert_eq!(translate(&w, u64::MAX), None);
    assert_eq!(log::writes(), 0);
    assert_eq!(log::tlb_ops(), []);
    assert_eq!(snapshot(&w), before);
    assert_eq!(arena.live_pages(), live);
}

#[test]
fn bad_output_addresses_are_typed_errors_and_change_nothing() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 39);
    let mut r = req(0, 2 * PAGE, (1 << 40) - PAGE, 1, 3);
    r.oa_bits = 40;
    assert_eq!(
        map(&w, &r, &common::Rec::<true>),
        Err(Error::OutputTooLarge {
            end: (1 << 40) + PAGE,
            bits: 40
        })
    );
    // A regime asking for more than the format holds gets the format's limit.
    let mut r = req(0, 2 * PAGE, (1 << 48) - PAGE, 1, 3);
    r.oa_bits = 52;
    assert_eq!(
        map(&w, &r, &common::Rec::<true>),
        Err(Error::OutputTooLarge {
            end: (1 << 48) + PAGE,
            bits: 48
        })
    );
    // An output range that wraps.
    assert_eq!(
        map(
            &w,
            &req(0, 2 * PAGE, 0xffff_ffff_ffff_f000, 1, 3),
            &common::Rec::<true>
        ),
        Err(Error::OutputTooLarge {
            end: u64::MAX,
            bits: 48
        })
    );
    assert_eq!(
        map(&w, &req(0, PAGE, 0x1234, 1, 3), &common::Rec::<true>),
        Err(Error::UnalignedOutput { oa: 0x1234 })
    );
    // The last page of the output space is fine.
    map(
        &w,
        &req(0, PAGE, (1 << 48) - PAGE, 1, 3),
        &common::Rec::<true>,
    )
    .unwrap();
    assert_eq!(translate(&w, 0).unwrap().oa, PhysAddr((1 << 48) - PAGE));
    assert_eq!(arena.live_pages(), 1 + 2);
}

// ---------------------------------------------------------------------------------------------
// ordering: tables published after their zeroing, mappings visible before returning

/// The kinds of the recorded events that order matters for: descriptor stores (as "T" for a
/// table store, "L" for a leaf store) and barriers.
fn store_and_barrier_order() -> Vec<&'static str> {
    log::records()
        .iter()
        .filter_map(|r| match r {
            pt_core::trace::Record::Table(TraceEvent::Write { new_kind, .. }) => {
                Some(match new_kind {
                    DescKind::Table(_) => "T",
                    DescKind::Leaf(_) => "L",
                    DescKind::Invalid => "I",
                })
            }
            pt_core::trace::Record::Barrier(Barrier::DsbIshSt) => Some("dsb ishst"),
            pt_core::trace::Record::Barrier(_) => Some("other barrier"),
            _ => None,
        })
        .collect()
}

#[test]
fn map_publishes_each_new_table_after_a_dsb_ishst_and_ends_with_one() {
    // Two new tables (L2, L3 below the 39-bit root) for one page: each table store is
    // preceded by DSB ISHST (its zeroing visible to the walkers first), and the leaf store is
    // followed by DSB ISHST (visible before the operation returns).
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 39);
    log::clear();
    map(&w, &req(0x4000_0000, PAGE, 0x8000, 1, 3), &Rec::<true>).unwrap();
    assert_eq!(
        store_and_barrier_order(),
        ["dsb ishst", "T", "dsb ishst", "T", "L", "dsb ishst"]
    );
}

#[test]
fn map_from_a_cache_orders_the_same_way() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 39);
    let mut src = Reserve::fill(&arena, 2).unwrap();
    log::clear();
    map_from(
        &w,
        &req(0x4000_0000, PAGE, 0x8000, 1, 3),
        &mut src,
        &Rec::<true>,
    )
    .unwrap();
    let order = store_and_barrier_order();
    // The reserve restores each page's link word to zero (an "I" store is not traced: the
    // page is in no tree yet), so only the published stores show.
    assert_eq!(
        order,
        ["dsb ishst", "T", "dsb ishst", "T", "L", "dsb ishst"]
    );
}

#[test]
fn map_into_existing_tables_ends_with_a_dsb_ishst() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 39);
    map(&w, &req(0x4000_0000, PAGE, 0x8000, 1, 3), &Rec::<true>).unwrap();
    log::clear();
    map(&w, &req(0x4000_1000, 2 * PAGE, 0x9000, 1, 3), &Rec::<true>).unwrap();
    assert_eq!(store_and_barrier_order(), ["L", "L", "dsb ishst"]);
}

#[test]
fn a_reserved_page_reads_as_an_invalid_descriptor() {
    // Reserved pages are chained through word 0; bit 0 of that word must stay clear, so the
    // word is an invalid descriptor at every level of both LPAE formats (a block descriptor
    // at levels 1-2 would be bits[1:0] = 0b01).
    let arena = Arena::standard();
    let r = Reserve::fill(&arena, 3).unwrap();
    assert_eq!(r.available(), 3);
    let mut words = Vec::new();
    // A fresh standard arena hands out 0x8000_0000, 0x8000_1000, 0x8000_2000 in order; the
    // last one filled is the head of the chain.
    let mut pa = Some(PhysAddr(0x8000_0000 + 2 * PAGE));
    while let Some(p) = pa {
        // SAFETY: reserved pages are arena pages; only word 0 is read, atomically enough for a
        // single-threaded test.
        let w0 = unsafe { pt_core::PageAllocator::phys_to_virt(&arena, p).read_volatile() };
        words.push(w0);
        pa = (w0 != 0).then_some(PhysAddr(w0 & !0xfff));
    }
    assert_eq!(words.len(), 3);
    for w0 in &words[..2] {
        assert_eq!(w0 & 1, 0, "link word {w0:#x} would be a valid descriptor");
        assert!(!Fake::is_valid(*w0, 1) && !Fake::is_valid(*w0, 2));
    }
    assert_eq!(words[2], 0);
    drop(r);
    assert_eq!(arena.live_pages(), 0);
}

// ---------------------------------------------------------------------------------------------
// unmap_reporting: removed leaves reported after their TLB invalidation

#[derive(Default)]
struct Sink(Vec<(u64, u64, u8)>);

impl pt_core::ops::UnmapSink<FakeAttrs> for Sink {
    fn unmapped(&mut self, oa: PhysAddr, size: u64, attrs: FakeAttrs) {
        self.0.push((oa.0, size, attrs.0));
        // Mark the moment in the recording, to check the order against the invalidation.
        pt_core::trace::record(pt_core::trace::Record::ICacheInvalidateAll);
    }
}

#[test]
fn unmap_reports_each_removed_leaf_after_the_tlb_sync_coalescing_neighbours() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 39);
    let m = Rec::<true>;
    map(&w, &req(0x4000_0000, 3 * PAGE, 0x10_0000, 1, 3), &m).unwrap();
    map(&w, &req(0x4000_3000, PAGE, 0x20_0000, 2, 3), &m).unwrap();
    log::clear();
    let mut sink = Sink::default();
    pt_core::ops::unmap_reporting(
        &w,
        0x4000_0000,
        4 * PAGE,
        PartialBlock::Refuse,
        &mut s2(&m),
        &mut sink,
    )
    .unwrap();
    // Three contiguous pages with equal attributes are one range; the fourth differs.
    assert_eq!(sink.0, [(0x10_0000, 3 * PAGE, 1), (0x20_0000, PAGE, 2)]);
    // Every report comes after the last barrier of the invalidation.
    let recs = log::records();
    let last_barrier = recs
        .iter()
        .rposition(|r| matches!(r, pt_core::trace::Record::Barrier(Barrier::Isb)))
        .unwrap();
    let first_report = recs
        .iter()
        .position(|r| matches!(r, pt_core::trace::Record::ICacheInvalidateAll))
        .unwrap();
    assert!(first_report > last_barrier);
}

#[test]
fn unmap_of_a_whole_subtree_reports_its_leaves_before_freeing_it() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 39);
    let m = Rec::<true>;
    // Two pages and a block under one L1 entry: a range of 1 GiB cuts the L2 table off whole.
    map(&w, &req(G1, 2 * PAGE, 0x10_0000, 1, 3), &m).unwrap();
    map(&w, &req(G1 + M2, M2, 0x4000_0000, 3, 2), &m).unwrap();
    let mut sink = Sink::default();
    pt_core::ops::unmap_reporting(&w, G1, G1, PartialBlock::Refuse, &mut s2(&m), &mut sink)
        .unwrap();
    assert_eq!(sink.0, [(0x10_0000, 2 * PAGE, 1), (0x4000_0000, M2, 3)]);
    assert_eq!(arena.live_pages(), w.geometry().root_pages());
}

#[test]
fn free_tree_reporting_reports_every_leaf_and_frees_every_page() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 40);
    let m = Rec::<true>;
    map(&w, &req(0, PAGE, 0x10_0000, 1, 3), &m).unwrap();
    map(&w, &req(0x80_0000_0000 - M2, M2, 0x4000_0000, 2, 2), &m).unwrap();
    let mut sink = Sink::default();
    pt_core::ops::free_tree_reporting(&w, &mut s2(&m), &mut sink);
    assert_eq!(sink.0, [(0x10_0000, PAGE, 1), (0x4000_0000, M2, 2)]);
    assert_eq!(arena.live_pages(), 0);
}

// ---------------------------------------------------------------------------------------------
// freeing: no table leaks, wherever a table sits in the chunks the free scan skips

/// Level-2 entries at the edges of the 64-entry chunks the free scan tests at once, and in
/// the middle of them.
const CHUNK_EDGES: [u64; 10] = [0, 1, 31, 62, 63, 64, 65, 300, 510, 511];
/// Root entries (1 GiB each, 1024 of them for 40 bits) likewise, the second concatenated root
/// table included.
const ROOT_EDGES: [u64; 7] = [0, 1, 63, 64, 511, 512, 1023];

/// Maps a tree with a level-3 table at every chunk edge of a level-2 table below every root
/// edge, a 2 MiB block next to each, and a 1 GiB block at root entry 2: 2 + 7 + 7 * 10 pages.
fn edge_tree(w: &Walker<'_, Fake, Arena>) {
    let m = common::Rec::<true>;
    for r in ROOT_EDGES {
        for j in CHUNK_EDGES {
            let ia = r * G1 + j * M2;
            map(w, &req(ia + 7 * PAGE, PAGE, 0x1000, 1, 3), &m).unwrap();
            map(w, &req(r * G1 + (j ^ 2) * M2, M2, 0x20_0000, 1, 2), &m).unwrap();
        }
    }
    map(w, &req(2 * G1, G1, 0x4000_0000, 1, 1), &m).unwrap();
}

#[test]
fn free_tree_frees_tables_at_every_chunk_edge() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 40);
    edge_tree(&w);
    assert_eq!(arena.live_pages(), 2 + 7 + 70);
    let m = Rec::<true>;
    free_tree(&w, &mut s2(&m));
    assert_eq!(arena.live_pages(), 0, "every table freed, none twice");
}

#[test]
fn unmap_of_whole_subtrees_frees_tables_at_every_chunk_edge() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena, 40);
    edge_tree(&w);
    let m = Rec::<true>;
    // Root entries 63 and 64: two level-2 tables cut whole, each with its ten level-3 tables.
    unmap(&w, 63 * G1, 2 * G1, PartialBlock::Refuse, &mut s2(&m)).unwrap();
    assert_eq!(arena.live_pages(), 2 + 5 + 50);
    // Entries 0..=2: two subtrees and the 1 GiB block.
    unmap(&w, 0, 3 * G1, PartialBlock::Refuse, &mut s2(&m)).unwrap();
    assert_eq!(arena.live_pages(), 2 + 3 + 30);
    // Part of a level-2 table: the level-3 tables at 62..=65 go (cut whole), the rest stays.
    unmap(
        &w,
        511 * G1 + 62 * M2,
        4 * M2,
        PartialBlock::Refuse,
        &mut s2(&m),
    )
    .unwrap();
    assert_eq!(arena.live_pages(), 2 + 3 + 26);
    free_tree(&w, &mut s2(&m));
    assert_eq!(arena.live_pages(), 0);
}
