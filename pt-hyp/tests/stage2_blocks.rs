//! Stage-2 blocks: dissolve, split, and replacing a page (issue 5).

#[macro_use]
mod stage2_support;
use stage2_support::*;

/// A VM with a 2 MiB block at `RAM + 2 MiB` inside a 4 MiB slot, and a page at `RAM` that
/// keeps the level-2 table alive.
fn vm_with_block<A: Arch>(
    arena: &Arena,
    bits: u8,
    log_dirty: bool,
) -> (Stage2<A, &Arena>, SlotId, u64) {
    let mut vm = new_vm::<A>(arena, bits);
    let id = vm.add_memslot(slot(RAM, 2 * BLOCK_2M, log_dirty)).unwrap();
    vm.map_ram(Ipa(RAM), pa(RAM), PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    let blk = RAM + BLOCK_2M;
    vm.map_ram(Ipa(blk), pa(blk), BLOCK_2M, Perms::RW, BlockSize::Block2M)
        .unwrap();
    (vm, id, blk)
}

fn dissolve_block_without_logging<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let (mut vm, id, blk) = vm_with_block::<A>(&arena, bits, false);
    let live = arena.live_pages();
    log::clear();
    assert_eq!(vm.dissolve_block(Ipa(blk + 0x12_3456)), Ok(true));
    assert_eq!(log::tlb_ops(), batch::<A>(vm.vttbr(), &[(blk, 2)]));
    assert_eq!(leaves(&vm, blk, blk + BLOCK_2M), vec![]);
    assert_maps(&vm, RAM, ram(Perms::RW), 3);
    assert_eq!(arena.live_pages(), live);
    assert_eq!(vm.is_dirty(id, 512), Err(Error::NotLogging(id)));
    // Nothing (or a page) there: no block to dissolve, nothing done.
    log::clear();
    assert_eq!(vm.dissolve_block(Ipa(blk)), Ok(false));
    assert_eq!(vm.dissolve_block(Ipa(RAM)), Ok(false));
    assert_eq!(log::writes(), 0);
    assert_maps(&vm, RAM, ram(Perms::RW), 3);
    // The guest faults pages back in where the block was.
    vm.map_ram(Ipa(blk), pa(blk), PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    assert_maps(&vm, blk, ram(Perms::RW), 3);
}

fn dissolve_block_while_logging_marks_block_dirty<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let (mut vm, id, blk) = vm_with_block::<A>(&arena, bits, false);
    vm.enable_dirty_logging(id).unwrap();
    // Logging write-protected the block; it stays a block until dissolved.
    assert_maps(&vm, blk, logged(Perms::RW), 2);
    assert_eq!(vm.dissolve_block(Ipa(blk + 5 * PAGE_SIZE)), Ok(true));
    for i in 0..1024 {
        assert_eq!(vm.is_dirty(id, i), Ok(i >= 512), "page {i}");
    }
    let mut log = [0u64; 16];
    assert_eq!(vm.get_dirty_log(id, &mut log), Ok(512));
    assert_eq!(
        log,
        [0, 0, 0, 0, 0, 0, 0, 0, !0, !0, !0, !0, !0, !0, !0, !0]
    );
    assert_eq!(leaves(&vm, blk, blk + BLOCK_2M), vec![]);
}

/// A block mapped across two logging slots (possible through `map`): dissolving it marks the
/// pages of each slot it covered.
fn dissolve_block_across_slots_marks_each_slot<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let blk = RAM + BLOCK_2M;
    let half = BLOCK_2M / 2;
    let a = vm.add_memslot(slot(RAM, BLOCK_2M + half, true)).unwrap();
    let b = vm
        .add_memslot(slot(blk + half, 4 * BLOCK_2M, true))
        .unwrap();
    vm.map_ram(Ipa(blk), pa(blk), BLOCK_2M, Perms::RW, BlockSize::Block2M)
        .unwrap();
    assert_eq!(vm.dissolve_block(Ipa(blk + half + PAGE_SIZE)), Ok(true));
    for i in 0..768 {
        assert_eq!(vm.is_dirty(a, i), Ok(i >= 512), "slot a page {i}");
    }
    for i in 0..2048 {
        assert_eq!(vm.is_dirty(b, i), Ok(i < 256), "slot b page {i}");
    }
}

fn split_block_keeps_every_translation<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let (mut vm, _, blk) = vm_with_block::<A>(&arena, bits, false);
    let mut cache = PageCache::<4>::empty();
    cache.top_up(&arena, 3).unwrap();
    let live = arena.live_pages();
    let calls = arena.allocation_calls();
    log::clear();
    assert_eq!(vm.split_block(&mut cache, Ipa(blk + 77 * PAGE_SIZE)), Ok(1));
    assert_eq!(log::tlb_ops(), batch::<A>(vm.vttbr(), &[(blk, 2)]));
    // Block -> invalid -> invalidate + DSB -> table (and the checker agrees on drop).
    let recs = log::records();
    let writes: Vec<usize> = recs
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            matches!(
                r,
                Record::Table(pt_core::TraceEvent::Write { level: 2, .. })
            )
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(writes.len(), 2, "break, then make");
    assert!(recs[writes[0]..writes[1]].contains(&Record::Barrier(Barrier::DsbIsh)));
    for i in 0..512 {
        assert_maps(&vm, blk + i * PAGE_SIZE, ram(Perms::RW), 3);
    }
    assert_eq!(cache.len(), 2, "the table came from the cache");
    assert_eq!(arena.allocation_calls(), calls);
    assert_eq!(arena.live_pages(), live);
    // Already pages: nothing to split.
    assert_eq!(vm.split_block(&mut cache, Ipa(blk)), Ok(0));
    assert_eq!(
        vm.split_block(&mut cache, Ipa(RAM + 3 * BLOCK_2M)),
        Err(Error::NotMapped {
            ia: RAM + 3 * BLOCK_2M
        })
    );
    cache.release(&arena);
    // The split's level-3 table and the other tables of vm_with_block; RAM's level-2 table
    // exists only with a level-1 start (a 32-bit VM's root is the level-2 table).
    assert_eq!(
        arena.live_pages(),
        root_pages(bits) + l2_tables(bits, 1) + 2
    );
}

fn split_1g_block_keeps_every_translation<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    vm.map_ram(Ipa(RAM), pa(RAM), BLOCK_1G, Perms::RX, BlockSize::Block1G)
        .unwrap();
    let mut cache = PageCache::<4>::empty();
    cache.top_up(&arena, 4).unwrap();
    let at = RAM + 3 * BLOCK_2M + 5 * PAGE_SIZE;
    log::clear();
    // With a level-1 start the GiB is one level-1 block: two steps (1 GiB -> 2 MiB -> pages).
    // A 32-bit VM starts at level 2 (issue 17): the GiB is 512 2 MiB blocks, one step.
    let steps = if top_block_level(bits) == 1 { 2 } else { 1 };
    assert_eq!(vm.split_block(&mut cache, Ipa(at)), Ok(steps));
    let vttbr = vm.vttbr();
    let mut want = if steps == 2 {
        batch::<A>(vttbr, &[(RAM, 1)])
    } else {
        Vec::new()
    };
    want.extend(batch::<A>(vttbr, &[(RAM + 3 * BLOCK_2M, 2)]));
    assert_eq!(log::tlb_ops(), want);
    for i in 0..512 {
        let ipa = RAM + i * BLOCK_2M;
        let level = if i == 3 { 3 } else { 2 };
        assert_maps(&vm, ipa, ram(Perms::RX), level);
        assert_maps(&vm, ipa + BLOCK_2M - 1, ram(Perms::RX), level);
    }
    for i in 0..512 {
        assert_maps(&vm, RAM + 3 * BLOCK_2M + i * PAGE_SIZE, ram(Perms::RX), 3);
    }
    assert_eq!(cache.len(), 4 - steps);
    cache.release(&arena);
    assert_eq!(arena.live_pages(), root_pages(bits) + steps);
}

fn split_with_empty_cache_is_cache_exhausted<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let (mut vm, _, blk) = vm_with_block::<A>(&arena, bits, false);
    let g = if bits == 32 { 0 } else { 9 * BLOCK_1G };
    vm.map_ram(Ipa(g), pa(g), BLOCK_1G, Perms::RW, BlockSize::Block1G)
        .unwrap();
    let before = snapshot(&vm, RAM, RAM + 2 * BLOCK_2M);
    let live = arena.live_pages();
    let mut cache = PageCache::<4>::empty();
    log::clear();
    assert_eq!(
        vm.split_block(&mut cache, Ipa(blk)),
        Err(Error::CacheExhausted {
            needed: 1,
            available: 0
        })
    );
    cache.top_up(&arena, 1).unwrap();
    // A 1 GiB block needs two tables. A 32-bit VM has none (level-2 root, issue 17): its
    // "1 GiB" is 2 MiB blocks, which one table splits, so this refusal is 40-bit only.
    if top_block_level(bits) == 1 {
        assert_eq!(
            vm.split_block(&mut cache, Ipa(g + 8 * PAGE_SIZE)),
            Err(Error::CacheExhausted {
                needed: 2,
                available: 1
            })
        );
    }
    assert_eq!(log::writes(), 0);
    assert_eq!(log::tlb_ops(), vec![]);
    assert_eq!(cache.len(), 1);
    assert_eq!(snapshot(&vm, RAM, RAM + 2 * BLOCK_2M), before);
    assert_maps(
        &vm,
        g + 8 * PAGE_SIZE,
        ram(Perms::RW),
        top_block_level(bits),
    );
    cache.release(&arena);
    assert_eq!(arena.live_pages(), live);
}

fn replace_page_breaks_before_make<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let x = RAM + 3 * PAGE_SIZE;
    vm.map_ram(
        Ipa(RAM),
        pa(RAM),
        8 * PAGE_SIZE,
        Perms::RWX,
        BlockSize::Page,
    )
    .unwrap();
    let new = PhysAddr(0x20_0000_0000);
    log::clear();
    assert_eq!(vm.replace_page(Ipa(x + 0x10), new), Ok(true));
    assert_eq!(log::tlb_ops(), batch::<A>(vm.vttbr(), &[(x, 3)]));
    assert_eq!(log::writes(), 2, "break, then make");
    // The new page was cleaned and invalidated to PoC before it was mapped
    // (`clean_dcache_guest_page`), through the guest-memory seam.
    let dcache: Vec<Record> = log::records()
        .into_iter()
        .filter(|r| matches!(r, Record::DCache { .. }))
        .collect();
    assert_eq!(
        dcache,
        [Record::DCache {
            op: CacheOp::CleanInvalidate,
            va: VirtAddr(GUEST_VA_OFFSET | new.0),
            len: PAGE_SIZE
        }]
    );
    // Mapped as KVM's PAGE_S2: read-only, not executable, whatever the old page allowed; no
    // memslot here, so no "logged" bit either.
    let t = vm.translate(Ipa(x + 0x10)).unwrap();
    assert_eq!(
        (t.pa, t.attrs, t.level),
        (PhysAddr(new.0 + 0x10), ram(Perms::R), 3)
    );
    assert_maps(&vm, x - PAGE_SIZE, ram(Perms::RWX), 3);
    assert_maps(&vm, x + PAGE_SIZE, ram(Perms::RWX), 3);
    // Nothing mapped: nothing to replace.
    log::clear();
    assert_eq!(vm.replace_page(Ipa(RAM + BLOCK_2M), new), Ok(false));
    assert_eq!(log::writes(), 0);
}

fn replace_page_on_block_dissolves_it<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let (mut vm, _, blk) = vm_with_block::<A>(&arena, bits, false);
    log::clear();
    assert_eq!(
        vm.replace_page(Ipa(blk + 9 * PAGE_SIZE), PhysAddr(0x20_0000_0000)),
        Ok(false)
    );
    assert_eq!(log::tlb_ops(), batch::<A>(vm.vttbr(), &[(blk, 2)]));
    assert_eq!(leaves(&vm, blk, blk + BLOCK_2M), vec![]);
    assert_maps(&vm, RAM, ram(Perms::RW), 3);
}

stage2_tests!(
    dissolve_block_without_logging,
    dissolve_block_while_logging_marks_block_dirty,
    dissolve_block_across_slots_marks_each_slot,
    split_block_keeps_every_translation,
    split_1g_block_keeps_every_translation,
    split_with_empty_cache_is_cache_exhausted,
    replace_page_breaks_before_make,
    replace_page_on_block_dissolves_it,
);
