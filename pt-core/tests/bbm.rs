//! The break-before-make checker: it flags the bad sequences and passes the good ones.
//!
//! Descriptors are written directly through [`Entries::set`] from a tiny visitor; TLB
//! invalidations and barriers are recorded directly, as a backend would report them.

mod common;

use common::{new_root, req, Rec};
use pt_core::ops::{break_before_make, free_tree, map};
use pt_core::testkit::fake::{Fake, FakeAttrs, FakeStage1};
use pt_core::testkit::{log, Arena};
use pt_core::trace::{record, Record};
use pt_core::{
    Barrier, Entries, Entry, Format, Geometry, Ipa, LeafFlow, PageAllocator, PhysAddr, Stage,
    TableFlow, TlbBatch, TlbOp, TlbScope, TraceEvent, VirtAddr, Visitor, Walker,
};
use std::convert::Infallible;

const A: u64 = 0x4000_0000;
const B: u64 = 0x5000_0000;
const VTTBR: u64 = common::VTTBR;

/// Calls `f` on the one entry of `level` that covers the walked page (a leaf run of one entry
/// or a table entry, whose children are then skipped).
struct Poke<G> {
    level: u8,
    f: G,
}

impl<F: Format, P: PageAllocator, G: FnMut(&mut Entries<'_, F, P>)> Visitor<F, P> for Poke<G> {
    type Error = Infallible;
    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Infallible> {
        if run.level() == self.level {
            (self.f)(run);
        }
        Ok(LeafFlow::Done)
    }
    fn table_pre(&mut self, e: &mut Entries<'_, F, P>) -> Result<TableFlow, Infallible> {
        if e.level() == self.level {
            (self.f)(e);
            return Ok(TableFlow::Skip);
        }
        Ok(TableFlow::Descend)
    }
}

/// Stores a raw descriptor, as a buggy visitor would (the checker must catch it).
fn raw<F: Format>(e: &mut Entries<'_, F, Arena>, k: usize, desc: u64) {
    // SAFETY: the tests store invalid entries, leaves, and tables that point at zeroed pages
    // just taken from the tree's own arena.
    unsafe { e.set_raw(k, desc) }
}

fn poke<F: Format>(
    w: &Walker<'_, F, Arena>,
    ia: u64,
    level: u8,
    f: impl FnMut(&mut Entries<'_, F, Arena>),
) {
    let Ok(()) = w.walk(ia, ia + 4096, &mut Poke { level, f });
}

/// The table page the level-`level` entry covering `ia` points at.
fn table_below<F: Format>(w: &Walker<'_, F, Arena>, ia: u64, level: u8) -> PhysAddr {
    let mut t = None;
    poke(w, ia, level, |e| {
        if let Entry::Table(pa) = e.decode(0) {
            t = Some(pa);
        }
    });
    t.expect("a table entry")
}

fn leaf<F: Format<Attrs = FakeAttrs>>(oa: u64, attrs: u8, level: u8) -> u64 {
    F::encode_leaf(PhysAddr(oa), FakeAttrs(attrs), level)
}

fn s2ipa(ipa: u64, level: u8) -> Record {
    Record::Tlb(TlbOp::S2Ipa {
        vttbr: VTTBR,
        ipa: Ipa(ipa),
        level,
    })
}

const DSB: Record = Record::Barrier(Barrier::DsbIsh);
const VMID: Record = Record::Tlb(TlbOp::S2Vmid { vttbr: VTTBR });

/// A 39-bit stage-2 tree (or stage-1 with `FakeStage1`) mapping the page at 0 to `A`.
fn tree<F: Format<Attrs = FakeAttrs>>(arena: &Arena) -> Walker<'_, F, Arena> {
    let g = Geometry::new(F::LIMITS, 39).unwrap();
    // SAFETY: the root was just allocated from this allocator for this geometry.
    let w = unsafe { Walker::new(g, new_root(arena, g), arena) };
    map(&w, &req(0, 4096, A, 1, 3), &common::Rec::<true>).unwrap();
    w
}

fn assert_one_violation(containing: &str) {
    let v = log::take_violations();
    assert_eq!(v.len(), 1, "{v:#?}");
    assert!(v[0].contains(containing), "{v:#?}");
}

fn assert_clean() {
    assert_eq!(log::violations(), Vec::<String>::new());
}

#[test]
fn valid_to_other_valid_output_without_break_is_a_violation() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    poke(&w, 0, 3, |e| raw(e, 0, leaf::<Fake>(B, 1, 3)));
    assert_one_violation("without break-before-make");
}

#[test]
fn break_then_remake_without_invalidation_is_a_violation() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    poke(&w, 0, 3, |e| {
        raw(e, 0, Fake::INVALID);
        raw(e, 0, leaf::<Fake>(B, 1, 3));
    });
    assert_one_violation("without TLB invalidation and DSB");
}

#[test]
fn break_and_invalidation_without_dsb_ish_is_a_violation() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    poke(&w, 0, 3, |e| {
        raw(e, 0, Fake::INVALID);
        record(s2ipa(0, 3));
        record(Record::Barrier(Barrier::DsbIshSt)); // not a completion barrier
        raw(e, 0, leaf::<Fake>(B, 1, 3));
    });
    assert_one_violation("without TLB invalidation and DSB");
}

#[test]
fn invalidation_of_another_address_does_not_cover_the_break() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    poke(&w, 0, 3, |e| {
        raw(e, 0, Fake::INVALID);
        record(s2ipa(0x1000, 3));
        record(DSB);
        raw(e, 0, leaf::<Fake>(B, 1, 3));
    });
    assert_one_violation("without TLB invalidation and DSB");
}

#[test]
fn dsb_before_the_invalidation_does_not_complete_it() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    poke(&w, 0, 3, |e| {
        raw(e, 0, Fake::INVALID);
        record(DSB);
        record(s2ipa(0, 3));
        raw(e, 0, leaf::<Fake>(B, 1, 3));
    });
    assert_one_violation("without TLB invalidation and DSB");
}

#[test]
fn break_covering_invalidation_dsb_then_make_is_clean() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    poke(&w, 0, 3, |e| {
        raw(e, 0, Fake::INVALID);
        record(s2ipa(0, 3));
        record(DSB);
        raw(e, 0, leaf::<Fake>(B, 1, 3));
    });
    assert_clean();
}

#[test]
fn whole_vmid_invalidation_covers_every_break() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    poke(&w, 0, 3, |e| {
        raw(e, 0, Fake::INVALID);
        record(VMID);
        record(DSB);
        raw(e, 0, leaf::<Fake>(B, 1, 3));
    });
    assert_clean();
}

#[test]
fn invalidation_of_another_vms_vmid_does_not_cover_the_break() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    let other = tree::<Fake>(&arena);
    // The VTTBR of the other VM: its root in BADDR, VMID 7.
    let other_vttbr = other.root().0 | (7 << 48);
    poke(&w, 0, 3, |e| {
        raw(e, 0, Fake::INVALID);
        record(Record::Tlb(TlbOp::S2Vmid { vttbr: other_vttbr }));
        record(DSB);
        raw(e, 0, leaf::<Fake>(B, 1, 3));
    });
    assert_one_violation("without TLB invalidation");
}

#[test]
fn invalidation_of_this_vms_vmid_covers_the_break() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    let _other = tree::<Fake>(&arena);
    let vttbr = w.root().0 | (3 << 48);
    poke(&w, 0, 3, |e| {
        raw(e, 0, Fake::INVALID);
        record(Record::Tlb(TlbOp::S2Vmid { vttbr }));
        record(DSB);
        raw(e, 0, leaf::<Fake>(B, 1, 3));
    });
    assert_clean();
}

#[test]
fn permission_only_change_of_the_same_output_is_clean() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    poke(&w, 0, 3, |e| raw(e, 0, leaf::<Fake>(A, 0x42, 3)));
    assert_clean();
}

#[test]
fn block_to_table_without_break_is_a_violation() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    map(&w, &req(2 << 20, 2 << 20, B, 1, 2), &common::Rec::<true>).unwrap();
    let t = arena.alloc_zeroed().unwrap();
    poke(&w, 2 << 20, 2, |e| raw(e, 0, Fake::encode_table(t, 2)));
    assert_one_violation("without break-before-make");
}

#[test]
fn break_before_make_primitive_is_clean_and_issues_the_exact_sequence() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    log::clear();
    let m = Rec::<true>;
    let mut tlb = TlbBatch::new(&m, TlbScope::Stage2 { vttbr: VTTBR });
    poke(&w, 0, 3, |e| {
        assert!(break_before_make(e, 0, leaf::<Fake>(B, 1, 3), &mut tlb));
    });
    assert_clean();
    let recs: Vec<Record> = log::records()
        .into_iter()
        .map(|r| match r {
            // Keep the order; drop the raw descriptors and table address.
            Record::Table(TraceEvent::Write {
                old_kind, new_kind, ..
            }) => Record::Table(TraceEvent::Write {
                stage: Stage::Stage2,
                table: PhysAddr(0),
                index: 0,
                level: 3,
                ia: 0,
                old: 0,
                new: 0,
                old_kind,
                new_kind,
            }),
            r => r,
        })
        .collect();
    let write = |old_kind, new_kind| {
        Record::Table(TraceEvent::Write {
            stage: Stage::Stage2,
            table: PhysAddr(0),
            index: 0,
            level: 3,
            ia: 0,
            old: 0,
            new: 0,
            old_kind,
            new_kind,
        })
    };
    use pt_core::DescKind::{Invalid, Leaf};
    assert_eq!(
        recs,
        [
            write(Leaf(PhysAddr(A)), Invalid),
            Record::Barrier(Barrier::DsbIshSt),
            s2ipa(0, 3),
            DSB,
            Record::Tlb(TlbOp::S2CombinedForVmid { vttbr: VTTBR }),
            DSB,
            Record::Barrier(Barrier::Isb),
            write(Invalid, Leaf(PhysAddr(B))),
        ]
    );
}

#[test]
fn freeing_a_table_page_still_linked_is_a_violation() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    let l3 = table_below(&w, 0, 2);
    arena.free(l3, 1);
    assert_one_violation("freed while the MMU can still reach it");
}

#[test]
fn freeing_the_root_without_retiring_it_is_a_violation() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    arena.free(w.root(), 1);
    assert_one_violation("freed while the MMU can still reach it");
}

#[test]
fn unlink_invalidate_dsb_then_free_is_clean() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    let l3 = table_below(&w, 0, 2);
    poke(&w, 0, 2, |e| raw(e, 0, Fake::INVALID));
    record(VMID);
    record(DSB);
    arena.free(l3, 1);
    assert_clean();
}

#[test]
fn freeing_after_the_invalidation_but_before_the_dsb_is_a_violation() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    let l3 = table_below(&w, 0, 2);
    poke(&w, 0, 2, |e| raw(e, 0, Fake::INVALID));
    record(VMID);
    arena.free(l3, 1);
    assert_one_violation("freed while the MMU can still reach it");
}

#[test]
fn tables_below_a_detached_table_may_be_freed() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    let l2 = table_below(&w, 0, 1);
    let l3 = table_below(&w, 0, 2);
    poke(&w, 0, 1, |e| raw(e, 0, Fake::INVALID));
    record(VMID);
    record(DSB);
    arena.free(l3, 1);
    arena.free(l2, 1);
    assert_clean();
}

#[test]
fn empty_table_unlinked_with_a_by_ipa_invalidation_may_be_freed() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    let l3 = table_below(&w, 0, 2);
    poke(&w, 0, 3, |e| raw(e, 0, Fake::INVALID));
    record(s2ipa(0, 3));
    record(DSB);
    poke(&w, 0, 2, |e| raw(e, 0, Fake::INVALID));
    record(s2ipa(0, 2));
    record(DSB);
    arena.free(l3, 1);
    assert_clean();
}

#[test]
fn by_ipa_invalidation_of_a_live_subtree_is_a_violation_on_free() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    let l3 = table_below(&w, 0, 2);
    poke(&w, 0, 2, |e| raw(e, 0, Fake::INVALID));
    record(s2ipa(0, 2));
    record(DSB);
    assert_clean();
    arena.free(l3, 1);
    assert_one_violation("freed while the MMU can still reach it");
}

#[test]
fn retiring_a_root_without_a_whole_regime_flush_is_a_violation() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    record(s2ipa(0, 3));
    record(DSB);
    record(Record::Table(TraceEvent::RetireRoot {
        stage: Stage::Stage2,
        root: w.root(),
    }));
    assert_one_violation("retired without a synchronised whole-Stage2 invalidation");
}

#[test]
fn retiring_a_root_with_the_flush_not_yet_synchronised_is_a_violation() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    record(VMID);
    record(Record::Table(TraceEvent::RetireRoot {
        stage: Stage::Stage2,
        root: w.root(),
    }));
    assert_one_violation("retired without");
}

#[test]
fn free_tree_flushes_the_vmid_retires_the_root_and_is_clean() {
    let arena = Arena::standard();
    let w = tree::<Fake>(&arena);
    log::clear();
    let m = Rec::<true>;
    let mut tlb = TlbBatch::new(&m, TlbScope::Stage2 { vttbr: VTTBR });
    free_tree(&w, &mut tlb);
    assert_clean();
    assert_eq!(log::tlb_ops(), [TlbOp::S2Vmid { vttbr: VTTBR }]);
    assert_eq!(arena.live_pages(), 0);
}

#[test]
fn stage1_break_with_hyp_va_invalidation_and_dsb_is_clean() {
    let arena = Arena::standard();
    let w = tree::<FakeStage1>(&arena);
    poke(&w, 0, 3, |e| {
        raw(e, 0, FakeStage1::INVALID);
        record(Record::Tlb(TlbOp::HypVa { va: VirtAddr(0) }));
        record(DSB);
        raw(e, 0, leaf::<FakeStage1>(B, 1, 3));
    });
    assert_clean();
}

#[test]
fn stage2_invalidation_does_not_cover_a_stage1_break() {
    let arena = Arena::standard();
    let w = tree::<FakeStage1>(&arena);
    poke(&w, 0, 3, |e| {
        raw(e, 0, FakeStage1::INVALID);
        record(VMID);
        record(DSB);
        raw(e, 0, leaf::<FakeStage1>(B, 1, 3));
    });
    assert_one_violation("without TLB invalidation and DSB");
}

#[test]
fn stage1_root_retired_after_hyp_all_is_clean() {
    let arena = Arena::standard();
    let w = tree::<FakeStage1>(&arena);
    log::clear();
    let m = Rec::<true>;
    let mut tlb = TlbBatch::new(&m, TlbScope::Hyp);
    free_tree(&w, &mut tlb);
    assert_clean();
    assert_eq!(log::tlb_ops(), [TlbOp::HypAll]);
    assert_eq!(
        log::barriers(),
        [Barrier::DsbIshSt, Barrier::DsbIsh, Barrier::Isb]
    );
    assert_eq!(arena.live_pages(), 0);
}
