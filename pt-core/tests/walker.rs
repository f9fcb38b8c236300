//! The walker against a brute-force enumeration that reads table memory entry by entry, on the
//! odd fake formats, for 2-, 3- and 4-level trees and concatenated roots.

mod common;

use common::{new_root, read_desc, req};
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, RngSeed};
use pt_core::ops::map;
use pt_core::testkit::fake::{Fake, FakeAttrs, FakeStage1};
use pt_core::testkit::Arena;
use pt_core::{
    entry_size, level_shift, Entries, Entry, Format, Geometry, LeafFlow, PageAllocator, PhysAddr,
    TableFlow, Visitor, Walker,
};
use std::collections::HashSet;
use std::convert::Infallible;

/// One thing the walker did (or, for the brute force, should do).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    /// A leaf-run call: level, first index, number of entries.
    Run(u8, usize, usize),
    /// One entry of a run: level, index, first ia, covered part, raw descriptor.
    Leaf(u8, usize, u64, (u64, u64), u64),
    /// A pre-table visit: level, index, first ia.
    Pre(u8, usize, u64),
    /// A post-table visit: level, index, first ia.
    Post(u8, usize, u64),
}

/// Which table entries a visitor answers [`TableFlow::Skip`] for.
type SkipRule = fn(u8, u64) -> bool;

fn never(_: u8, _: u64) -> bool {
    false
}

/// Skips about a quarter of the tables, differently per level.
fn some(level: u8, ia: u64) -> bool {
    ((ia >> level_shift(level)) + level as u64) % 4 == 1
}

struct Recorder {
    events: Vec<Ev>,
    skip: SkipRule,
}

impl<F: Format, P: PageAllocator> Visitor<F, P> for Recorder {
    type Error = Infallible;

    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Infallible> {
        assert!(!run.is_empty());
        self.events
            .push(Ev::Run(run.level(), run.index(0), run.len()));
        for k in 0..run.len() {
            self.events.push(Ev::Leaf(
                run.level(),
                run.index(k),
                run.ia(k),
                run.covered(k),
                run.get(k),
            ));
        }
        Ok(LeafFlow::Done)
    }

    fn table_pre(&mut self, e: &mut Entries<'_, F, P>) -> Result<TableFlow, Infallible> {
        assert_eq!(e.len(), 1);
        self.events.push(Ev::Pre(e.level(), e.index(0), e.ia(0)));
        Ok(if (self.skip)(e.level(), e.ia(0)) {
            TableFlow::Skip
        } else {
            TableFlow::Descend
        })
    }

    fn table_post(&mut self, e: &mut Entries<'_, F, P>) -> Result<(), Infallible> {
        assert_eq!(e.len(), 1);
        self.events.push(Ev::Post(e.level(), e.index(0), e.ia(0)));
        Ok(())
    }
}

/// The independent enumeration: every entry of the table at `table` whose span meets
/// `[lo, hi)`, read one by one; maximal runs of non-table entries (all entries at level 3).
#[allow(clippy::too_many_arguments)]
fn brute<F: Format, P: PageAllocator>(
    alloc: &P,
    g: Geometry,
    table: PhysAddr,
    level: u8,
    table_ia: u64,
    lo: u64,
    hi: u64,
    skip: SkipRule,
    out: &mut Vec<Ev>,
) {
    let size = entry_size(level);
    let mut pending: Vec<Ev> = Vec::new();
    let flush = |pending: &mut Vec<Ev>, out: &mut Vec<Ev>| {
        if let Some(Ev::Leaf(l, i, ..)) = pending.first() {
            out.push(Ev::Run(*l, *i, pending.len()));
            out.append(pending);
        }
    };
    for i in 0..g.entries_at(level) {
        let ia = table_ia + i as u64 * size;
        let end = ia + size;
        if end <= lo || ia >= hi {
            continue;
        }
        let desc = read_desc(alloc, table, i);
        match F::decode(desc, level) {
            Entry::Table(child) if level < 3 => {
                flush(&mut pending, out);
                out.push(Ev::Pre(level, i, ia));
                if !skip(level, ia) {
                    brute::<F, P>(
                        alloc,
                        g,
                        child,
                        level + 1,
                        ia,
                        lo.max(ia),
                        hi.min(end),
                        skip,
                        out,
                    );
                    out.push(Ev::Post(level, i, ia));
                }
            }
            _ => pending.push(Ev::Leaf(level, i, ia, (ia.max(lo), end.min(hi)), desc)),
        }
    }
    flush(&mut pending, out);
}

/// Plants an empty table in some invalid entries above level 3 and asks the walker to descend
/// into it; records the entries it handled and every table visit.
struct Planter {
    events: Vec<Ev>,
    planted: HashSet<(u8, u64)>,
    budget: usize,
}

impl<F: Format, P: PageAllocator> Visitor<F, P> for Planter {
    type Error = Infallible;

    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Infallible> {
        let level = run.level();
        for k in 0..run.len() {
            let (ia, desc) = (run.ia(k), run.get(k));
            if level < 3
                && self.budget > 0
                && !F::is_valid(desc, level)
                && (ia >> level_shift(level)) % 5 == 2
            {
                let t = run.alloc().alloc_zeroed().unwrap();
                // SAFETY: `t` is a zeroed page just taken from the tree's allocator.
                unsafe { run.set_raw(k, F::encode_table(t, level)) };
                self.planted.insert((level, ia));
                self.budget -= 1;
                return Ok(LeafFlow::Descend(k));
            }
            self.events
                .push(Ev::Leaf(level, run.index(k), ia, run.covered(k), desc));
        }
        Ok(LeafFlow::Done)
    }

    fn table_pre(&mut self, e: &mut Entries<'_, F, P>) -> Result<TableFlow, Infallible> {
        self.events.push(Ev::Pre(e.level(), e.index(0), e.ia(0)));
        Ok(TableFlow::Descend)
    }

    fn table_post(&mut self, e: &mut Entries<'_, F, P>) -> Result<(), Infallible> {
        self.events.push(Ev::Post(e.level(), e.index(0), e.ia(0)));
        Ok(())
    }
}

const GIB: u64 = 1 << 30;
const MIB2: u64 = 1 << 21;
const PAGE: u64 = 4096;

/// Start of one of three areas: the bottom, the middle and the top of the input space.
fn anchor(space: u64, pick: u64) -> u64 {
    match pick % 3 {
        0 => 0,
        1 => space / 2,
        _ => space.saturating_sub(4 * GIB),
    }
}

/// Builds a random tree of blocks (1 GiB, 2 MiB) and pages with `map`, from raw proptest input.
fn build<F: Format<Attrs = FakeAttrs>>(w: &Walker<'_, F, Arena>, maps: &[(u8, u64, u64, u64)]) {
    let space = w.geometry().ia_size();
    for &(ll, a, b, c) in maps {
        let leaf_level = 1 + ll % 3;
        let (unit, count) = match leaf_level {
            1 => (GIB, 1 + b % 2),
            2 => (MIB2, 1 + b % 4),
            _ => (PAGE, 1 + b % 700),
        };
        let align = if a & 1 == 0 { unit } else { PAGE };
        let size = (unit * count).min(space);
        let window = (4 * GIB).min(space);
        let mut ia = (anchor(space, a >> 1) + (a >> 8) % window) & !(align - 1);
        if ia + size > space {
            ia = space - size;
        }
        // Output congruent to the input modulo 1 GiB (so blocks are possible), sometimes off by
        // a page (pages only, for the small requests).
        let mut oa = ((c >> 8) % (1 << 40)) & !(GIB - 1);
        oa += ia % GIB;
        if c & 1 == 1 && leaf_level >= 2 {
            oa += PAGE;
        }
        let _ = map(
            w,
            &req(ia, size, oa, (c >> 1) as u8 & 0x7f, leaf_level),
            &common::Rec::<true>,
        );
    }
}

/// A random `[start, end)` inside the input space, from raw proptest input.
fn range(space: u64, s: u64, e: u64) -> (u64, u64) {
    if s % 16 == 0 {
        return (0, space);
    }
    let window = (4 * GIB).min(space);
    let start = (anchor(space, s >> 4) + (s >> 8) % window) & !(PAGE - 1);
    let start = start.min(space - PAGE);
    let len = match e % 3 {
        0 => PAGE * (1 + (e >> 2) % 1000),
        1 => MIB2 * (1 + (e >> 2) % 2000),
        _ => GIB * (1 + (e >> 2) % 64),
    };
    (start, (start + len).min(space))
}

fn check<F: Format<Attrs = FakeAttrs>>(
    g: Geometry,
    maps: &[(u8, u64, u64, u64)],
    walks: &[(u64, u64)],
) {
    let arena = Arena::standard();
    let root = new_root(&arena, g);
    // SAFETY: the root was just allocated from this allocator for this geometry.
    let w = unsafe { Walker::<F, _>::new(g, root, &arena) };
    build(&w, maps);
    let space = g.ia_size();
    for &(s, e) in walks {
        let (start, end) = range(space, s, e);
        for skip in [never as SkipRule, some] {
            let mut v = Recorder {
                events: Vec::new(),
                skip,
            };
            let Ok(()) = w.walk(start, end, &mut v);
            let mut want = Vec::new();
            brute::<F, Arena>(
                &arena,
                g,
                root,
                g.start_level(),
                0,
                start,
                end,
                skip,
                &mut want,
            );
            assert_eq!(v.events, want, "{g:?} walk [{start:#x}, {end:#x})");
        }
    }
    // Descend: plant tables mid-run, then compare with the tree as it is afterwards (planted
    // tables get no pre-visit; runs are split where the walker resumed, so compare entries).
    let (start, end) = range(space, walks[0].0, walks[0].1);
    let mut p = Planter {
        events: Vec::new(),
        planted: HashSet::new(),
        budget: 40,
    };
    let Ok(()) = w.walk(start, end, &mut p);
    let mut want = Vec::new();
    brute::<F, Arena>(
        &arena,
        g,
        root,
        g.start_level(),
        0,
        start,
        end,
        never,
        &mut want,
    );
    want.retain(|e| match e {
        Ev::Run(..) => false,
        Ev::Pre(l, _, ia) => !p.planted.contains(&(*l, *ia)),
        _ => true,
    });
    assert_eq!(p.events, want, "{g:?} planted walk [{start:#x}, {end:#x})");
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 24,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(0x7061_6765_7461_626c),
        ..ProptestConfig::default()
    }
}

type Maps = Vec<(u8, u64, u64, u64)>;
type Walks = Vec<(u64, u64)>;

fn input() -> impl Strategy<Value = (Maps, Walks)> {
    (
        prop::collection::vec(
            (any::<u8>(), any::<u64>(), any::<u64>(), any::<u64>()),
            1..12,
        ),
        prop::collection::vec((any::<u64>(), any::<u64>()), 1..6),
    )
}

macro_rules! walker_matches_brute_force {
    ($($name:ident: $fmt:ty, $bits:expr, $start:expr, $root_entries:expr;)*) => {
        proptest! {
            #![proptest_config(config())]
            $(
                #[test]
                fn $name((maps, walks) in input()) {
                    let g = Geometry::new(<$fmt as Format>::LIMITS, $bits).unwrap();
                    prop_assert_eq!((g.start_level(), g.root_entries()), ($start, $root_entries));
                    check::<$fmt>(g, &maps, &walks);
                }
            )*
        }
    };
}

walker_matches_brute_force! {
    walk_equals_brute_force_stage2_30bit_two_levels: Fake, 30, 2, 512;
    walk_equals_brute_force_stage2_36bit_three_levels_partial_root: Fake, 36, 1, 64;
    walk_equals_brute_force_stage2_39bit_three_levels: Fake, 39, 1, 512;
    walk_equals_brute_force_stage2_40bit_two_concatenated_roots: Fake, 40, 1, 1024;
    walk_equals_brute_force_stage2_43bit_sixteen_concatenated_roots: Fake, 43, 1, 16 * 512;
    walk_equals_brute_force_stage2_48bit_four_levels: Fake, 48, 0, 512;
    walk_equals_brute_force_stage1_30bit_two_levels: FakeStage1, 30, 2, 512;
    walk_equals_brute_force_stage1_39bit_three_levels: FakeStage1, 39, 1, 512;
    walk_equals_brute_force_stage1_40bit_four_levels_two_entry_root: FakeStage1, 40, 0, 2;
    walk_equals_brute_force_stage1_48bit_four_levels: FakeStage1, 48, 0, 512;
}

/// Maps `n` pages from 0 and returns the walker's events over `[start, end)`.
fn events_after_mapping(
    bits: u8,
    n: u64,
    start: u64,
    end: u64,
    skip: SkipRule,
) -> (Vec<Ev>, Arena) {
    let arena = Arena::standard();
    let g = Geometry::new(Fake::LIMITS, bits).unwrap();
    let root = new_root(&arena, g);
    // SAFETY: the root was just allocated from this allocator for this geometry.
    let w = unsafe { Walker::<Fake, _>::new(g, root, &arena) };
    map(
        &w,
        &req(0, n * PAGE, 0x4000_0000, 3, 3),
        &common::Rec::<true>,
    )
    .unwrap();
    let mut v = Recorder {
        events: Vec::new(),
        skip,
    };
    let Ok(()) = w.walk(start, end, &mut v);
    (v.events, arena)
}

#[test]
fn a_whole_level3_table_is_one_leaf_run() {
    let (ev, _arena) = events_after_mapping(39, 512, 0, 2 * MIB2, never);
    let runs: Vec<&Ev> = ev.iter().filter(|e| matches!(e, Ev::Run(..))).collect();
    // L1 entry 0 -> L2 entry 0 (a table) -> one run of the 512 pages, then the run of the
    // invalid L2 entry 1 (the walk covers 4 MiB).
    assert_eq!(runs, [&Ev::Run(3, 0, 512), &Ev::Run(2, 1, 1)]);
    assert_eq!(ev[0], Ev::Pre(1, 0, 0));
    assert_eq!(ev[1], Ev::Pre(2, 0, 0));
    assert_eq!(ev.last(), Some(&Ev::Post(1, 0, 0)));
}

#[test]
fn skipped_table_gets_no_children_and_no_post_visit() {
    // Skip every level-2 table: the walk sees the pre-visit of L2 entry 0 and nothing below.
    let (ev, _arena) = events_after_mapping(39, 512, 0, MIB2, |l, _| l == 2);
    assert_eq!(ev, [Ev::Pre(1, 0, 0), Ev::Pre(2, 0, 0), Ev::Post(1, 0, 0)]);
}

#[test]
fn partial_walk_reports_the_covered_part_of_each_entry() {
    // [4 KiB, 2 MiB + 8 KiB): the L2 entries are covered in part, the pages whole.
    let (ev, _arena) = events_after_mapping(39, 1024, PAGE, MIB2 + 2 * PAGE, never);
    let l2: Vec<&Ev> = ev
        .iter()
        .filter(|e| matches!(e, Ev::Pre(2, ..) | Ev::Post(2, ..)))
        .collect();
    assert_eq!(
        l2,
        [
            &Ev::Pre(2, 0, 0),
            &Ev::Post(2, 0, 0),
            &Ev::Pre(2, 1, MIB2),
            &Ev::Post(2, 1, MIB2)
        ]
    );
    let runs: Vec<&Ev> = ev.iter().filter(|e| matches!(e, Ev::Run(..))).collect();
    assert_eq!(runs, [&Ev::Run(3, 1, 511), &Ev::Run(3, 0, 2)]);
    let first_leaf = ev.iter().find(|e| matches!(e, Ev::Leaf(..))).unwrap();
    assert_eq!(
        first_leaf,
        &Ev::Leaf(
            3,
            1,
            PAGE,
            (PAGE, 2 * PAGE),
            Fake::encode_leaf(PhysAddr(0x4000_1000), FakeAttrs(3), 3)
        )
    );
}

#[test]
fn walk_to_the_top_of_a_concatenated_root() {
    // 40-bit stage 2: the last entry of the second concatenated root table covers the last GiB.
    let arena = Arena::standard();
    let g = Geometry::new(Fake::LIMITS, 40).unwrap();
    let root = new_root(&arena, g);
    // SAFETY: the root was just allocated from this allocator for this geometry.
    let w = unsafe { Walker::<Fake, _>::new(g, root, &arena) };
    let top = g.ia_size() - PAGE;
    map(&w, &req(top, PAGE, 0x1000, 1, 3), &common::Rec::<true>).unwrap();
    let mut v = Recorder {
        events: Vec::new(),
        skip: never,
    };
    let Ok(()) = w.walk(top - GIB, g.ia_size(), &mut v);
    assert_eq!(v.events[0], Ev::Run(1, 1022, 1));
    assert_eq!(v.events[2], Ev::Pre(1, 1023, g.ia_size() - GIB));
    assert_eq!(
        v.events[v.events.len() - 3],
        Ev::Leaf(
            3,
            511,
            top,
            (top, g.ia_size()),
            Fake::encode_leaf(PhysAddr(0x1000), FakeAttrs(1), 3)
        )
    );
    assert_eq!(
        v.events[v.events.len() - 2..],
        [
            Ev::Post(2, 511, g.ia_size() - MIB2),
            Ev::Post(1, 1023, g.ia_size() - GIB)
        ]
    );
}
