//! Random sequences of map / unmap / update / split (with injected allocation failures) on the
//! fake format, checked after every step against a plain model of what should be mapped, and
//! by the break-before-make checker; at the end, unmapping everything leaves only the root.

mod common;

use common::{dump, new_root, req, Rec, VTTBR};
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, RngSeed};
use pt_core::ops::{
    free_tree, map, split_block, translate, unmap, update, Error, PartialBlock, Reserve,
};
use pt_core::testkit::fake::{Fake, FakeAttrs};
use pt_core::testkit::Arena;
use pt_core::{entry_size, Entry, Format, Geometry, TlbBatch, TlbScope, Walker};

const PAGE: u64 = 4096;
const M2: u64 = 1 << 21;
const G1: u64 = 1 << 30;
const WINDOW: u64 = 4 * G1;
const OA_BASE: [u64; 2] = [0x40_0000_0000, 0x80_0000_0000];

/// Mapped intervals `[start, end)` -> output of `start`, attributes. Intervals may overlap only
/// where they agree.
#[derive(Default, Clone, Debug)]
struct Model(Vec<(u64, u64, u64, u8)>);

impl Model {
    fn at(&self, ia: u64) -> Option<(u64, u8)> {
        self.0
            .iter()
            .find(|&&(s, e, _, _)| s <= ia && ia < e)
            .map(|&(s, _, oa, a)| (oa + (ia - s), a))
    }

    /// First page of `[s, e)` mapped differently from `oa`/`attrs`.
    fn conflict(&self, s: u64, e: u64, oa: u64, attrs: u8) -> Option<u64> {
        self.0
            .iter()
            .filter(|&&(is, ie, _, _)| is < e && s < ie)
            .filter(|&&(is, _, ioa, ia)| ia != attrs || ioa.wrapping_sub(is) != oa.wrapping_sub(s))
            .map(|&(is, ..)| is.max(s))
            .min()
    }

    fn remove(&mut self, s: u64, e: u64) -> Vec<(u64, u64, u64, u8)> {
        let mut out = Vec::new();
        let mut removed = Vec::new();
        for &(is, ie, oa, a) in &self.0 {
            if ie <= s || e <= is {
                out.push((is, ie, oa, a));
                continue;
            }
            if is < s {
                out.push((is, s, oa, a));
            }
            if e < ie {
                out.push((e, ie, oa + (e - is), a));
            }
            let (cs, ce) = (is.max(s), ie.min(e));
            removed.push((cs, ce, oa + (cs - is), a));
        }
        self.0 = out;
        removed
    }

    /// Bytes mapped (the union of the intervals).
    fn mapped(&self) -> u64 {
        let mut v: Vec<(u64, u64)> = self.0.iter().map(|&(s, e, ..)| (s, e)).collect();
        v.sort();
        let (mut total, mut cur) = (0, 0);
        for (s, e) in v {
            let s = s.max(cur);
            if e > s {
                total += e - s;
                cur = e;
            }
        }
        total
    }
}

/// The range an operation with [`PartialBlock::Whole`] really covers: widened to the leaves
/// that hold its first and last page.
fn widened(w: &Walker<'_, Fake, Arena>, s: u64, e: u64) -> (u64, u64) {
    let s2 = translate(w, s).map_or(s, |t| t.leaf_ia);
    let e2 = translate(w, e - PAGE).map_or(e, |t| t.leaf_ia + t.size());
    (s2, e2)
}

fn check_against_model(w: &Walker<'_, Fake, Arena>, model: &Model) {
    let leaves: Vec<(u8, u64, u64)> = dump::<Fake, Arena>(w.alloc(), w.geometry(), w.root())
        .into_iter()
        .filter(|&(l, _, d)| !(l < 3 && Fake::is_table(d, l)))
        .collect();
    let mut total = 0;
    for &(level, ia, desc) in &leaves {
        let size = entry_size(level);
        total += size;
        let Entry::Leaf { oa, attrs } = Fake::decode(desc, level) else {
            panic!("dump gave a non-leaf {desc:#x}");
        };
        for p in [ia, ia + size - PAGE] {
            assert_eq!(
                model.at(p),
                Some((oa.0 + (p - ia), attrs.0)),
                "leaf L{level} at {ia:#x}, page {p:#x}"
            );
        }
    }
    assert_eq!(total, model.mapped(), "bytes mapped");
    for &(s, e, ..) in &model.0 {
        for p in [s, e - PAGE] {
            let t = translate(w, p).map(|t| (t.oa.0, t.attrs.0));
            assert_eq!(t, model.at(p), "translate {p:#x}");
        }
    }
}

fn sized(kind: u64, base: u64, a: u64, b: u64) -> (u64, u64, u8) {
    let leaf_level = 1 + (kind % 3) as u8;
    let (unit, count) = match leaf_level {
        1 => (G1, 1 + b % 2),
        2 => (M2, 1 + b % 3),
        _ => (PAGE, 1 + b % 600),
    };
    let align = if a & 1 == 0 { unit } else { PAGE };
    let size = unit * count;
    let ia = base + ((a >> 1) % (WINDOW - size)) / align * align;
    (ia, size, leaf_level)
}

fn run(bits: u8, top: bool, ops: &[(u8, u64, u64, u64)]) {
    let arena = Arena::standard();
    let g = Geometry::new(Fake::LIMITS, bits).unwrap();
    // SAFETY: the root was just allocated from this allocator for this geometry.
    let w = unsafe { Walker::<Fake, _>::new(g, new_root(&arena, g), &arena) };
    let base = if top { g.ia_size() - WINDOW } else { 0 };
    let m = Rec::<true>;
    let mut model = Model::default();
    for &(op, a, b, c) in ops {
        let (ia, size, leaf_level) = sized((op / 8) as u64, base, a, b);
        match op % 8 {
            0..=3 => {
                let mut oa = OA_BASE[(c & 1) as usize] + (ia - base);
                if c & 8 != 0 && leaf_level > 1 {
                    oa += PAGE;
                }
                let attrs = ((c >> 1) % 2) as u8 + 1;
                let live = arena.live_pages();
                // One map in eight fails at its first, second or third allocation.
                let fail = if (c >> 4) % 8 == 0 {
                    1 + (c >> 7) % 3
                } else {
                    0
                };
                if fail > 0 {
                    arena.fail_nth(fail);
                }
                let r = map(
                    &w,
                    &req(ia, size, oa, attrs, leaf_level),
                    &common::Rec::<true>,
                );
                arena.stop_failing();
                match model.conflict(ia, ia + size, oa, attrs) {
                    Some(at) => assert_eq!(r, Err(Error::Conflict { ia: at })),
                    None if r == Err(Error::OutOfMemory) => {
                        assert_eq!(arena.live_pages(), live, "leak after OutOfMemory")
                    }
                    None => {
                        assert_eq!(r, Ok(()));
                        model.0.push((ia, ia + size, oa, attrs));
                    }
                }
            }
            4 | 5 => {
                let (s, e) = widened(&w, ia, ia + size);
                unmap(&w, ia, size, PartialBlock::Whole, &mut s2(&m)).unwrap();
                model.remove(s, e);
            }
            6 => {
                let (s, e) = widened(&w, ia, ia + size);
                let attrs = (c % 3) as u8 + 1;
                update(
                    &w,
                    ia,
                    size,
                    PartialBlock::Whole,
                    &mut s2(&m),
                    |_, _, _, _| FakeAttrs(attrs),
                )
                .unwrap();
                let changed = model.remove(s, e);
                model
                    .0
                    .extend(changed.into_iter().map(|(s, e, oa, _)| (s, e, oa, attrs)));
            }
            _ => {
                let mut src = Reserve::fill(&arena, 1).unwrap();
                let before = translate(&w, ia);
                let r = split_block(&w, ia, &mut src, &mut s2(&m));
                match before {
                    None => assert_eq!(r, Err(Error::NotMapped { ia })),
                    Some(t) => assert_eq!(r, Ok(t.level < 3)),
                }
            }
        }
        check_against_model(&w, &model);
    }
    unmap(&w, 0, g.ia_size(), PartialBlock::Refuse, &mut s2(&m)).unwrap();
    assert_eq!(arena.live_pages(), g.root_pages());
    free_tree(&w, &mut s2(&m));
    assert_eq!(arena.live_pages(), 0);
}

fn s2(m: &Rec<true>) -> TlbBatch<'_, Rec<true>> {
    TlbBatch::new(m, TlbScope::Stage2 { vttbr: VTTBR })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(0x6d6f_6465_6c00_0001),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_match_the_model(
        bits in prop::sample::select(vec![39u8, 40, 48]),
        top in any::<bool>(),
        ops in prop::collection::vec((any::<u8>(), any::<u64>(), any::<u64>(), any::<u64>()), 1..40),
    ) {
        run(bits, top, &ops);
    }
}
