//! Model-based differential tests of [`Stage2`] (issue 9): random sequences of operations (map
//! page/block/device, map from the top-up cache, unmap, write-protect ranges and masks,
//! dissolve and split blocks, dirty-logging rounds, access-flag aging, page replacement,
//! unmapping every slot, freeing and re-creating the VM) for ARMv7 and ARMv8 with 32- and
//! 40-bit IPAs, against a plain model of the leaves (`model_support::Model`).
//!
//! After every operation:
//! - its result is the one the model predicts;
//! - the tree holds exactly the model's leaves (a walk of the whole IPA space) and exactly the
//!   tables they need, and the arena's live pages are the root, those tables and the dirty
//!   bitmaps: nothing leaked, nothing unreachable stays mapped;
//! - `translate` agrees with the model on the touched range and on random addresses;
//! - the break-before-make checker saw no violation;
//! - a simulated TLB ([`TlbSim`]), kept across operations and told only of the invalidations
//!   the crate issued, holds no translation that differs from the tables.
//!
//! Fixed seed, fixed case count, no failure persistence: the same sequences run everywhere.

mod model_support;

use model_support::{assert_tree, samples, MapReq, Model, Xs};
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, RngSeed};
use pt_core::testkit::tlbsim::TlbSim;
use pt_core::testkit::{log, Arena};
use pt_core::{Format, TlbScope, Walker};
use pt_hyp::{
    Arch, BlockSize, Error, Ipa, MemType, PageCache, Perms, PhysAddr, SlotDesc, SlotFlags, SlotId,
    Stage2, Stage2Attrs,
};
use std::collections::BTreeSet;

const PAGE: u64 = 4096;
const M2: u64 = 1 << 21;
const G1: u64 = 1 << 30;
/// The part of the IPA space the operations touch (all of a 32-bit space).
const WINDOW: u64 = 4 * G1;
const OA_BASE: [u64; 2] = [0x10_0000_0000, 0x40_0000_0000];
const VMID: u16 = 7;
/// Memslots: (offset in the window, size).
const SLOTS: [(u64, u64); 2] = [(0, G1 / 2), (2 * G1 + 3 * M2, G1 / 4)];

type S2<'a, A> = Stage2<A, &'a Arena>;

struct SlotModel {
    id: SlotId,
    ipa: u64,
    size: u64,
    bitmap: Option<BTreeSet<u64>>,
}

impl SlotModel {
    fn pages(&self) -> u64 {
        self.size / PAGE
    }
    fn bitmap_pages(&self) -> usize {
        self.bitmap.as_ref().map_or(0, |_| {
            (self.pages().div_ceil(32768).max(1) as usize).next_power_of_two()
        })
    }
    fn contains(&self, ipa: u64) -> bool {
        ipa >= self.ipa && ipa < self.ipa + self.size
    }
}

struct Harness<'a, A: Arch> {
    arena: &'a Arena,
    bits: u8,
    base: u64,
    s2: Option<S2<'a, A>>,
    model: Model<Stage2Attrs>,
    slots: Vec<SlotModel>,
    tlb: TlbSim<A::S2>,
    step: usize,
    what: String,
}

fn writable_to_logged(a: Stage2Attrs) -> Stage2Attrs {
    if a.perms.write() {
        Stage2Attrs {
            perms: a.perms.without(Perms::W),
            logged: true,
            ..a
        }
    } else {
        a
    }
}

impl<'a, A: Arch> Harness<'a, A> {
    fn new(arena: &'a Arena, bits: u8, top: bool) -> Self {
        let s2 = Stage2::<A, _>::new(arena, bits, VMID).unwrap();
        let ia_size = s2.geometry().ia_size();
        let base = if top { ia_size - WINDOW } else { 0 };
        let tlb = TlbSim::new(TlbScope::Stage2 { vttbr: s2.vttbr() }, 128);
        let mut h = Self {
            arena,
            bits,
            base,
            s2: Some(s2),
            model: Model::new(),
            slots: Vec::new(),
            tlb,
            step: 0,
            what: String::from("new"),
        };
        h.add_slots();
        h
    }

    fn add_slots(&mut self) {
        self.slots.clear();
        for (off, size) in SLOTS {
            let ipa = self.base + off;
            let id = self
                .s2()
                .add_memslot(SlotDesc {
                    ipa: Ipa(ipa),
                    size,
                    host: PhysAddr(OA_BASE[0] + off),
                    flags: SlotFlags::default(),
                })
                .unwrap();
            self.slots.push(SlotModel {
                id,
                ipa,
                size,
                bitmap: None,
            });
        }
    }

    fn s2(&mut self) -> &mut S2<'a, A> {
        self.s2.as_mut().unwrap()
    }

    fn ctx(&self) -> String {
        format!(
            "{} ipa{} base {:#x}, step {}: {}",
            A::NAME,
            self.bits,
            self.base,
            self.step,
            self.what
        )
    }

    /// A page of the window: in a mapped leaf half of the time.
    fn pick(&self, a: u64) -> u64 {
        let at = self.base + ((a >> 1) % (WINDOW / PAGE)) * PAGE;
        if a & 1 == 1 && !self.model.leaves.is_empty() {
            // The leaf at or after a random address (or the first one).
            let (&k, l) = self
                .model
                .leaves
                .range(at..)
                .next()
                .or_else(|| self.model.leaves.iter().next())
                .unwrap();
            k + ((a >> 24) % (l.size() / PAGE)) * PAGE
        } else {
            at
        }
    }

    /// A range for a map or unmap: (ia, size, leaf level).
    fn sized(&self, kind: u64, a: u64, b: u64) -> (u64, u64, u8) {
        let leaf_level = match kind % 8 {
            0 => 1,
            1..=3 => 2,
            _ => 3,
        };
        let (unit, count) = match leaf_level {
            1 => (G1, 1 + b % 2),
            2 => (M2, 1 + b % 3),
            _ => (PAGE, 1 + if b & 0x300 == 0 { b % 600 } else { b % 24 }),
        };
        // A 1 GiB request is at least 2 MiB aligned (else it would map 256 Ki pages).
        let align = match (a & 1, leaf_level) {
            (0, _) => unit,
            (_, 1) => M2,
            _ => PAGE,
        };
        let size = unit * count;
        let ia = if a & 2 != 0 && !self.model.leaves.is_empty() {
            // Near something mapped: conflicts, identical re-maps, partial blocks.
            let p = self.pick(a >> 2 | 1) / align * align;
            p.min(self.base + WINDOW - size).max(self.base)
        } else {
            self.base + ((a >> 2) % (WINDOW - size)) / align * align
        };
        (ia, size, leaf_level)
    }

    fn attrs(c: u64, device: bool) -> Stage2Attrs {
        if device {
            return Stage2Attrs::device(c & 1 == 0);
        }
        let perms = [Perms::RW, Perms::R, Perms::RWX, Perms::RX][(c % 4) as usize];
        Stage2Attrs {
            perms,
            mem: if c & 4 != 0 {
                MemType::NormalNc
            } else {
                MemType::NormalWb
            },
            accessed: c & 0x18 != 0,
            logged: false,
        }
    }

    fn expected_live(&self) -> usize {
        let g = self.s2.as_ref().unwrap().geometry();
        g.root_pages()
            + self.model.tables(&g)
            + self
                .slots
                .iter()
                .map(SlotModel::bitmap_pages)
                .sum::<usize>()
    }

    fn slot_of(&self, ipa: u64) -> Option<usize> {
        self.slots.iter().position(|s| s.contains(ipa))
    }

    /// Model of write-protecting every writable leaf that contains one of `pages` (IPAs).
    fn protect_pages(&mut self, pages: &[u64]) -> usize {
        let mut leaves = BTreeSet::new();
        for &p in pages {
            if let Some((k, _)) = self.model.at(p) {
                leaves.insert(k);
            }
        }
        let mut n = 0;
        for k in leaves {
            let l = self.model.leaves.get_mut(&k).unwrap();
            let new = writable_to_logged(l.attrs);
            if new != l.attrs {
                l.attrs = new;
                n += 1;
            }
        }
        n
    }

    fn dissolve_model(&mut self, k: u64) {
        let l = self.model.leaves.remove(&k).unwrap();
        if let Some(i) = self.slot_of(k) {
            let s = &mut self.slots[i];
            let first = (k - s.ipa) / PAGE;
            let last = (first + l.size() / PAGE).min(s.pages());
            if let Some(bm) = &mut s.bitmap {
                bm.extend(first..last);
            }
        }
    }

    /// One operation; returns the range it touched.
    fn op(&mut self, op: u8, a: u64, b: u64, c: u64) -> (u64, u64) {
        let g = self.s2.as_ref().unwrap().geometry();
        let block_ok: fn(u8) -> bool = <A::S2 as Format>::block_allowed;
        match op % 20 {
            // Map RAM (pages, 2 MiB or 1 GiB blocks), sometimes with an allocation failure.
            0..=3 | 16 => {
                let (ia, size, leaf_level) = self.sized((op / 20) as u64, a, b);
                let mut oa = OA_BASE[(c >> 6 & 1) as usize] + (ia - self.base);
                // Output misaligned for the largest block (a 1 GiB request still 2 MiB aligned,
                // else it would map 256 Ki pages).
                if c & 0x80 != 0 && leaf_level < 3 {
                    oa += if leaf_level == 1 { M2 } else { PAGE };
                }
                let attrs = Self::attrs(c, false);
                let blocks = [BlockSize::Block1G, BlockSize::Block2M, BlockSize::Page]
                    [leaf_level as usize - 1];
                let fail = if (c >> 8) % 6 == 0 {
                    1 + (c >> 11) % 3
                } else {
                    0
                };
                self.what = format!(
                    "map {ia:#x}+{size:#x} -> {oa:#x} {attrs:?} {blocks:?} (fail alloc #{fail})"
                );
                if fail > 0 {
                    self.arena.fail_nth(fail);
                }
                let live = self.arena.live_pages();
                let r = self.s2().map(Ipa(ia), PhysAddr(oa), size, attrs, blocks);
                self.arena.stop_failing();
                let req = MapReq {
                    ia,
                    size,
                    oa,
                    attrs,
                    leaf_level,
                };
                match self.model.conflict(&req) {
                    Some(at) => assert_eq!(r, Err(Error::Conflict { ia: at }), "{}", self.ctx()),
                    None if r == Err(Error::OutOfMemory) && fail > 0 => {
                        assert_eq!(self.arena.live_pages(), live, "{}: leak", self.ctx())
                    }
                    None => {
                        assert_eq!(r, Ok(()), "{}", self.ctx());
                        self.model.map(&g, block_ok, &req);
                    }
                }
                (ia, ia + size)
            }
            // Map a device range, page by page.
            4 => {
                let ia = self.pick(a);
                let size = (1 + b % 16) * PAGE;
                let ia = ia.min(self.base + WINDOW - size);
                let oa = 0x3f_0000_0000 + (c % 4096) * PAGE;
                let attrs = Self::attrs(c >> 12, true);
                self.what = format!("map_device {ia:#x}+{size:#x} -> {oa:#x} {attrs:?}");
                let r = self
                    .s2()
                    .map_device(Ipa(ia), PhysAddr(oa), size, attrs.perms.write());
                let req = MapReq {
                    ia,
                    size,
                    oa,
                    attrs,
                    leaf_level: 3,
                };
                match self.model.conflict(&req) {
                    Some(at) => assert_eq!(r, Err(Error::Conflict { ia: at }), "{}", self.ctx()),
                    None => {
                        assert_eq!(r, Ok(()), "{}", self.ctx());
                        self.model.map(&g, block_ok, &req);
                    }
                }
                (ia, ia + size)
            }
            // Map from the top-up cache (the fault path's map): CacheExhausted when the cache
            // holds fewer tables than the request needs.
            5 => {
                let (ia, size, leaf_level) = self.sized(b, a, b >> 3);
                let oa = OA_BASE[0] + (ia - self.base);
                let attrs = Self::attrs(c, false);
                let blocks = [BlockSize::Block1G, BlockSize::Block2M, BlockSize::Page]
                    [leaf_level as usize - 1];
                let mut cache = PageCache::<8>::new();
                let fill = (c >> 8) as usize % (self.s2.as_ref().unwrap().fault_pages() + 1);
                cache.top_up(&self.arena, fill).unwrap();
                self.what = format!(
                    "map_cached {ia:#x}+{size:#x} -> {oa:#x} {attrs:?} {blocks:?}, {fill} cached"
                );
                let r =
                    self.s2()
                        .map_cached(&mut cache, Ipa(ia), PhysAddr(oa), size, attrs, blocks);
                let req = MapReq {
                    ia,
                    size,
                    oa,
                    attrs,
                    leaf_level,
                };
                let mut after = self.model.clone();
                let conflict = self.model.conflict(&req);
                if conflict.is_none() {
                    after.map(&g, block_ok, &req);
                }
                let needed = after.tables(&g) - self.model.tables(&g);
                match conflict {
                    Some(at) => assert_eq!(r, Err(Error::Conflict { ia: at }), "{}", self.ctx()),
                    None if needed > fill => assert_eq!(
                        r,
                        Err(Error::CacheExhausted {
                            needed,
                            available: fill
                        }),
                        "{}",
                        self.ctx()
                    ),
                    None => {
                        assert_eq!(r, Ok(()), "{}", self.ctx());
                        assert_eq!(cache.len(), fill - needed, "{}", self.ctx());
                        self.model = after;
                    }
                }
                cache.release(&self.arena);
                (ia, ia + size)
            }
            // Unmap a range (a partly covered block goes whole).
            6 | 7 => {
                let (ia, size, _) = self.sized(b >> 1, a, b);
                self.what = format!("unmap {ia:#x}+{size:#x}");
                let r = self.s2().unmap_range(Ipa(ia), size);
                assert_eq!(r, Ok(()), "{}", self.ctx());
                let removed = self.model.remove_whole(ia, ia + size);
                let s = removed.first().map_or(ia, |&(k, _)| k.min(ia));
                let e = removed
                    .last()
                    .map_or(ia + size, |&(k, l)| (k + l.size()).max(ia + size));
                (s, e)
            }
            // Write-protect a range.
            8 => {
                let (ia, size, _) = self.sized(b >> 1, a, b);
                self.what = format!("write_protect {ia:#x}+{size:#x}");
                let r = self.s2().write_protect_range(Ipa(ia), size);
                let n = self
                    .model
                    .update(ia, ia + size, |_, l| writable_to_logged(l.attrs));
                assert_eq!(r, Ok(n), "{}", self.ctx());
                (ia, ia + size)
            }
            // Write-protect by mask (kvm_mmu_write_protect_pt_masked).
            9 => {
                let i = (c & 1) as usize;
                let (id, ipa, pages) = (self.slots[i].id, self.slots[i].ipa, self.slots[i].pages());
                let gfn = if c & 2 != 0 {
                    pages - 1 - (a % 64).min(pages - 1)
                } else {
                    a % pages
                };
                let mask = if c & 4 != 0 { b } else { b & 0xffff };
                self.what = format!("write_protect_masked slot {id:?} gfn {gfn:#x} mask {mask:#x}");
                let r = self.s2().write_protect_masked(id, gfn, mask);
                let bad = (0..64)
                    .filter(|i| mask >> i & 1 != 0)
                    .map(|i| gfn + i)
                    .find(|&p| p >= pages);
                match bad {
                    Some(at) => {
                        assert_eq!(
                            r,
                            Err(Error::OutsideSlot { slot: id, at }),
                            "{}",
                            self.ctx()
                        )
                    }
                    None => {
                        let ps: Vec<u64> = (0..64)
                            .filter(|i| mask >> i & 1 != 0)
                            .map(|i| ipa + (gfn + i) * PAGE)
                            .collect();
                        let n = self.protect_pages(&ps);
                        assert_eq!(r, Ok(n), "{}", self.ctx());
                    }
                }
                (
                    ipa + gfn * PAGE,
                    (ipa + (gfn + 64) * PAGE).min(ipa + pages * PAGE),
                )
            }
            // Dissolve the block at an address.
            10 => {
                let ipa = self.pick(a);
                self.what = format!("dissolve_block {ipa:#x}");
                let r = self.s2().dissolve_block(Ipa(ipa));
                match self.model.at(ipa) {
                    Some((k, l)) if l.level < 3 => {
                        assert_eq!(r, Ok(true), "{}", self.ctx());
                        self.dissolve_model(k);
                        (k, k + l.size())
                    }
                    _ => {
                        assert_eq!(r, Ok(false), "{}", self.ctx());
                        (ipa, ipa + PAGE)
                    }
                }
            }
            // Split the block at an address down to pages, tables from the top-up cache.
            11 => {
                let ipa = self.pick(a);
                let mut cache = PageCache::<8>::new();
                let fill = if c & 3 == 0 { (c >> 2) as usize % 2 } else { 4 };
                cache.top_up(&self.arena, fill).unwrap();
                self.what = format!("split_block {ipa:#x} with {fill} cached");
                let r = self.s2().split_block(&mut cache, Ipa(ipa));
                let touched = match self.model.at(ipa) {
                    None => {
                        assert_eq!(r, Err(Error::NotMapped { ia: ipa }), "{}", self.ctx());
                        (ipa, ipa + PAGE)
                    }
                    Some((_, l)) if l.level == 3 => {
                        assert_eq!(r, Ok(0), "{}", self.ctx());
                        (ipa, ipa + PAGE)
                    }
                    Some((k, l)) => {
                        let needed = (3 - l.level) as usize;
                        if fill < needed {
                            assert_eq!(
                                r,
                                Err(Error::CacheExhausted {
                                    needed,
                                    available: fill
                                }),
                                "{}",
                                self.ctx()
                            );
                        } else {
                            assert_eq!(r, Ok(needed), "{}", self.ctx());
                            while let Some((k2, l2)) = self.model.at(ipa).filter(|x| x.1.level < 3)
                            {
                                let _ = l2;
                                self.model.split(k2);
                            }
                        }
                        (k, k + l.size())
                    }
                };
                cache.release(&self.arena);
                touched
            }
            // Dirty logging on / off.
            12 => {
                let i = (c & 1) as usize;
                let id = self.slots[i].id;
                let (s, e) = (self.slots[i].ipa, self.slots[i].ipa + self.slots[i].size);
                if c & 2 == 0 {
                    self.what = format!("enable_dirty_logging {id:?}");
                    let r = self.s2().enable_dirty_logging(id);
                    assert_eq!(r, Ok(()), "{}", self.ctx());
                    self.slots[i].bitmap.get_or_insert_with(BTreeSet::new);
                    self.model.update(s, e, |_, l| writable_to_logged(l.attrs));
                } else {
                    self.what = format!("disable_dirty_logging {id:?}");
                    let r = self.s2().disable_dirty_logging(id);
                    assert_eq!(r, Ok(()), "{}", self.ctx());
                    self.slots[i].bitmap = None;
                }
                (s, e)
            }
            // A guest write to a logged page: make it writable again and mark it dirty.
            13 => {
                let ipa = if c & 1 == 0 {
                    let s = &self.slots[(c >> 1 & 1) as usize];
                    s.ipa + (a % s.pages()) * PAGE
                } else {
                    self.pick(a)
                };
                self.what = format!("write fault {ipa:#x}: make_writable + mark_dirty");
                let r = self.s2().make_writable(Ipa(ipa));
                let was_logged = match self.model.at(ipa) {
                    Some((k, l)) if l.attrs.logged => {
                        let m = self.model.leaves.get_mut(&k).unwrap();
                        m.attrs.perms = m.attrs.perms.with(Perms::W);
                        m.attrs.logged = false;
                        true
                    }
                    _ => false,
                };
                assert_eq!(r, Ok(was_logged), "{}", self.ctx());
                self.s2().mark_dirty(Ipa(ipa));
                if let Some(i) = self.slot_of(ipa) {
                    let p = (ipa - self.slots[i].ipa) / PAGE;
                    if let Some(bm) = &mut self.slots[i].bitmap {
                        bm.insert(p);
                    }
                }
                (ipa, ipa + PAGE)
            }
            // Fetch and clear a dirty log, write-protecting what was dirty.
            14 => {
                let i = (c & 1) as usize;
                let id = self.slots[i].id;
                let words = self.slots[i].pages().div_ceil(64) as usize;
                let mut out = vec![0u64; words];
                self.what = format!("get_dirty_log {id:?}");
                let r = self.s2().get_dirty_log(id, &mut out);
                let (s, e) = (self.slots[i].ipa, self.slots[i].ipa + self.slots[i].size);
                match self.slots[i].bitmap.take() {
                    None => assert_eq!(r, Err(Error::NotLogging(id)), "{}", self.ctx()),
                    Some(bm) => {
                        assert_eq!(r, Ok(bm.len() as u64), "{}", self.ctx());
                        let mut want = vec![0u64; words];
                        for &p in &bm {
                            want[(p / 64) as usize] |= 1 << (p % 64);
                        }
                        assert!(out == want, "{}: dirty log differs", self.ctx());
                        let ps: Vec<u64> = bm.iter().map(|p| s + p * PAGE).collect();
                        self.protect_pages(&ps);
                        self.slots[i].bitmap = Some(BTreeSet::new());
                    }
                }
                (s, e)
            }
            // Access-flag aging.
            15 => {
                let ipa = self.pick(a);
                let leaf = self.model.at(ipa);
                let was = leaf.is_some_and(|(_, l)| l.attrs.accessed);
                if c & 1 == 0 {
                    self.what = format!("test_and_clear_age {ipa:#x}");
                    let r = self.s2().test_and_clear_age(Ipa(ipa));
                    assert_eq!(r, Ok(was), "{}", self.ctx());
                } else {
                    self.what = format!("set_access_flag {ipa:#x}");
                    let r = self.s2().set_access_flag(Ipa(ipa));
                    if leaf.is_some() {
                        assert_eq!(r, Ok(was), "{}", self.ctx());
                    } else {
                        assert_eq!(r, Err(Error::NotMapped { ia: ipa }), "{}", self.ctx());
                    }
                }
                if let Some((k, _)) = leaf {
                    self.model.leaves.get_mut(&k).unwrap().attrs.accessed = c & 1 == 1;
                }
                (ipa, ipa + PAGE)
            }
            // Point a page at another host page (break-before-make), or dissolve a block.
            17 => {
                let ipa = self.pick(a);
                let new_pa = OA_BASE[1] + (b % (1 << 20)) * PAGE;
                self.what = format!("replace_page {ipa:#x} -> {new_pa:#x}");
                let r = self.s2().replace_page(Ipa(ipa), PhysAddr(new_pa));
                match self.model.at(ipa) {
                    None => {
                        assert_eq!(r, Ok(false), "{}", self.ctx());
                        (ipa, ipa + PAGE)
                    }
                    Some((k, l)) if l.level < 3 => {
                        assert_eq!(r, Ok(false), "{}", self.ctx());
                        self.dissolve_model(k);
                        (k, k + l.size())
                    }
                    Some((k, _)) => {
                        assert_eq!(r, Ok(true), "{}", self.ctx());
                        // KVM's PAGE_S2: normal memory, read-only, not executable, access
                        // flag set; inside a (writable) slot the fault path may give write
                        // permission back.
                        let in_slot = self
                            .slots
                            .iter()
                            .any(|s| (s.ipa..s.ipa + s.size).contains(&k));
                        let leaf = self.model.leaves.get_mut(&k).unwrap();
                        leaf.oa = new_pa;
                        leaf.attrs = Stage2Attrs {
                            logged: in_slot,
                            ..Stage2Attrs::ram(Perms::R)
                        };
                        (k, k + PAGE)
                    }
                }
            }
            // Unmap every memslot.
            18 => {
                self.what = String::from("unmap_vm");
                assert_eq!(self.s2().unmap_vm(), Ok(()), "{}", self.ctx());
                for i in 0..self.slots.len() {
                    let (s, e) = (self.slots[i].ipa, self.slots[i].ipa + self.slots[i].size);
                    self.model.remove_whole(s, e);
                }
                (self.base, self.base + WINDOW)
            }
            // Free the whole VM (every page back) and start a new one.
            _ if c % 4 == 0 => {
                self.what = String::from("free and re-create");
                drop(self.s2.take());
                assert_eq!(
                    self.arena.live_pages(),
                    0,
                    "{}: leak after free",
                    self.ctx()
                );
                self.s2 = Some(Stage2::<A, _>::new(self.arena, self.bits, VMID).unwrap());
                self.model = Model::new();
                self.add_slots();
                (self.base, self.base + WINDOW)
            }
            // Only look things up.
            _ => {
                let ipa = self.pick(a);
                self.what = format!("lookups around {ipa:#x}");
                (ipa, ipa + PAGE)
            }
        }
    }

    fn check(&mut self, touched: (u64, u64), seed: u64) {
        let v = log::violations();
        assert!(v.is_empty(), "{}: break-before-make: {v:?}", self.ctx());
        let s2 = self.s2.as_ref().unwrap();
        let g = s2.geometry();
        let ctx = self.ctx();
        assert_tree::<A::S2, &Arena>(g, s2.root(), s2.allocator(), &self.model, &|| ctx.clone());
        assert_eq!(
            self.arena.live_pages(),
            self.expected_live(),
            "{}: live pages vs root + needed tables + bitmaps",
            self.ctx()
        );
        let mut rng = Xs(seed);
        let mut probes = samples(touched.0, touched.1, 16, seed);
        for _ in 0..8 {
            probes.push(self.base + (rng.next() % (WINDOW / PAGE)) * PAGE);
        }
        probes.push((rng.next() % g.ia_size()) & !(PAGE - 1));
        for &p in &probes {
            let ia = p + 0x123;
            let t = s2.translate(Ipa(ia));
            let want = self.model.at(ia).map(|(k, l)| {
                (
                    PhysAddr(l.oa + (ia - k)),
                    l.attrs,
                    l.level,
                    Ipa(k),
                    l.size(),
                )
            });
            assert_eq!(
                t.map(|t| (t.pa, t.attrs, t.level, t.leaf_ipa, t.size)),
                want,
                "{}: translate {ia:#x}",
                self.ctx()
            );
        }
        // The simulated TLB: forget what the crate invalidated, then nothing cached may differ
        // from the tables; then fill it some more.
        // SAFETY: a second walker over the live tree, used only for reading while the tree is unchanged.
        let w = unsafe { Walker::<A::S2, &Arena>::new(g, s2.root(), s2.allocator()) };
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

fn run<A: Arch>(bits: u8, top: bool, ops: &[(u8, u64, u64, u64)]) -> (u64, u64) {
    let arena = Arena::standard();
    let mut h = Harness::<A>::new(&arena, bits, top);
    h.check((h.base, h.base + PAGE), 1);
    for (i, &(op, a, b, c)) in ops.iter().enumerate() {
        h.step = i + 1;
        let touched = h.op(op, a, b, c);
        h.check(touched, a ^ c.rotate_left(17));
    }
    h.what = String::from("drop");
    drop(h.s2.take());
    assert_eq!(arena.live_pages(), 0, "{}: leak at the end", h.ctx());
    h.tlb.sync();
    assert!(
        h.tlb.entries().is_empty(),
        "free must invalidate the whole VMID"
    );
    (h.tlb.hits(), h.tlb.invalidated())
}

/// Sequences per configuration and their length, fixed for CI.
const CASES: u32 = 64;
const MAX_OPS: usize = 40;

macro_rules! model_tests {
    ($($name:ident: $arch:ty, $bits:expr, $seed:expr;)*) => {
        proptest! {
            #![proptest_config(ProptestConfig {
                cases: CASES,
                failure_persistence: None,
                rng_algorithm: RngAlgorithm::ChaCha,
                rng_seed: RngSeed::Fixed(0x5332_6d6f_6465_6c00),
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
                    let _ = $seed;
                    run::<$arch>($bits, top && $bits > 32, &ops);
                }
            )*
        }
    };
}

model_tests! {
    stage2_model_armv7_ipa32: pt_hyp::Armv7, 32, 1;
    stage2_model_armv7_ipa40: pt_hyp::Armv7, 40, 2;
    stage2_model_armv8_ipa32: pt_hyp::Armv8, 32, 3;
    stage2_model_armv8_ipa40: pt_hyp::Armv8, 40, 4;
}

/// The simulated TLB is exercised: over a fixed sequence it answers from its cache and sees
/// entries invalidated (so its silence in the property tests means something).
#[test]
fn simulated_tlb_is_exercised() {
    let ops: Vec<(u8, u64, u64, u64)> = (0..60u64)
        .map(|i| {
            let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i << 7);
            ((i * 7 % 20) as u8, x, x.rotate_left(13), x.rotate_left(29))
        })
        .collect();
    let (hits, inval) = run::<pt_hyp::Armv8>(40, false, &ops);
    assert!(hits > 0 && inval > 0, "hits {hits}, invalidated {inval}");
}

/// Write-protecting for dirty logging invalidates the writable entries a TLB may hold: after
/// `write_protect_range`, `enable_dirty_logging` and `get_dirty_log`, no cached translation is
/// still writable (a stale writable entry would let guest writes escape the dirty log).
fn write_protect_drops_writable_tlb_entries<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut s2 = Stage2::<A, _>::new(&arena, bits, VMID).unwrap();
    let mut tlb = TlbSim::<A::S2>::new(TlbScope::Stage2 { vttbr: s2.vttbr() }, 64);
    let host = PhysAddr(OA_BASE[0]);
    s2.map_ram(Ipa(0), host, 2 * M2, Perms::RW, BlockSize::Block2M)
        .unwrap();
    s2.map_ram(
        Ipa(G1),
        PhysAddr(OA_BASE[0] + G1),
        8 * PAGE,
        Perms::RW,
        BlockSize::Page,
    )
    .unwrap();
    let id = s2
        .add_memslot(SlotDesc {
            ipa: Ipa(G1),
            size: 8 * PAGE,
            host: PhysAddr(OA_BASE[0] + G1),
            flags: SlotFlags::default(),
        })
        .unwrap();
    let fill = |s2: &S2<'_, A>, tlb: &mut TlbSim<A::S2>| {
        // SAFETY: a second walker over the live tree, used only for reading while the tree is unchanged.
        let w = unsafe { Walker::<A::S2, &Arena>::new(s2.geometry(), s2.root(), s2.allocator()) };
        for ia in [
            0,
            M2 + 5 * PAGE,
            G1,
            G1 + 3 * PAGE,
            G1 + 7 * PAGE,
            0x1000,
            M2,
        ] {
            tlb.lookup(&w, ia).unwrap();
        }
    };
    let check = |s2: &S2<'_, A>, tlb: &mut TlbSim<A::S2>, what: &str| {
        // SAFETY: a second walker over the live tree, used only for reading while the tree is unchanged.
        let w = unsafe { Walker::<A::S2, &Arena>::new(s2.geometry(), s2.root(), s2.allocator()) };
        tlb.sync();
        tlb.check(&w).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            tlb.entries().iter().all(|e| !e.attrs.perms.write()),
            "{what}: a writable entry survived"
        );
    };
    fill(&s2, &mut tlb);
    assert_eq!(s2.write_protect_range(Ipa(0), 2 * M2), Ok(2));
    s2.enable_dirty_logging(id).unwrap();
    check(&s2, &mut tlb, "write-protect");
    // A write fault makes a page writable and dirty; the dirty log protects it again.
    assert_eq!(s2.make_writable(Ipa(G1 + 3 * PAGE)), Ok(true));
    s2.mark_dirty(Ipa(G1 + 3 * PAGE));
    fill(&s2, &mut tlb);
    assert!(tlb.entries().iter().any(|e| e.attrs.perms.write()));
    let mut out = [0u64; 1];
    assert_eq!(s2.get_dirty_log(id, &mut out), Ok(1));
    assert_eq!(out[0], 1 << 3);
    check(&s2, &mut tlb, "get_dirty_log");
    assert!(tlb.hits() > 0);
}

mod write_protect_tlb {
    #[test]
    fn armv7_ipa32() {
        super::write_protect_drops_writable_tlb_entries::<pt_hyp::Armv7>(32)
    }
    #[test]
    fn armv7_ipa40() {
        super::write_protect_drops_writable_tlb_entries::<pt_hyp::Armv7>(40)
    }
    #[test]
    fn armv8_ipa32() {
        super::write_protect_drops_writable_tlb_entries::<pt_hyp::Armv8>(32)
    }
    #[test]
    fn armv8_ipa40() {
        super::write_protect_drops_writable_tlb_entries::<pt_hyp::Armv8>(40)
    }
}
