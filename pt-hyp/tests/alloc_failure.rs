//! Allocation-failure injection (issue 9): every operation that allocates is run with its k-th
//! allocation failing, for every k until it no longer fails. Each time it must return the
//! out-of-memory error (or the variant the API documents), leave the tree exactly as it was
//! (same leaves, same tables), leak nothing (same live pages), and keep break-before-make; the
//! first run without an injected failure must succeed and match the model.

mod model_support;

use model_support::{dump, MapReq, Model};
use pt_core::testkit::{log, Arena};
use pt_core::{Format, BLOCK_1G, BLOCK_2M, PAGE_SIZE};
use pt_hyp::hyp::{HypConfig, HypError, HypTables, LinearMap};
use pt_hyp::{
    Arch, BlockSize, Error, Ipa, PageCache, Perms, PhysAddr, SlotDesc, SlotFlags, Stage1Attrs,
    Stage2, Stage2Attrs, VirtAddr,
};

const PAGE: u64 = PAGE_SIZE;
const RAM: Stage2Attrs = Stage2Attrs::ram(Perms::RW);

/// What must not change when an operation fails.
#[derive(Debug, PartialEq)]
struct Snapshot<A> {
    leaves: Vec<(u64, model_support::MLeaf<A>)>,
    tables: usize,
    live: usize,
}

fn snap_s2<A: Arch>(s2: &Stage2<A, &Arena>, arena: &Arena) -> Snapshot<Stage2Attrs> {
    let d = dump::<A::S2, &Arena>(s2.geometry(), s2.root(), s2.allocator());
    Snapshot {
        leaves: d.leaves,
        tables: d.tables,
        live: arena.live_pages(),
    }
}

fn snap_hyp<A: Arch>(h: &HypTables<A, &Arena>, arena: &Arena) -> Snapshot<Stage1Attrs> {
    let d = dump::<A::Hyp, &Arena>(h.geometry(), h.root(), h.alloc());
    Snapshot {
        leaves: d.leaves,
        tables: d.tables,
        live: arena.live_pages(),
    }
}

/// Runs `op` on `state` with its k-th allocation failing, for k = 1, 2, ... until the
/// injected failure is not reached. After each failed run, `failed(k, result, state)` checks
/// the error and the state. Returns the final result (no failure reached) and how many
/// failures were injected.
fn for_each_failure<S, T: std::fmt::Debug>(
    arena: &Arena,
    what: &str,
    state: &mut S,
    mut op: impl FnMut(&mut S) -> T,
    mut failed: impl FnMut(u64, &T, &S),
) -> (T, u64) {
    for k in 1.. {
        let before = arena.allocation_calls();
        arena.fail_nth(k);
        let r = op(state);
        arena.stop_failing();
        let v = log::violations();
        assert!(v.is_empty(), "{what}, allocation #{k} failing: {v:?}");
        if arena.allocation_calls() < before + k {
            return (r, k - 1);
        }
        failed(k, &r, state);
    }
    unreachable!()
}

fn stage2_new<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let (r, n) = for_each_failure(
        &arena,
        "Stage2::new",
        &mut (),
        |_| Stage2::<A, _>::new(&arena, bits, 3).map(|_| ()),
        |k, r, _| {
            assert_eq!(*r, Err(Error::OutOfMemory), "allocation #{k}");
            assert_eq!(arena.live_pages(), 0, "leak, allocation #{k}");
        },
    );
    assert_eq!(r, Ok(()));
    assert_eq!(n, 1, "the root is one allocation");
    assert_eq!(arena.live_pages(), 0);
}

/// A VM with a few mappings already (blocks and pages), so the failing operations meet
/// existing tables as well as missing ones.
fn populated<A: Arch>(arena: &Arena, bits: u8) -> Stage2<A, &Arena> {
    let mut s2 = Stage2::<A, _>::new(arena, bits, 3).unwrap();
    s2.map_ram(
        Ipa(BLOCK_1G),
        PhysAddr(0x8_4000_0000),
        BLOCK_1G,
        Perms::RW,
        BlockSize::Block1G,
    )
    .unwrap();
    s2.map_ram(
        Ipa(2 * BLOCK_1G + 5 * BLOCK_2M),
        PhysAddr(0x8_8000_0000 + 5 * BLOCK_2M),
        2 * BLOCK_2M,
        Perms::RW,
        BlockSize::Block2M,
    )
    .unwrap();
    s2.map_ram(
        Ipa(2 * BLOCK_1G + 20 * PAGE),
        PhysAddr(0x8_8000_0000 + 20 * PAGE),
        4 * PAGE,
        Perms::R,
        BlockSize::Page,
    )
    .unwrap();
    s2
}

fn stage2_maps<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut s2 = populated::<A>(&arena, bits);
    let g = s2.geometry();
    // (ipa, size, pa, blocks): pages across 1 GiB and 2 MiB boundaries (a table per level
    // each side), pages next to existing ones, a mix of blocks and pages.
    let reqs: [(u64, u64, u64, BlockSize); 4] = [
        (
            3 * BLOCK_1G - 3 * PAGE,
            6 * PAGE,
            0x9_0000_0000,
            BlockSize::Page,
        ),
        (
            2 * BLOCK_1G + 30 * PAGE,
            BLOCK_2M,
            0x9_1000_0000,
            BlockSize::Block2M,
        ),
        (
            BLOCK_2M - 2 * PAGE,
            3 * BLOCK_2M + 4 * PAGE,
            0x9_2000_0000 - 2 * PAGE,
            BlockSize::Block2M,
        ),
        (
            3 * BLOCK_1G + 300 * BLOCK_2M,
            2 * PAGE,
            0x9_4000_0000,
            BlockSize::Page,
        ),
    ];
    let mut model = Model::new();
    for (ia, l) in snap_s2(&s2, &arena).leaves {
        model.leaves.insert(ia, l);
    }
    for (i, &(ipa, size, pa, blocks)) in reqs.iter().enumerate() {
        let before = snap_s2(&s2, &arena);
        let (r, n) = for_each_failure(
            &arena,
            &format!("map #{i}"),
            &mut s2,
            |s2| s2.map(Ipa(ipa), PhysAddr(pa), size, RAM, blocks),
            |k, r, s2| {
                assert_eq!(*r, Err(Error::OutOfMemory), "map #{i}, allocation #{k}");
                assert_eq!(snap_s2(s2, &arena), before, "map #{i}, allocation #{k}");
            },
        );
        assert_eq!(r, Ok(()), "map #{i}");
        assert!(n > 0, "map #{i} needed no table");
        let req = MapReq {
            ia: ipa,
            size,
            oa: pa,
            attrs: RAM,
            leaf_level: blocks.leaf_level(),
        };
        model.map(&g, <A::S2 as Format>::block_allowed, &req);
        let after = snap_s2(&s2, &arena);
        let want: Vec<_> = model.leaves.iter().map(|(&k, &l)| (k, l)).collect();
        assert_eq!(after.leaves, want, "map #{i}: tree vs model");
        assert_eq!(after.tables, model.tables(&g), "map #{i}: tables");
        assert_eq!(after.live, g.root_pages() + after.tables);
    }
    // A device range next to the pages.
    let before = snap_s2(&s2, &arena);
    let dev = (3 * BLOCK_1G + 7 * BLOCK_2M, 3 * PAGE);
    let (r, n) = for_each_failure(
        &arena,
        "map_device",
        &mut s2,
        |s2| s2.map_device(Ipa(dev.0), PhysAddr(0x3f_0000_0000), dev.1, true),
        |k, r, s2| {
            assert_eq!(*r, Err(Error::OutOfMemory), "map_device, allocation #{k}");
            assert_eq!(snap_s2(s2, &arena), before, "map_device, allocation #{k}");
        },
    );
    assert_eq!(r, Ok(()));
    assert!(n > 0);
    let after = snap_s2(&s2, &arena);
    assert_eq!(after.leaves.len(), before.leaves.len() + 3);
    drop(s2);
    assert_eq!(arena.live_pages(), 0);
}

/// The fault path's split: top up the cache (which may fail at any of its allocations), then
/// split with what the cache holds; the cache goes back to the allocator afterwards.
fn stage2_split_topup<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut s2 = populated::<A>(&arena, bits);
    let before = snap_s2(&s2, &arena);
    let ipa = Ipa(BLOCK_1G + 3 * BLOCK_2M + 5 * PAGE);
    let want = s2.translate(ipa).unwrap();
    let pages = s2.fault_pages();
    let mut cache = PageCache::<8>::new();
    let (r, n) = for_each_failure(
        &arena,
        "top_up + split_block",
        &mut (&mut s2, &mut cache),
        |(s2, cache)| {
            let r = cache
                .top_up(&arena, pages)
                .and_then(|()| s2.split_block(cache, ipa));
            cache.release(&arena);
            r
        },
        |k, r, (s2, _)| {
            assert_eq!(*r, Err(Error::OutOfMemory), "allocation #{k}");
            assert_eq!(snap_s2(s2, &arena), before, "allocation #{k}");
        },
    );
    assert_eq!(n as usize, pages);
    // The failed runs changed nothing. With a level-1 start (40 bits) the successful one split
    // the 1 GiB block in two steps (1 -> 512 blocks -> 511 blocks + 512 pages, two tables);
    // a 32-bit VM starts at level 2 (four concatenated level-2 tables, issue 17), so the
    // 1 GiB range is 2 MiB blocks and the split is one step (one block -> 512 pages).
    let steps = if s2.geometry().start_level() == 1 {
        2
    } else {
        1
    };
    assert_eq!(s2.geometry().start_level(), if bits == 32 { 2 } else { 1 });
    assert_eq!(r, Ok(steps));
    let after = snap_s2(&s2, &arena);
    let new_leaves = if steps == 2 { 511 + 512 } else { 512 };
    assert_eq!(after.leaves.len(), before.leaves.len() - 1 + new_leaves);
    assert_eq!(after.live, before.live + steps);
    let t = s2.translate(ipa).unwrap();
    assert_eq!((t.pa, t.attrs, t.level), (want.pa, want.attrs, 3));

    // A cache that could not be filled far enough: CacheExhausted, nothing changed.
    let ipa2 = Ipa(2 * BLOCK_1G + 5 * BLOCK_2M);
    let before = snap_s2(&s2, &arena);
    arena.fail_nth(1);
    assert_eq!(cache.top_up(&arena, pages), Err(Error::OutOfMemory));
    arena.stop_failing();
    assert_eq!(cache.len(), 0);
    assert_eq!(
        s2.split_block(&mut cache, ipa2),
        Err(Error::CacheExhausted {
            needed: 1,
            available: 0
        })
    );
    assert_eq!(snap_s2(&s2, &arena), before);
    drop(s2);
    assert_eq!(arena.live_pages(), 0);
}

fn stage2_memslots<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut s2 = populated::<A>(&arena, bits);
    let desc = |ipa: u64, log_dirty: bool| SlotDesc {
        ipa: Ipa(ipa),
        size: BLOCK_1G,
        host: PhysAddr(0x8_4000_0000),
        flags: SlotFlags {
            readonly: false,
            log_dirty,
            ..SlotFlags::default()
        },
    };
    // add_memslot with logging allocates the bitmap.
    let before = snap_s2(&s2, &arena);
    let (r, n) = for_each_failure(
        &arena,
        "add_memslot(log_dirty)",
        &mut s2,
        |s2| s2.add_memslot(desc(BLOCK_1G, true)),
        |k, r, s2| {
            assert_eq!(*r, Err(Error::OutOfMemory), "allocation #{k}");
            assert_eq!(snap_s2(s2, &arena), before, "allocation #{k}");
            assert!(s2.slots().is_empty(), "a failed add registered a slot");
        },
    );
    assert_eq!(n, 1);
    let logged = r.unwrap();
    assert_eq!(s2.slots().len(), 1, "failed adds registered nothing");
    assert_eq!(s2.is_dirty(logged, 0), Ok(false));
    assert_eq!(
        arena.live_pages(),
        before.live + 8,
        "a 1 GiB slot has 8 bitmap pages"
    );

    // enable_dirty_logging allocates the bitmap, then write-protects.
    let plain = s2.add_memslot(desc(2 * BLOCK_1G, false)).unwrap();
    let before = snap_s2(&s2, &arena);
    let (r, n) = for_each_failure(
        &arena,
        "enable_dirty_logging",
        &mut s2,
        |s2| s2.enable_dirty_logging(plain),
        |k, r, s2| {
            assert_eq!(*r, Err(Error::OutOfMemory), "allocation #{k}");
            // No bitmap, nothing write-protected, logging still off.
            assert_eq!(snap_s2(s2, &arena), before, "allocation #{k}");
            assert_eq!(s2.is_dirty(plain, 0), Err(Error::NotLogging(plain)));
            assert!(!s2.slot(plain).unwrap().logging());
        },
    );
    assert_eq!(n, 1);
    assert_eq!(r, Ok(()));
    // Only the successful run changed the tree, protecting the leaves of the slot.
    let after = snap_s2(&s2, &arena);
    assert_eq!(after.live, before.live + 8);
    assert_eq!(after.tables, before.tables);
    for ((ia, b), (_, a)) in before.leaves.iter().zip(&after.leaves) {
        let in_slot = (2 * BLOCK_1G..3 * BLOCK_1G).contains(ia);
        let want_w = b.attrs.perms.write() && !in_slot;
        assert_eq!(a.attrs.perms.write(), want_w, "leaf {ia:#x}");
    }
    drop(s2);
    assert_eq!(arena.live_pages(), 0);
}

// ---- hyp ----

fn hyp_config(bits: u8) -> HypConfig {
    HypConfig::new(bits, 40, VirtAddr(0xe000_0000), 0x1000_0000)
}

fn hyp_new<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let (r, n) = for_each_failure(
        &arena,
        "HypTables::new",
        &mut (),
        |_| HypTables::<A, _>::new(&arena, hyp_config(bits)).map(HypTables::free),
        |k, r, _| {
            assert_eq!(*r, Err(HypError::OutOfMemory), "allocation #{k}");
            assert_eq!(arena.live_pages(), 0, "leak, allocation #{k}");
        },
    );
    assert_eq!(r, Ok(()));
    assert_eq!(n, 1);
    assert_eq!(arena.live_pages(), 0);
}

fn hyp_maps<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut h = HypTables::<A, _>::new(&arena, hyp_config(bits)).unwrap();
    h.map_range(
        VirtAddr(BLOCK_1G),
        PhysAddr(0x8_4000_0000),
        BLOCK_2M + 3 * PAGE,
        Stage1Attrs::normal(Perms::RW),
    )
    .unwrap();
    type Op<'x, A> = Box<dyn Fn(&mut HypTables<A, &'x Arena>) -> Result<u64, HypError> + 'x>;
    let ops: Vec<(&str, Op<'_, A>)> = vec![
        (
            "map_range across 1 GiB",
            Box::new(|h| {
                h.map_range(
                    VirtAddr(2 * BLOCK_1G - 2 * PAGE),
                    PhysAddr(0x9_0000_0000),
                    4 * PAGE,
                    Stage1Attrs::normal(Perms::R),
                )
                .map(|()| 0)
            }),
        ),
        (
            "map_range blocks and pages",
            Box::new(|h| {
                h.map_range(
                    VirtAddr(BLOCK_1G + 3 * BLOCK_2M - PAGE),
                    PhysAddr(0x9_4000_0000 + 3 * BLOCK_2M - PAGE),
                    2 * BLOCK_2M + 2 * PAGE,
                    Stage1Attrs::normal(Perms::RW),
                )
                .map(|()| 0)
            }),
        ),
        (
            "create_mappings",
            Box::new(|h| {
                let conv = LinearMap {
                    kernel_base: 0xffff_0000_0000_0000,
                    hyp_base: VirtAddr(0x8000_0000),
                    phys_base: PhysAddr(0x9_8000_0000),
                };
                h.create_mappings(
                    0xffff_0000_0000_0000 + 5 * PAGE,
                    0xffff_0000_0000_0000 + BLOCK_2M + 5 * PAGE,
                    &conv,
                    Stage1Attrs::normal(Perms::RW),
                )
                .map(|()| 0)
            }),
        ),
        (
            "create_io_mappings",
            Box::new(|h| {
                h.create_io_mappings(PhysAddr(0x3f_0000_0000), 3 * PAGE)
                    .map(|v| v.0)
            }),
        ),
        (
            "create_exec_mappings",
            Box::new(|h| {
                h.create_exec_mappings(PhysAddr(0x3e_0000_0000), PAGE)
                    .map(|v| v.0)
            }),
        ),
        (
            "map_idmap",
            Box::new(|h| h.map_idmap(PhysAddr(0x3000_0000), 2 * PAGE).map(|()| 0)),
        ),
    ];
    for (what, op) in &ops {
        let before = snap_hyp(&h, &arena);
        let io = *h.io_area();
        let mut k = 1;
        loop {
            let calls = arena.allocation_calls();
            arena.fail_nth(k);
            let r = op(&mut h);
            arena.stop_failing();
            let v = log::violations();
            assert!(v.is_empty(), "{what}, allocation #{k}: {v:?}");
            if arena.allocation_calls() < calls + k {
                assert!(r.is_ok(), "{what}: {r:?}");
                // The exec page shares the I/O mapping's last-level table.
                assert!(k > 1 || what.contains("exec"), "{what} allocated nothing");
                break;
            }
            assert_eq!(r, Err(HypError::OutOfMemory), "{what}, allocation #{k}");
            assert_eq!(snap_hyp(&h, &arena), before, "{what}, allocation #{k}");
            assert_eq!(*h.io_area(), io, "{what}: I/O area rewound");
            assert_eq!(h.idmap(), None);
            k += 1;
        }
        let after = snap_hyp(&h, &arena);
        assert_eq!(after.live, h.geometry().root_pages() + after.tables);
    }
    h.free();
    assert_eq!(arena.live_pages(), 0);
}

macro_rules! configs {
    ($($name:ident => [$($test:ident: $arch:ty, $bits:expr;)*])*) => {
        $(mod $name { $(#[test] fn $test() { super::$name::<$arch>($bits) })* })*
    };
}

configs! {
    stage2_new => [
        armv7_ipa32: pt_hyp::Armv7, 32; armv7_ipa40: pt_hyp::Armv7, 40;
        armv8_ipa32: pt_hyp::Armv8, 32; armv8_ipa40: pt_hyp::Armv8, 40;
    ]
    stage2_maps => [
        armv7_ipa32: pt_hyp::Armv7, 32; armv7_ipa40: pt_hyp::Armv7, 40;
        armv8_ipa32: pt_hyp::Armv8, 32; armv8_ipa40: pt_hyp::Armv8, 40;
    ]
    stage2_split_topup => [
        armv7_ipa32: pt_hyp::Armv7, 32; armv7_ipa40: pt_hyp::Armv7, 40;
        armv8_ipa32: pt_hyp::Armv8, 32; armv8_ipa40: pt_hyp::Armv8, 40;
    ]
    stage2_memslots => [
        armv7_ipa32: pt_hyp::Armv7, 32; armv7_ipa40: pt_hyp::Armv7, 40;
        armv8_ipa32: pt_hyp::Armv8, 32; armv8_ipa40: pt_hyp::Armv8, 40;
    ]
    hyp_new => [
        armv7_va32: pt_hyp::Armv7, 32; armv8_va40: pt_hyp::Armv8, 40; armv8_va48: pt_hyp::Armv8, 48;
    ]
    hyp_maps => [
        armv7_va32: pt_hyp::Armv7, 32; armv8_va40: pt_hyp::Armv8, 40; armv8_va48: pt_hyp::Armv8, 48;
    ]
}
