//! Shared by the model-based tests (issue 9): a plain reference model of a tree's leaves, the
//! table count it implies, and a dump of the real tree to compare with it.
#![allow(dead_code)]

use pt_core::{
    entry_size, Entries, Entry, Format, Geometry, LeafFlow, PageAllocator, PhysAddr, TableFlow,
    Visitor, Walker, PAGE_SIZE,
};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Debug;

/// One leaf of the model: its level, the output address of its first byte, its attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MLeaf<A> {
    pub level: u8,
    pub oa: u64,
    pub attrs: A,
}

impl<A> MLeaf<A> {
    pub fn size(&self) -> u64 {
        entry_size(self.level)
    }
}

/// The reference model: leaf start -> leaf. Leaves never overlap. Which tables exist follows
/// from the leaves alone (a table exists exactly where a deeper leaf needs it), because every
/// operation frees the tables it empties and never creates one it does not fill.
#[derive(Clone, Debug, Default)]
pub struct Model<A> {
    pub leaves: BTreeMap<u64, MLeaf<A>>,
}

/// What a map request asks for, as the model sees it.
#[derive(Clone, Copy, Debug)]
pub struct MapReq<A> {
    pub ia: u64,
    pub size: u64,
    pub oa: u64,
    pub attrs: A,
    /// Lowest level a leaf may be written at (1, 2 or 3).
    pub leaf_level: u8,
}

impl<A: Copy + Eq + Debug> Model<A> {
    pub fn new() -> Self {
        Self {
            leaves: BTreeMap::new(),
        }
    }

    /// The leaf mapping `ia`: (leaf start, leaf).
    pub fn at(&self, ia: u64) -> Option<(u64, MLeaf<A>)> {
        let (&s, &l) = self.leaves.range(..=ia).next_back()?;
        (ia - s < l.size()).then_some((s, l))
    }

    /// Output address and attributes of `ia`.
    pub fn translate(&self, ia: u64) -> Option<(u64, A)> {
        self.at(ia).map(|(s, l)| (l.oa + (ia - s), l.attrs))
    }

    /// Starts of the leaves that intersect `[s, e)`, in address order.
    pub fn intersecting(&self, s: u64, e: u64) -> Vec<u64> {
        let mut v: Vec<u64> = Vec::new();
        if let Some((first, _)) = self.at(s) {
            v.push(first);
        }
        v.extend(self.leaves.range(s..e).map(|(&k, _)| k));
        v.dedup();
        v
    }

    /// Removes every leaf that intersects `[s, e)` (whole: the stage-2 rule for a partly
    /// covered block). Returns them.
    pub fn remove_whole(&mut self, s: u64, e: u64) -> Vec<(u64, MLeaf<A>)> {
        self.intersecting(s, e)
            .into_iter()
            .map(|k| (k, self.leaves.remove(&k).unwrap()))
            .collect()
    }

    /// Rewrites the attributes of every leaf intersecting `[s, e)` with `f`; returns how many
    /// changed.
    pub fn update(&mut self, s: u64, e: u64, mut f: impl FnMut(u64, &MLeaf<A>) -> A) -> usize {
        let mut n = 0;
        for k in self.intersecting(s, e) {
            let l = self.leaves.get_mut(&k).unwrap();
            let new = f(k, l);
            if new != l.attrs {
                l.attrs = new;
                n += 1;
            }
        }
        n
    }

    /// The first input address where `req` conflicts with a leaf (another output address or
    /// other attributes), as the map operation reports it.
    pub fn conflict(&self, req: &MapReq<A>) -> Option<u64> {
        let e = req.ia + req.size;
        self.intersecting(req.ia, e).into_iter().find_map(|k| {
            let l = self.leaves[&k];
            let s = k.max(req.ia);
            let ok = l.oa + (s - k) == req.oa + (s - req.ia) && l.attrs == req.attrs;
            (!ok).then_some(s)
        })
    }

    /// Applies `req` (which must not conflict) as the map operation does: existing leaves are
    /// kept, tables descended into, and an invalid entry becomes a leaf where the request
    /// allows one at that level (covering the entry whole, output aligned), else a table.
    pub fn map(&mut self, g: &Geometry, block_allowed: fn(u8) -> bool, req: &MapReq<A>) {
        self.map_level(
            g.start_level(),
            req.ia,
            req.ia + req.size,
            block_allowed,
            req,
        );
    }

    fn map_level(&mut self, level: u8, lo: u64, hi: u64, ok: fn(u8) -> bool, req: &MapReq<A>) {
        let size = entry_size(level);
        let mut es = lo / size * size;
        while es < hi {
            let ee = es + size;
            let (s, e) = (lo.max(es), hi.min(ee));
            let oa = req.oa + (s - req.ia);
            match self.leaves.range(es..ee).next() {
                Some((&k, l)) if k == es && l.level == level => {}
                Some(_) => self.map_level(level + 1, s, e, ok, req),
                None => {
                    let leaf_ok = e - s == size
                        && (level == 3 || (ok(level) && level >= req.leaf_level && oa % size == 0));
                    if leaf_ok {
                        self.leaves.insert(
                            s,
                            MLeaf {
                                level,
                                oa,
                                attrs: req.attrs,
                            },
                        );
                    } else {
                        self.map_level(level + 1, s, e, ok, req);
                    }
                }
            }
            es = ee;
        }
    }

    /// Replaces the block at `k` with the 512 leaves one level down that map the same.
    pub fn split(&mut self, k: u64) {
        let l = self.leaves.remove(&k).unwrap();
        assert!(l.level < 3);
        let child = entry_size(l.level + 1);
        for i in 0..512 {
            self.leaves.insert(
                k + i * child,
                MLeaf {
                    level: l.level + 1,
                    oa: l.oa + i * child,
                    attrs: l.attrs,
                },
            );
        }
    }

    /// Non-root tables the leaves need: for a leaf at level L, one table at each level from
    /// `start + 1` to L.
    pub fn tables(&self, g: &Geometry) -> usize {
        let start = g.start_level() as usize;
        // Leaves come in address order, so the table holding them at each level changes
        // monotonically: count the changes.
        let mut last = [u64::MAX; 4];
        let mut n = 0;
        for (&ia, l) in &self.leaves {
            for (lvl, seen) in last
                .iter_mut()
                .enumerate()
                .take(l.level as usize + 1)
                .skip(start + 1)
            {
                let span = entry_size(lvl as u8 - 1);
                let t = ia / span * span;
                if *seen != t {
                    *seen = t;
                    n += 1;
                }
            }
        }
        n
    }
}

/// Every leaf of a real tree and the number of (non-root) tables, found by walking all of it.
pub struct Dump<A> {
    pub leaves: Vec<(u64, MLeaf<A>)>,
    pub tables: usize,
}

impl<F: Format, P: PageAllocator> Visitor<F, P> for Dump<F::Attrs> {
    type Error = Infallible;

    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Infallible> {
        for k in 0..run.len() {
            match run.decode(k) {
                Entry::Leaf { oa, attrs } => self.leaves.push((
                    run.ia(k),
                    MLeaf {
                        level: run.level(),
                        oa: oa.0,
                        attrs,
                    },
                )),
                Entry::Invalid => {}
                Entry::Table(_) => panic!("table entry in a leaf run"),
            }
        }
        Ok(LeafFlow::Done)
    }

    fn table_pre(&mut self, _: &mut Entries<'_, F, P>) -> Result<TableFlow, Infallible> {
        self.tables += 1;
        Ok(TableFlow::Descend)
    }
}

/// Walks the whole tree rooted at `root`.
pub fn dump<F: Format, P: PageAllocator>(g: Geometry, root: PhysAddr, alloc: &P) -> Dump<F::Attrs> {
    // SAFETY: `root` is the root of a live tree of geometry `g` built from `alloc`.
    let w = unsafe { Walker::<F, P>::new(g, root, alloc) };
    let mut d = Dump {
        leaves: Vec::new(),
        tables: 0,
    };
    let Ok(()) = w.walk(0, g.ia_size(), &mut d);
    d
}

/// Asserts that the tree holds exactly the model's leaves (nothing else is reachable) and
/// exactly the tables they need; returns that table count.
pub fn assert_tree<F: Format, P: PageAllocator>(
    g: Geometry,
    root: PhysAddr,
    alloc: &P,
    model: &Model<F::Attrs>,
    ctx: &dyn Fn() -> String,
) -> usize {
    let d = dump::<F, P>(g, root, alloc);
    let want: Vec<(u64, MLeaf<F::Attrs>)> = model.leaves.iter().map(|(&k, &l)| (k, l)).collect();
    if d.leaves != want {
        let first = d
            .leaves
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(d.leaves.len().min(want.len()));
        panic!(
            "{}: tree and model differ at leaf #{first}: tree {:x?}, model {:x?} ({} vs {} leaves)",
            ctx(),
            d.leaves.get(first),
            want.get(first),
            d.leaves.len(),
            want.len()
        );
    }
    let need = model.tables(&g);
    assert_eq!(d.tables, need, "{}: tables in the tree vs needed", ctx());
    need
}

/// Up to `n` page-aligned addresses spread over `[s, e)`: both ends and pseudo-random ones.
pub fn samples(s: u64, e: u64, n: usize, seed: u64) -> Vec<u64> {
    let pages = (e - s) / PAGE_SIZE;
    let mut v = vec![s, e - PAGE_SIZE];
    let mut x = seed | 1;
    for _ in 0..n.saturating_sub(2).min(pages as usize) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(s + (x % pages) * PAGE_SIZE);
    }
    v
}

/// A small xorshift generator for choices inside one step.
pub struct Xs(pub u64);

impl Xs {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0 | 1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}
