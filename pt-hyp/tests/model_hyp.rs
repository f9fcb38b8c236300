//! Model-based differential tests of [`HypTables`] (issue 9): random sequences of hyp-mode
//! operations (map ranges with pages and blocks, W+X opt-in, I/O and exec mappings from the
//! private area, the identity map, unmapping with the partial-block refusal, freeing and
//! re-creating the tables) for ARMv7 (32-bit VA) and ARMv8 (32-, 40- and 48-bit VA), against a
//! plain model of the leaves.
//!
//! After every operation: the result is the one the model predicts; the tree holds exactly the
//! model's leaves and the tables they need, and nothing else is live in the arena; translate
//! agrees with the model; the break-before-make checker is clean; and a simulated TLB told only
//! of the invalidations the crate issued holds no stale translation.

mod model_support;

use model_support::{assert_tree, samples, MapReq, Model, Xs};
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, RngSeed};
use pt_core::testkit::tlbsim::TlbSim;
use pt_core::testkit::{log, Arena};
use pt_core::{entry_size, Format, TlbScope, Walker};
use pt_hyp::hyp::{HypConfig, HypError, HypTables};
use pt_hyp::{Arch, MemType, Perms, PhysAddr, Stage1Attrs, VirtAddr};

const PAGE: u64 = 4096;
const M2: u64 = 1 << 21;
const G1: u64 = 1 << 30;
const WINDOW: u64 = 4 * G1;
const OA_BASE: [u64; 2] = [0x10_0000_0000, 0x40_0000_0000];
/// The private I/O area, as an offset in the window, and its size.
const IO_OFF: u64 = 3 * G1 + G1 / 2;
const IO_SIZE: u64 = G1 / 4;

type Hyp<'a, A> = HypTables<A, &'a Arena>;

struct Harness<'a, A: Arch> {
    arena: &'a Arena,
    bits: u8,
    base: u64,
    hyp: Option<Hyp<'a, A>>,
    model: Model<Stage1Attrs>,
    io_next: u64,
    idmap: Option<(u64, u64)>,
    tlb: TlbSim<A::Hyp>,
    step: usize,
    what: String,
}

/// What the descriptor holds: hyp mappings are readable, device memory never executable.
fn normalise(mut a: Stage1Attrs) -> Stage1Attrs {
    a.perms |= Perms::R;
    if a.mem.is_device() {
        a.perms = a.perms.without(Perms::X);
    }
    a
}

impl<'a, A: Arch> Harness<'a, A> {
    fn config(&self) -> HypConfig {
        HypConfig::new(self.bits, 40, VirtAddr(self.base + IO_OFF), IO_SIZE)
    }

    fn new(arena: &'a Arena, bits: u8, top: bool) -> Self {
        let ia_size = 1u64 << bits;
        let base = if top { ia_size - WINDOW } else { 0 };
        let mut h = Self {
            arena,
            bits,
            base,
            hyp: None,
            model: Model::new(),
            io_next: base + IO_OFF,
            idmap: None,
            tlb: TlbSim::new(TlbScope::Hyp, 128),
            step: 0,
            what: String::from("new"),
        };
        h.hyp = Some(HypTables::new(arena, h.config()).unwrap());
        h
    }

    fn hyp(&mut self) -> &mut Hyp<'a, A> {
        self.hyp.as_mut().unwrap()
    }

    fn ctx(&self) -> String {
        format!(
            "{} hyp va{} base {:#x}, step {}: {}",
            A::NAME,
            self.bits,
            self.base,
            self.step,
            self.what
        )
    }

    fn pick(&self, a: u64) -> u64 {
        let at = self.base + ((a >> 1) % (WINDOW / PAGE)) * PAGE;
        match self.model.leaves.range(at..).next() {
            Some((&k, l)) if a & 1 == 1 => k + ((a >> 24) % (l.size() / PAGE)) * PAGE,
            _ => at,
        }
    }

    fn sized(&self, kind: u64, a: u64, b: u64) -> (u64, u64) {
        let (unit, count) = match kind % 8 {
            0 => (G1, 1 + b % 2),
            1..=3 => (M2, 1 + b % 3),
            _ => (PAGE, 1 + if b & 0x300 == 0 { b % 600 } else { b % 24 }),
        };
        let align = match (a & 1, unit) {
            (0, _) => unit,
            (_, G1) => M2,
            _ => PAGE,
        };
        let size = unit * count;
        let ia = if a & 2 != 0 {
            let p = self.pick(a >> 2 | 1) / align * align;
            p.min(self.base + WINDOW - size).max(self.base)
        } else {
            self.base + ((a >> 2) % (WINDOW - size)) / align * align
        };
        (ia, size)
    }

    fn conflict_err(&self, va: u64) -> HypError {
        match self.idmap {
            Some((s, l)) if s <= va && va - s < l => HypError::IdmapCollision { va: VirtAddr(va) },
            _ => HypError::Conflict { va: VirtAddr(va) },
        }
    }

    fn io_overlap(&self, s: u64, e: u64) -> Option<u64> {
        let (ios, ioe) = (self.base + IO_OFF, self.base + IO_OFF + IO_SIZE);
        (s < ioe && ios < e).then(|| s.max(ios))
    }

    /// Maps through `f` and checks the result against the model; `wx` says whether W+X is
    /// allowed. Returns the touched range.
    fn map_op(&mut self, a: u64, b: u64, c: u64, kind: u64) -> (u64, u64) {
        let (va, size) = self.sized(kind, a, b);
        let mut oa = OA_BASE[(c >> 6 & 1) as usize] + (va - self.base);
        if c & 0x80 != 0 {
            oa += if size >= G1 { M2 } else { PAGE };
        }
        let raw = match c % 6 {
            0 => Stage1Attrs::normal(Perms::RW),
            1 => Stage1Attrs::normal(Perms::R),
            2 => Stage1Attrs::normal(Perms::RX),
            3 => Stage1Attrs::normal(Perms::RWX),
            4 => Stage1Attrs::device(),
            _ => Stage1Attrs {
                perms: Perms::W,
                mem: MemType::NormalNc,
            },
        };
        let allow_wx = c & 0x100 != 0;
        let fail = if (c >> 9) % 6 == 0 {
            1 + (c >> 12) % 3
        } else {
            0
        };
        self.what = format!(
            "map_range{} {va:#x}+{size:#x} -> {oa:#x} {raw:?} (fail alloc #{fail})",
            if allow_wx { "_allow_wx" } else { "" }
        );
        let live = self.arena.live_pages();
        if fail > 0 {
            self.arena.fail_nth(fail);
        }
        let r = if allow_wx {
            self.hyp()
                .map_range_allow_wx(VirtAddr(va), PhysAddr(oa), size, raw)
        } else {
            self.hyp().map_range(VirtAddr(va), PhysAddr(oa), size, raw)
        };
        self.arena.stop_failing();
        let attrs = normalise(raw);
        let req = MapReq {
            ia: va,
            size,
            oa,
            attrs,
            leaf_level: 1,
        };
        let want = if !allow_wx && attrs.perms.contains(Perms::W.with(Perms::X)) {
            Err(HypError::WriteExec { va: VirtAddr(va) })
        } else if let Some(v) = self.io_overlap(va, va + size) {
            Err(HypError::InIoArea { va: VirtAddr(v) })
        } else if let Some(v) = self.model.conflict(&req) {
            Err(self.conflict_err(v))
        } else {
            Ok(())
        };
        if want.is_ok() && fail > 0 && r == Err(HypError::OutOfMemory) {
            assert_eq!(self.arena.live_pages(), live, "{}: leak", self.ctx());
        } else {
            assert_eq!(r, want, "{}", self.ctx());
            if r.is_ok() {
                let g = self.hyp.as_ref().unwrap().geometry();
                self.model.map(&g, <A::Hyp as Format>::block_allowed, &req);
            }
        }
        (va, va + size)
    }

    /// The VA the I/O area gives for `[pa, pa + size)`, or the error.
    fn io_alloc(&self, pa: u64, size: u64) -> Result<u64, HypError> {
        let align = (1..=2)
            .filter(|&l| <A::Hyp as Format>::block_allowed(l))
            .map(entry_size)
            .find(|&b| pa % b == 0 && size >= b)
            .unwrap_or(PAGE);
        let end = self.base + IO_OFF + IO_SIZE;
        let fits = |al: u64| {
            let s = self.io_next.next_multiple_of(al);
            (s + size <= end).then_some(s)
        };
        fits(align)
            .or_else(|| fits(PAGE))
            .ok_or(HypError::IoAreaFull {
                size,
                available: end - self.io_next,
            })
    }

    fn op(&mut self, op: u8, a: u64, b: u64, c: u64) -> (u64, u64) {
        let g = self.hyp.as_ref().unwrap().geometry();
        match op % 12 {
            0..=4 => self.map_op(a, b, c, (op / 12) as u64),
            // Unmap: a block straddling either end is refused before anything changes.
            5 | 6 => {
                let (va, size) = self.sized(b >> 1, a, b);
                self.what = format!("unmap {va:#x}+{size:#x}");
                let r = self.hyp().unmap_range(VirtAddr(va), size);
                let e = va + size;
                let partial = self
                    .model
                    .intersecting(va, e)
                    .into_iter()
                    .find(|&k| k < va || k + self.model.leaves[&k].size() > e);
                match partial {
                    Some(k) => assert_eq!(
                        r,
                        Err(HypError::PartialBlock { va: VirtAddr(k) }),
                        "{}",
                        self.ctx()
                    ),
                    None => {
                        assert_eq!(r, Ok(()), "{}", self.ctx());
                        self.model.remove_whole(va, e);
                        if let Some((s, l)) = self.idmap {
                            if s < e && va < s + l {
                                self.idmap = None;
                            }
                        }
                    }
                }
                (va, e)
            }
            // I/O or exec mappings in the private area.
            7 | 8 => {
                let exec = op % 12 == 8;
                let size = match b % 4 {
                    0 => M2,
                    _ => (1 + b % 8) * PAGE,
                };
                let pa = match c % 3 {
                    0 => 0x3f_0000_0000 + (a % 64) * M2,
                    _ => 0x3f_0000_0000 + (a % 4096) * PAGE,
                };
                let fail = if (c >> 4) % 5 == 0 {
                    1 + (c >> 7) % 2
                } else {
                    0
                };
                self.what = format!(
                    "create_{}_mappings {pa:#x}+{size:#x} (fail alloc #{fail})",
                    if exec { "exec" } else { "io" }
                );
                let live = self.arena.live_pages();
                if fail > 0 {
                    self.arena.fail_nth(fail);
                }
                let r = if exec {
                    self.hyp().create_exec_mappings(PhysAddr(pa), size)
                } else {
                    self.hyp().create_io_mappings(PhysAddr(pa), size)
                };
                self.arena.stop_failing();
                let want = self.io_alloc(pa, size);
                match (want, r) {
                    (Ok(_), Err(HypError::OutOfMemory)) if fail > 0 => {
                        assert_eq!(self.arena.live_pages(), live, "{}: leak", self.ctx());
                        (pa, pa + PAGE)
                    }
                    (Ok(va), r) => {
                        assert_eq!(r, Ok(VirtAddr(va)), "{}", self.ctx());
                        self.io_next = va + size;
                        let attrs = normalise(if exec {
                            Stage1Attrs::normal(Perms::RX)
                        } else {
                            Stage1Attrs::device()
                        });
                        let req = MapReq {
                            ia: va,
                            size,
                            oa: pa,
                            attrs,
                            leaf_level: 1,
                        };
                        assert_eq!(self.model.conflict(&req), None);
                        self.model.map(&g, <A::Hyp as Format>::block_allowed, &req);
                        (va, va + size)
                    }
                    (Err(e), r) => {
                        assert_eq!(r, Err(e), "{}", self.ctx());
                        (pa, pa + PAGE)
                    }
                }
            }
            // The identity map.
            9 => {
                let pa = self.pick(a);
                let size = (1 + b % 4) * PAGE;
                let pa = pa.min(self.base + WINDOW - size);
                self.what = format!("map_idmap {pa:#x}+{size:#x}");
                let r = self.hyp().map_idmap(PhysAddr(pa), size);
                let attrs = normalise(Stage1Attrs::normal(Perms::RX));
                let req = MapReq {
                    ia: pa,
                    size,
                    oa: pa,
                    attrs,
                    leaf_level: 1,
                };
                let want = match self.idmap {
                    Some((s, l)) if (s, l) == (pa, size) => Ok(()),
                    Some((s, l)) => Err(HypError::IdmapAlreadyMapped {
                        start: PhysAddr(s),
                        size: l,
                    }),
                    None => match (self.io_overlap(pa, pa + size), self.model.conflict(&req)) {
                        (Some(v), _) => Err(HypError::IdmapCollision { va: VirtAddr(v) }),
                        // VA == PA: beyond the 40-bit PA space in the top of a 48-bit VA one.
                        _ if pa + size > 1 << 40 => Err(HypError::OutputTooLarge {
                            end: pa + size,
                            bits: 40,
                        }),
                        (None, Some(v)) => Err(HypError::IdmapCollision { va: VirtAddr(v) }),
                        (None, None) => Ok(()),
                    },
                };
                assert_eq!(r, want, "{}", self.ctx());
                if r.is_ok() && self.idmap.is_none() {
                    self.model.map(&g, <A::Hyp as Format>::block_allowed, &req);
                    self.idmap = Some((pa, size));
                }
                (pa, pa + size)
            }
            // Free everything and start again.
            10 if c % 3 == 0 => {
                self.what = String::from("free and re-create");
                self.hyp.take().unwrap().free();
                assert_eq!(
                    self.arena.live_pages(),
                    0,
                    "{}: leak after free",
                    self.ctx()
                );
                self.hyp = Some(HypTables::new(self.arena, self.config()).unwrap());
                self.model = Model::new();
                self.io_next = self.base + IO_OFF;
                self.idmap = None;
                (self.base, self.base + WINDOW)
            }
            _ => {
                let va = self.pick(a);
                self.what = format!("lookups around {va:#x}");
                (va, va + PAGE)
            }
        }
    }

    fn check(&mut self, touched: (u64, u64), seed: u64) {
        let v = log::violations();
        assert!(v.is_empty(), "{}: break-before-make: {v:?}", self.ctx());
        let hyp = self.hyp.as_ref().unwrap();
        let g = hyp.geometry();
        let ctx = self.ctx();
        let tables =
            assert_tree::<A::Hyp, &Arena>(g, hyp.root(), hyp.alloc(), &self.model, &|| ctx.clone());
        assert_eq!(
            self.arena.live_pages(),
            g.root_pages() + tables,
            "{}: live pages vs root + needed tables",
            self.ctx()
        );
        let mut rng = Xs(seed);
        let mut probes = samples(touched.0, touched.1, 16, seed);
        for _ in 0..8 {
            probes.push(self.base + (rng.next() % (WINDOW / PAGE)) * PAGE);
        }
        probes.push((rng.next() % g.ia_size()) & !(PAGE - 1));
        for &p in &probes {
            let va = p + 0x321;
            let t = hyp.translate(VirtAddr(va));
            let want = self
                .model
                .at(va)
                .map(|(k, l)| (PhysAddr(l.oa + (va - k)), l.attrs, l.level, k));
            assert_eq!(
                t.map(|t| (t.oa, t.attrs, t.level, t.leaf_ia)),
                want,
                "{}: translate {va:#x}",
                self.ctx()
            );
        }
        // SAFETY: a second walker over the live tree, used only for reading while the tree is unchanged.
        let w = unsafe { Walker::<A::Hyp, &Arena>::new(g, hyp.root(), hyp.alloc()) };
        self.tlb.sync();
        if let Err(e) = self.tlb.check(&w) {
            panic!("{}: {e}", self.ctx());
        }
        for &p in probes.iter().take(12) {
            let got = self.tlb.lookup(&w, p);
            let want = self.model.translate(p).map(|(oa, a)| (PhysAddr(oa), a));
            assert_eq!(got, want, "{}: TLB lookup {p:#x}", self.ctx());
        }
    }
}

fn run<A: Arch>(bits: u8, top: bool, ops: &[(u8, u64, u64, u64)]) {
    let arena = Arena::standard();
    let mut h = Harness::<A>::new(&arena, bits, top);
    h.check((h.base, h.base + PAGE), 1);
    for (i, &(op, a, b, c)) in ops.iter().enumerate() {
        h.step = i + 1;
        let touched = h.op(op, a, b, c);
        h.check(touched, a ^ c.rotate_left(17));
    }
    h.what = String::from("free");
    h.hyp.take().unwrap().free();
    assert_eq!(arena.live_pages(), 0, "{}: leak at the end", h.ctx());
    h.tlb.sync();
    assert!(
        h.tlb.entries().is_empty(),
        "free must invalidate all of hyp"
    );
}

/// Sequences per configuration and their length, fixed for CI.
const CASES: u32 = 64;
const MAX_OPS: usize = 40;

macro_rules! model_tests {
    ($($name:ident: $arch:ty, $bits:expr;)*) => {
        proptest! {
            #![proptest_config(ProptestConfig {
                cases: CASES,
                failure_persistence: None,
                rng_algorithm: RngAlgorithm::ChaCha,
                rng_seed: RngSeed::Fixed(0x4879_706d_6f64_656c),
                ..ProptestConfig::default()
            })]
            $(
                #[test]
                fn $name(
                    top in any::<bool>(),
                    ops in prop::collection::vec(
                        (any::<u8>(), any::<u64>(), any::<u64>(), any::<u64>()),
                        1..=MAX_OPS,
                    ),
                ) {
                    run::<$arch>($bits, top && $bits > 32, &ops);
                }
            )*
        }
    };
}

model_tests! {
    hyp_model_armv7_va32: pt_hyp::Armv7, 32;
    hyp_model_armv8_va32: pt_hyp::Armv8, 32;
    hyp_model_armv8_va40: pt_hyp::Armv8, 40;
    hyp_model_armv8_va48: pt_hyp::Armv8, 48;
}
