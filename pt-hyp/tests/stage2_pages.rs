//! Stage-2 table pages: minimal trees, unmapping, teardown (issue 5).

#[macro_use]
mod stage2_support;
use stage2_support::*;
use std::collections::BTreeSet;

/// Asserts that the live table pages are the fewest the leaves in `windows` need (the
/// callers map nothing outside them).
#[track_caller]
fn assert_minimal<A: Arch>(
    arena: &Arena,
    vm: &Stage2<A, &Arena>,
    bits: u8,
    windows: &[(u64, u64)],
) {
    let l: Vec<(u64, u8)> = windows
        .iter()
        .flat_map(|&(lo, hi)| leaves(vm, lo, hi))
        .collect();
    assert_eq!(arena.live_pages(), min_pages(bits, &l), "leaves {l:x?}");
}

fn pages_minimal_after_scripted_sequence<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let root = root_pages(bits);
    // A level-2 table per GiB touched only when the walk starts at level 1 (40 bits); a
    // 32-bit VM's root is the level-2 table (issue 17), and 1 GiB maps as 2 MiB blocks.
    let l2 = l2_tables(bits, 1);
    let rw = Perms::RW;
    // A page: L2 + L3.
    vm.map_ram(Ipa(RAM), pa(RAM), PAGE_SIZE, rw, BlockSize::Page)
        .unwrap();
    assert_eq!(arena.live_pages(), root + l2 + 1);
    // Another page in the same 2 MiB: nothing new.
    vm.map_ram(
        Ipa(RAM + 9 * PAGE_SIZE),
        pa(RAM + 9 * PAGE_SIZE),
        PAGE_SIZE,
        rw,
        BlockSize::Page,
    )
    .unwrap();
    assert_eq!(arena.live_pages(), root + l2 + 1);
    // A 2 MiB block in the same GiB: nothing new.
    vm.map_ram(
        Ipa(RAM + BLOCK_2M),
        pa(RAM + BLOCK_2M),
        BLOCK_2M,
        rw,
        BlockSize::Block2M,
    )
    .unwrap();
    assert_eq!(arena.live_pages(), root + l2 + 1);
    // Pages in two more 2 MiB of the same GiB, one range: two L3.
    let x = RAM + 3 * BLOCK_2M - 2 * PAGE_SIZE;
    vm.map_ram(Ipa(x), pa(x), 4 * PAGE_SIZE, rw, BlockSize::Block2M)
        .unwrap();
    assert_eq!(arena.live_pages(), root + l2 + 3);
    // A 1 GiB block: in the root.
    vm.map_ram(Ipa(0), pa(0), BLOCK_1G, rw, BlockSize::Block1G)
        .unwrap();
    assert_eq!(arena.live_pages(), root + l2 + 3);
    // A page in another GiB: L2 + L3.
    let y = 3 * BLOCK_1G + 5 * BLOCK_2M;
    let windows = [
        (0, PAGE_SIZE),
        (RAM, RAM + 4 * BLOCK_2M),
        (y, y + PAGE_SIZE),
    ];
    vm.map_ram(Ipa(y), pa(y), PAGE_SIZE, rw, BlockSize::Page)
        .unwrap();
    assert_eq!(arena.live_pages(), root + 2 * l2 + 4);
    assert_minimal(&arena, &vm, bits, &windows);
    // Unmap the first 2 MiB's pages: its L3 goes.
    vm.unmap_range(Ipa(RAM), BLOCK_2M).unwrap();
    assert_eq!(arena.live_pages(), root + 2 * l2 + 3);
    // Unmap one page of the two-page tail: the table stays; the other: it goes.
    vm.unmap_range(Ipa(x + 2 * PAGE_SIZE), PAGE_SIZE).unwrap();
    assert_eq!(arena.live_pages(), root + 2 * l2 + 3);
    vm.unmap_range(Ipa(x + 3 * PAGE_SIZE), PAGE_SIZE).unwrap();
    assert_eq!(arena.live_pages(), root + 2 * l2 + 2);
    assert_minimal(&arena, &vm, bits, &windows);
    // Unmap the lone page in the last GiB: L3 and L2 go.
    vm.unmap_range(Ipa(y), PAGE_SIZE).unwrap();
    assert_eq!(arena.live_pages(), root + l2 + 1);
    // Unmap the 1 GiB block: nothing was below it.
    vm.unmap_range(Ipa(0), BLOCK_1G).unwrap();
    assert_eq!(arena.live_pages(), root + l2 + 1);
    assert_minimal(&arena, &vm, bits, &windows);
    // Everything: only the root remains.
    vm.unmap_range(Ipa(0), 1 << bits).unwrap();
    assert_eq!(arena.live_pages(), root);
    assert_eq!(leaves(&vm, RAM, RAM + BLOCK_1G / 64), vec![]);
    drop(vm);
    assert_eq!(arena.live_pages(), 0);
}

/// The model of the randomized sequence: 2 MiB blocks and pages, by index.
#[derive(Default)]
struct Model {
    blocks: BTreeSet<u64>,
    pages: BTreeSet<u64>,
}

const PAGES_PER_BLOCK: u64 = BLOCK_2M / PAGE_SIZE;

impl Model {
    fn map_pages(&mut self, first: u64, n: u64) {
        for p in first..first + n {
            if !self.blocks.contains(&(p / PAGES_PER_BLOCK)) {
                self.pages.insert(p);
            }
        }
    }

    fn map_block(&mut self, b: u64) {
        let first = b * PAGES_PER_BLOCK;
        if self.blocks.contains(&b) {
            return;
        }
        if self
            .pages
            .range(first..first + PAGES_PER_BLOCK)
            .next()
            .is_some()
        {
            // A level-3 table is there: its free entries are filled with pages.
            self.map_pages(first, PAGES_PER_BLOCK);
        } else {
            self.blocks.insert(b);
        }
    }

    fn unmap(&mut self, first: u64, n: u64) {
        let (b0, b1) = (first / PAGES_PER_BLOCK, (first + n - 1) / PAGES_PER_BLOCK);
        self.blocks.retain(|b| *b < b0 || *b > b1);
        self.pages.retain(|p| *p < first || *p >= first + n);
    }

    fn leaves(&self) -> Vec<(u64, u8)> {
        let mut l: Vec<(u64, u8)> = self
            .blocks
            .iter()
            .map(|b| (b * BLOCK_2M, 2))
            .chain(self.pages.iter().map(|p| (p * PAGE_SIZE, 3)))
            .collect();
        l.sort();
        l
    }
}

/// A pseudo-random sequence of page maps, block maps and unmaps over 16 MiB around a GiB
/// boundary, checked against a model after every step: the same translations, and exactly
/// the table pages those leaves need.
fn pages_minimal_after_random_sequence<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let lo = RAM + BLOCK_1G - 4 * BLOCK_2M;
    let hi = lo + 8 * BLOCK_2M;
    let (p_lo, p_hi) = (lo / PAGE_SIZE, hi / PAGE_SIZE);
    let mut model = Model::default();
    let mut seed = 0x2545_f491_4f6c_dd1du64 ^ bits as u64;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for step in 0..300 {
        match rnd(8) {
            0..=2 => {
                let first = p_lo + rnd(p_hi - p_lo);
                let n = (1 + rnd(40)).min(p_hi - first);
                let ipa = first * PAGE_SIZE;
                vm.map_ram(Ipa(ipa), pa(ipa), n * PAGE_SIZE, Perms::RW, BlockSize::Page)
                    .unwrap();
                model.map_pages(first, n);
            }
            3 | 4 => {
                let b = lo / BLOCK_2M + rnd(8);
                let ipa = b * BLOCK_2M;
                vm.map_ram(Ipa(ipa), pa(ipa), BLOCK_2M, Perms::RW, BlockSize::Block2M)
                    .unwrap();
                model.map_block(b);
            }
            5 | 6 => {
                let first = p_lo + rnd(p_hi - p_lo);
                let n = (1 + rnd(700)).min(p_hi - first);
                vm.unmap_range(Ipa(first * PAGE_SIZE), n * PAGE_SIZE)
                    .unwrap();
                model.unmap(first, n);
            }
            _ => {
                if rnd(4) == 0 {
                    vm.unmap_range(Ipa(lo), hi - lo).unwrap();
                    model.unmap(p_lo, p_hi - p_lo);
                }
            }
        }
        let expected = model.leaves();
        assert_eq!(
            arena.live_pages(),
            min_pages(bits, &expected),
            "step {step}"
        );
        if step % 10 == 0 {
            assert_eq!(leaves(&vm, lo, hi), expected, "step {step}");
            for &(ipa, level) in &expected {
                assert_maps(&vm, ipa, ram(Perms::RW), level);
            }
        }
    }
    assert_eq!(leaves(&vm, lo, hi), model.leaves());
    vm.unmap_range(Ipa(0), 1 << bits).unwrap();
    assert_eq!(arena.live_pages(), root_pages(bits));
}

fn drop_and_destroy_free_every_page<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    for destroy in [false, true] {
        let mut vm = new_vm::<A>(&arena, bits);
        let logged = vm.add_memslot(slot(RAM, 8 * BLOCK_2M, true)).unwrap();
        vm.add_memslot(slot(RAM + 8 * BLOCK_2M, BLOCK_2M, false))
            .unwrap();
        vm.map_ram(
            Ipa(RAM),
            pa(RAM),
            9 * BLOCK_2M,
            Perms::RW,
            BlockSize::Block2M,
        )
        .unwrap();
        vm.map_ram(
            Ipa(RAM + 9 * BLOCK_2M),
            pa(RAM + 9 * BLOCK_2M),
            3 * PAGE_SIZE,
            Perms::RW,
            BlockSize::Page,
        )
        .unwrap();
        vm.map_device(
            Ipa(0x0800_0000),
            PhysAddr(0x0800_0000),
            16 * PAGE_SIZE,
            true,
        )
        .unwrap();
        vm.map_ram(Ipa(0), pa(0), BLOCK_1G, Perms::R, BlockSize::Block1G)
            .unwrap_err();
        vm.mark_dirty(Ipa(RAM + PAGE_SIZE));
        assert_eq!(vm.is_dirty(logged, 1), Ok(true));
        assert!(arena.live_pages() > root_pages(bits));
        if destroy {
            vm.destroy().unwrap();
        } else {
            drop(vm);
        }
        assert_eq!(arena.live_pages(), 0, "destroy: {destroy}");
    }
}

fn unmap_everything_leaves_only_root<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let top = (1u64 << bits) - BLOCK_2M;
    vm.map_ram(
        Ipa(0),
        pa(0),
        BLOCK_1G + 3 * PAGE_SIZE,
        Perms::RW,
        BlockSize::Block1G,
    )
    .unwrap();
    vm.map_ram(Ipa(top), pa(0), BLOCK_2M, Perms::RW, BlockSize::Page)
        .unwrap();
    vm.map_device(Ipa(RAM + BLOCK_2M), PhysAddr(0x0900_0000), PAGE_SIZE, true)
        .unwrap();
    // Three level-3 tables (the tail pages, the top 2 MiB, the device page) and, with a
    // level-1 start, the level-2 tables of GiB 1 and of the top GiB.
    assert_eq!(
        arena.live_pages(),
        root_pages(bits) + 3 + l2_tables(bits, 2)
    );
    vm.unmap_range(Ipa(0), 1 << bits).unwrap();
    assert_eq!(arena.live_pages(), root_pages(bits));
    for ipa in [0, BLOCK_1G, RAM + BLOCK_2M, top] {
        assert_eq!(vm.translate(Ipa(ipa)), None);
    }
    drop(vm);
    assert_eq!(arena.live_pages(), 0);
}

fn unmap_range_frees_emptied_tables<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let root = root_pages(bits);
    // Level-2 tables of GiB 1 and 2 (none when the 32-bit root is the level-2 table).
    let l2 = l2_tables(bits, 2);
    // Pages in two 2 MiB of GiB 1 and one 2 MiB of GiB 2.
    let a = RAM + 4 * BLOCK_2M;
    let b = RAM + 9 * BLOCK_2M;
    let c = RAM + BLOCK_1G + BLOCK_2M;
    for ipa in [a, b, c] {
        vm.map_ram(Ipa(ipa), pa(ipa), 5 * PAGE_SIZE, Perms::RW, BlockSize::Page)
            .unwrap();
    }
    assert_eq!(arena.live_pages(), root + l2 + 3);
    // Part of a: nothing freed.
    vm.unmap_range(Ipa(a), 2 * PAGE_SIZE).unwrap();
    assert_eq!(arena.live_pages(), root + l2 + 3);
    // The rest of a, by a range larger than what is mapped but not the whole 2 MiB.
    vm.unmap_range(Ipa(a), 100 * PAGE_SIZE).unwrap();
    assert_eq!(arena.live_pages(), root + l2 + 2);
    // A range from b into c: b's L3, c's L3 and c's L2.
    vm.unmap_range(Ipa(b), c + 5 * PAGE_SIZE - b).unwrap();
    assert_eq!(arena.live_pages(), root);
}

fn unmap_partial_block_removes_whole_block<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let blk = RAM + 6 * BLOCK_2M;
    vm.map_ram(
        Ipa(blk),
        pa(blk),
        2 * BLOCK_2M,
        Perms::RW,
        BlockSize::Block2M,
    )
    .unwrap();
    vm.map_ram(Ipa(RAM), pa(RAM), PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    let live = arena.live_pages();
    log::clear();
    // One page in the middle of the first block.
    vm.unmap_range(Ipa(blk + 17 * PAGE_SIZE), PAGE_SIZE)
        .unwrap();
    assert_eq!(log::tlb_ops(), batch::<A>(vm.vttbr(), &[(blk, 2)]));
    assert_eq!(leaves(&vm, blk, blk + BLOCK_2M), vec![]);
    // The neighbour block is untouched.
    assert_maps(&vm, blk + BLOCK_2M, ram(Perms::RW), 2);
    assert_eq!(arena.live_pages(), live);
    // A range straddling the second block's end removes it whole.
    vm.unmap_range(Ipa(blk + 2 * BLOCK_2M - PAGE_SIZE), 2 * PAGE_SIZE)
        .unwrap();
    assert_eq!(vm.translate(Ipa(blk + BLOCK_2M)), None);
    // 1 GiB: one page in it removes the whole GiB.
    let g = if bits == 32 {
        3 * BLOCK_1G
    } else {
        7 * BLOCK_1G
    };
    vm.map_ram(Ipa(g), pa(g), BLOCK_1G, Perms::RW, BlockSize::Block1G)
        .unwrap();
    vm.unmap_range(Ipa(g + BLOCK_1G - PAGE_SIZE), PAGE_SIZE)
        .unwrap();
    // With a level-1 start the GiB is one block and goes whole. A 32-bit VM starts at level 2
    // (issue 17): no 1 GiB blocks, the GiB is 512 2 MiB blocks and only the last one goes.
    assert_eq!(vm.translate(Ipa(g + BLOCK_1G - PAGE_SIZE)), None);
    if top_block_level(bits) == 1 {
        assert_eq!(vm.translate(Ipa(g)), None);
    } else {
        assert_eq!(vm.translate(Ipa(g + BLOCK_1G - BLOCK_2M)), None);
        assert_maps(&vm, g + BLOCK_1G - BLOCK_2M - PAGE_SIZE, ram(Perms::RW), 2);
        assert_maps(&vm, g, ram(Perms::RW), 2);
    }
    assert_minimal(
        &arena,
        &vm,
        bits,
        &[
            (RAM, RAM + PAGE_SIZE),
            (blk, blk + 2 * BLOCK_2M),
            (g, g + PAGE_SIZE),
        ],
    );
}

fn unmap_vm_unmaps_slot_ram_only<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    vm.add_memslot(slot(RAM, 4 * BLOCK_2M, false)).unwrap();
    vm.add_memslot(slot(RAM + 8 * BLOCK_2M, 16 * PAGE_SIZE, true))
        .unwrap();
    vm.map_ram(
        Ipa(RAM),
        pa(RAM),
        4 * BLOCK_2M,
        Perms::RW,
        BlockSize::Block2M,
    )
    .unwrap();
    vm.map_ram(
        Ipa(RAM + 8 * BLOCK_2M),
        pa(RAM + 8 * BLOCK_2M),
        16 * PAGE_SIZE,
        Perms::RW,
        BlockSize::Page,
    )
    .unwrap();
    // Outside every slot: a device and a page of RAM.
    let dev = 0x0800_0000;
    vm.map_device(Ipa(dev), PhysAddr(0x0900_0000), 4 * PAGE_SIZE, true)
        .unwrap();
    let outside = RAM + 8 * BLOCK_2M + 16 * PAGE_SIZE;
    vm.map_ram(
        Ipa(outside),
        pa(outside),
        PAGE_SIZE,
        Perms::RW,
        BlockSize::Page,
    )
    .unwrap();
    vm.unmap_vm().unwrap();
    assert_eq!(leaves(&vm, RAM, RAM + 4 * BLOCK_2M), vec![]);
    assert_eq!(leaves(&vm, RAM + 8 * BLOCK_2M, outside), vec![]);
    for i in 0..4 {
        let t = vm.translate(Ipa(dev + i * PAGE_SIZE)).unwrap();
        assert_eq!(t.pa, PhysAddr(0x0900_0000 + i * PAGE_SIZE));
        assert_eq!(t.attrs, Stage2Attrs::device(true));
    }
    assert_maps(&vm, outside, ram(Perms::RW), 3);
    // Device: L2 + L3; outside page: L2 + L3 (RAM's GiB, whose L2 stays for it); the
    // logging slot's bitmap page. No level-2 tables when the 32-bit root is level 2.
    assert_eq!(
        arena.live_pages(),
        root_pages(bits) + 2 + l2_tables(bits, 2) + 1
    );
    // Slots and their bitmaps are kept.
    assert_eq!(vm.slots().len(), 2);
}

fn remove_memslot_unmaps_and_frees_bitmap<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let live0 = arena.live_pages();
    let id = vm.add_memslot(slot(RAM, 2 * BLOCK_2M, true)).unwrap();
    assert_eq!(arena.live_pages(), live0 + 1, "one bitmap page");
    vm.map_ram(Ipa(RAM), pa(RAM), 2 * BLOCK_2M, Perms::RW, BlockSize::Page)
        .unwrap();
    vm.remove_memslot(id).unwrap();
    assert_eq!(leaves(&vm, RAM, RAM + 2 * BLOCK_2M), vec![]);
    assert_eq!(arena.live_pages(), live0);
}

stage2_tests!(
    pages_minimal_after_scripted_sequence,
    pages_minimal_after_random_sequence,
    drop_and_destroy_free_every_page,
    unmap_everything_leaves_only_root,
    unmap_range_frees_emptied_tables,
    unmap_partial_block_removes_whole_block,
    unmap_vm_unmaps_slot_ram_only,
    remove_memslot_unmaps_and_frees_bitmap,
);
