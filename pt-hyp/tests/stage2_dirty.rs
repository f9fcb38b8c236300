//! Stage-2 write protection, dirty logging, cache maintenance and the access flag (issue 5).

#[macro_use]
mod stage2_support;
use stage2_support::*;

fn write_protect_range_protects_writable_leaves<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    // 6 RW pages, 2 R pages, 2 RWX pages.
    vm.map_ram(Ipa(RAM), pa(RAM), 6 * PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    let r = RAM + 6 * PAGE_SIZE;
    vm.map_ram(Ipa(r), pa(r), 2 * PAGE_SIZE, Perms::R, BlockSize::Page)
        .unwrap();
    let x = RAM + 8 * PAGE_SIZE;
    vm.map_ram(Ipa(x), pa(x), 2 * PAGE_SIZE, Perms::RWX, BlockSize::Page)
        .unwrap();
    log::clear();
    // Pages 1..=9.
    assert_eq!(
        vm.write_protect_range(Ipa(RAM + PAGE_SIZE), 9 * PAGE_SIZE),
        Ok(7)
    );
    let mut changed = pages(RAM + PAGE_SIZE, 5);
    changed.extend(pages(x, 2));
    assert_eq!(log::tlb_ops(), batch::<A>(vm.vttbr(), &changed));
    assert_maps(&vm, RAM, ram(Perms::RW), 3);
    for i in 1..6 {
        assert_maps(&vm, RAM + i * PAGE_SIZE, logged(Perms::RW), 3);
    }
    assert_maps(&vm, r, ram(Perms::R), 3);
    assert_maps(&vm, r + PAGE_SIZE, ram(Perms::R), 3);
    assert_maps(&vm, x, logged(Perms::RWX), 3);
    assert_eq!(logged(Perms::RWX).perms, Perms::RX);
}

fn write_protect_range_partial_block_protects_whole_block<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let blk = RAM + 4 * BLOCK_2M;
    vm.map_ram(
        Ipa(blk),
        pa(blk),
        2 * BLOCK_2M,
        Perms::RW,
        BlockSize::Block2M,
    )
    .unwrap();
    log::clear();
    assert_eq!(
        vm.write_protect_range(Ipa(blk + BLOCK_2M - PAGE_SIZE), 2 * PAGE_SIZE),
        Ok(2)
    );
    assert_eq!(
        log::tlb_ops(),
        batch::<A>(vm.vttbr(), &[(blk, 2), (blk + BLOCK_2M, 2)])
    );
    assert_maps(&vm, blk, logged(Perms::RW), 2);
    assert_maps(&vm, blk + 2 * BLOCK_2M - 1, logged(Perms::RW), 2);
}

fn write_protect_slot_protects_only_the_slot<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let id = vm
        .add_memslot(slot(RAM + BLOCK_2M, BLOCK_2M, false))
        .unwrap();
    // Pages from before the slot to after it, and a block after it.
    let lo = RAM + BLOCK_2M - 2 * PAGE_SIZE;
    vm.map_ram(Ipa(lo), pa(lo), 4 * PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    let hi = RAM + 2 * BLOCK_2M - PAGE_SIZE;
    vm.map_ram(Ipa(hi), pa(hi), PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    vm.map_ram(
        Ipa(RAM + 2 * BLOCK_2M),
        pa(RAM + 2 * BLOCK_2M),
        BLOCK_2M,
        Perms::RW,
        BlockSize::Block2M,
    )
    .unwrap();
    log::clear();
    assert_eq!(vm.write_protect_slot(id), Ok(3));
    let mut changed = pages(RAM + BLOCK_2M, 2);
    changed.push((hi, 3));
    assert_eq!(log::tlb_ops(), batch::<A>(vm.vttbr(), &changed));
    assert_maps(&vm, lo, ram(Perms::RW), 3);
    assert_maps(&vm, lo + PAGE_SIZE, ram(Perms::RW), 3);
    assert_maps(&vm, lo + 2 * PAGE_SIZE, logged(Perms::RW), 3);
    assert_maps(&vm, lo + 3 * PAGE_SIZE, logged(Perms::RW), 3);
    assert_maps(&vm, hi, logged(Perms::RW), 3);
    assert_maps(&vm, RAM + 2 * BLOCK_2M, ram(Perms::RW), 2);
}

/// Bits of the mask map to pages `gfn_offset + bit`, and every run of them is protected in
/// one TLB batch per call.
fn write_protect_masked_maps_bits_to_pages<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let id = vm.add_memslot(slot(RAM, 128 * PAGE_SIZE, false)).unwrap();
    vm.map_ram(
        Ipa(RAM),
        pa(RAM),
        128 * PAGE_SIZE,
        Perms::RW,
        BlockSize::Page,
    )
    .unwrap();
    let mask = 1u64 << 63 | 0b1011_0001;
    let want: Vec<u64> = vec![32, 36, 37, 39, 95];
    log::clear();
    assert_eq!(vm.write_protect_masked(id, 32, mask), Ok(5));
    let changed: Vec<(u64, u8)> = want.iter().map(|p| (RAM + p * PAGE_SIZE, 3)).collect();
    assert_eq!(log::tlb_ops(), batch::<A>(vm.vttbr(), &changed));
    for p in 0..128 {
        let attrs = if want.contains(&p) {
            logged(Perms::RW)
        } else {
            ram(Perms::RW)
        };
        assert_maps(&vm, RAM + p * PAGE_SIZE, attrs, 3);
    }
    // A full mask.
    assert_eq!(vm.write_protect_masked(id, 64, !0), Ok(63));
    assert_eq!(vm.write_protect_masked(id, 0, 0), Ok(0));
}

fn write_protect_masked_outside_slot_is_refused<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let id = vm.add_memslot(slot(RAM, 100 * PAGE_SIZE, false)).unwrap();
    vm.map_ram(
        Ipa(RAM),
        pa(RAM),
        100 * PAGE_SIZE,
        Perms::RW,
        BlockSize::Page,
    )
    .unwrap();
    let before = snapshot(&vm, RAM, RAM + 100 * PAGE_SIZE);
    log::clear();
    // Bit 0 is page 64 (inside), bit 36 page 100 (outside): refused as a whole.
    assert_eq!(
        vm.write_protect_masked(id, 64, 1 | 1 << 36),
        Err(Error::OutsideSlot { slot: id, at: 100 })
    );
    assert_eq!(
        vm.write_protect_masked(id, u64::MAX - 1, 0b110),
        Err(Error::OutsideSlot {
            slot: id,
            at: u64::MAX
        })
    );
    assert_eq!(
        vm.write_protect_masked(id, u64::MAX - 70, 1 << 63),
        Err(Error::OutsideSlot {
            slot: id,
            at: u64::MAX - 7
        })
    );
    assert_eq!(log::writes(), 0);
    assert_eq!(snapshot(&vm, RAM, RAM + 100 * PAGE_SIZE), before);
}

/// The dirty log: fetched, cleared, and the dirty pages (and only they) protected again, in
/// one TLB batch.
fn get_dirty_log_fetches_clears_and_reprotects<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let n = 200;
    let id = vm.add_memslot(slot(RAM, n * PAGE_SIZE, true)).unwrap();
    vm.map_ram(Ipa(RAM), pa(RAM), n * PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    vm.enable_dirty_logging(id).unwrap();
    for p in 0..n {
        assert_maps(&vm, RAM + p * PAGE_SIZE, logged(Perms::RW), 3);
    }
    // The guest writes: the fault path makes the page writable and marks it dirty.
    let dirty = [0u64, 5, 63, 64, 130, 131, 199];
    for p in dirty {
        let ipa = RAM + p * PAGE_SIZE + 8;
        assert_eq!(vm.make_writable(Ipa(ipa)), Ok(true));
        vm.mark_dirty(Ipa(ipa));
        assert_maps(&vm, RAM + p * PAGE_SIZE, ram(Perms::RW), 3);
    }
    let mut out = [!0u64; 4];
    log::clear();
    assert_eq!(vm.get_dirty_log(id, &mut out), Ok(dirty.len() as u64));
    assert_eq!(out, [1 | 1 << 5 | 1 << 63, 1, 1 << 2 | 1 << 3, 1 << 7]);
    let changed: Vec<(u64, u8)> = dirty.iter().map(|p| (RAM + p * PAGE_SIZE, 3)).collect();
    assert_eq!(log::tlb_ops(), batch::<A>(vm.vttbr(), &changed));
    for p in 0..n {
        assert_maps(&vm, RAM + p * PAGE_SIZE, logged(Perms::RW), 3);
        assert_eq!(vm.is_dirty(id, p), Ok(false));
    }
    // Nothing dirty since: zeros, nothing protected.
    log::clear();
    assert_eq!(vm.get_dirty_log(id, &mut out), Ok(0));
    assert_eq!(out, [0; 4]);
    assert_eq!(log::writes(), 0);
    assert_eq!(log::tlb_ops(), vec![]);
    // Too small a buffer; index checks.
    // 200 pages need 4 words: a dedicated error naming both counts; nothing read or cleared.
    vm.mark_dirty(Ipa(RAM));
    let mut short = [!0u64; 3];
    assert_eq!(
        vm.get_dirty_log(id, &mut short),
        Err(Error::DirtyLogBufferTooSmall {
            slot: id,
            words: 3,
            needed: 4
        })
    );
    assert_eq!(short, [!0u64; 3]);
    assert_eq!(vm.is_dirty(id, 0), Ok(true));
    assert_eq!(
        vm.is_dirty(id, n),
        Err(Error::OutsideSlot { slot: id, at: n })
    );
    // Not logging.
    vm.disable_dirty_logging(id).unwrap();
    assert_eq!(vm.get_dirty_log(id, &mut out), Err(Error::NotLogging(id)));
    // One level-3 table for the 200 pages, and a level-2 table when the walk starts at level 1.
    assert_eq!(
        arena.live_pages(),
        root_pages(bits) + l2_tables(bits, 1) + 1
    );
}

fn make_writable_restores_only_logged_leaves<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    vm.map_ram(Ipa(RAM), pa(RAM), PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    let ro = RAM + PAGE_SIZE;
    vm.map_ram(Ipa(ro), pa(ro), PAGE_SIZE, Perms::R, BlockSize::Page)
        .unwrap();
    assert_eq!(vm.write_protect_range(Ipa(RAM), 2 * PAGE_SIZE), Ok(1));
    log::clear();
    assert_eq!(vm.make_writable(Ipa(RAM + 0x10)), Ok(true));
    assert_eq!(log::tlb_ops(), batch::<A>(vm.vttbr(), &pages(RAM, 1)));
    assert_maps(&vm, RAM, ram(Perms::RW), 3);
    log::clear();
    // Not logged: a read-only mapping stays read-only; an unmapped page stays unmapped.
    assert_eq!(vm.make_writable(Ipa(RAM)), Ok(false));
    assert_eq!(vm.make_writable(Ipa(ro)), Ok(false));
    assert_eq!(vm.make_writable(Ipa(RAM + 2 * PAGE_SIZE)), Ok(false));
    assert_eq!(log::writes(), 0);
    assert_maps(&vm, ro, ram(Perms::R), 3);
    assert_eq!(vm.translate(Ipa(RAM + 2 * PAGE_SIZE)), None);
}

fn flush_dcache_vm_one_op_per_leaf<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    vm.add_memslot(slot(RAM, 2 * BLOCK_2M, false)).unwrap();
    vm.map_ram(
        Ipa(RAM + PAGE_SIZE),
        pa(RAM + PAGE_SIZE),
        3 * PAGE_SIZE,
        Perms::RW,
        BlockSize::Page,
    )
    .unwrap();
    vm.map_ram(
        Ipa(RAM + BLOCK_2M),
        pa(RAM + BLOCK_2M),
        BLOCK_2M,
        Perms::RW,
        BlockSize::Block2M,
    )
    .unwrap();
    // Outside every slot: not flushed.
    vm.map_ram(
        Ipa(RAM + 2 * BLOCK_2M),
        pa(RAM + 2 * BLOCK_2M),
        PAGE_SIZE,
        Perms::RW,
        BlockSize::Page,
    )
    .unwrap();
    vm.map_device(Ipa(0x0800_0000), PhysAddr(0x0900_0000), PAGE_SIZE, true)
        .unwrap();
    log::clear();
    assert_eq!(vm.flush_dcache_vm(), Ok(4));
    let ops: Vec<(u64, u64)> = log::records()
        .into_iter()
        .filter_map(|r| match r {
            Record::DCache { op, va, len } => {
                assert_eq!(op, CacheOp::CleanInvalidate);
                Some((va.0, len))
            }
            _ => None,
        })
        .collect();
    // Guest memory is reached through the arena's GuestMemory lending: VA = offset | PA.
    let want = vec![
        (GUEST_VA_OFFSET | pa(RAM + PAGE_SIZE).0, PAGE_SIZE),
        (GUEST_VA_OFFSET | pa(RAM + 2 * PAGE_SIZE).0, PAGE_SIZE),
        (GUEST_VA_OFFSET | pa(RAM + 3 * PAGE_SIZE).0, PAGE_SIZE),
        (GUEST_VA_OFFSET | pa(RAM + BLOCK_2M).0, BLOCK_2M),
    ];
    assert_eq!(ops, want);
    assert_eq!(log::tlb_ops(), vec![]);
    assert_eq!(log::writes(), 0);
}

fn access_flag_test_clear_and_set<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    vm.map_ram(Ipa(RAM), pa(RAM), 2 * PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    let x = RAM + PAGE_SIZE;
    assert!(vm.test_age(Ipa(x)));
    log::clear();
    assert_eq!(vm.test_and_clear_age(Ipa(x + 0x40)), Ok(true));
    assert_eq!(log::tlb_ops(), batch::<A>(vm.vttbr(), &pages(x, 1)));
    assert!(!vm.test_age(Ipa(x)));
    let old = Stage2Attrs {
        accessed: false,
        ..ram(Perms::RW)
    };
    assert_maps(&vm, x, old, 3);
    assert!(vm.test_age(Ipa(RAM)), "the neighbour keeps its flag");
    // Already clear: reported, nothing written.
    log::clear();
    assert_eq!(vm.test_and_clear_age(Ipa(x)), Ok(false));
    assert_eq!(log::writes(), 0);
    // The access-flag fault sets it again.
    log::clear();
    assert_eq!(vm.set_access_flag(Ipa(x)), Ok(false));
    assert_eq!(log::tlb_ops(), batch::<A>(vm.vttbr(), &pages(x, 1)));
    assert!(vm.test_age(Ipa(x)));
    assert_maps(&vm, x, ram(Perms::RW), 3);
    assert_eq!(vm.set_access_flag(Ipa(x)), Ok(true));
    // Unmapped.
    let none = RAM + 5 * PAGE_SIZE;
    assert!(!vm.test_age(Ipa(none)));
    assert_eq!(vm.test_and_clear_age(Ipa(none)), Ok(false));
    assert_eq!(
        vm.set_access_flag(Ipa(none)),
        Err(Error::NotMapped { ia: none })
    );
}

stage2_tests!(
    write_protect_range_protects_writable_leaves,
    write_protect_range_partial_block_protects_whole_block,
    write_protect_slot_protects_only_the_slot,
    write_protect_masked_maps_bits_to_pages,
    write_protect_masked_outside_slot_is_refused,
    get_dirty_log_fetches_clears_and_reprotects,
    make_writable_restores_only_logged_leaves,
    flush_dcache_vm_one_op_per_leaf,
    access_flag_test_clear_and_set,
);
