//! Stage-2 TLB maintenance: what each change issues, batched (issue 5).

#[macro_use]
mod stage2_support;
use stage2_support::*;

/// The leaf counts around the batch threshold.
fn counts() -> [u64; 6] {
    let t = TLB_BATCH_THRESHOLD as u64;
    [1, 2, t - 1, t, t + 1, 100]
}

fn map_into_invalid_entries_issues_no_tlb_op<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    log::clear();
    vm.map_ram(Ipa(RAM), pa(RAM), 7 * PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    vm.map_ram(
        Ipa(RAM + BLOCK_2M),
        pa(RAM + BLOCK_2M),
        3 * BLOCK_2M + PAGE_SIZE,
        Perms::RWX,
        BlockSize::Block2M,
    )
    .unwrap();
    vm.map_ram(Ipa(0), pa(0), BLOCK_1G, Perms::RW, BlockSize::Block1G)
        .unwrap();
    vm.map_device(
        Ipa(RAM + BLOCK_1G - BLOCK_2M),
        PhysAddr(0x0900_0000),
        BLOCK_2M,
        true,
    )
    .unwrap();
    let mut cache = PageCache::<8>::new();
    cache.top_up(&arena, 4).unwrap();
    let ipa = RAM + 20 * BLOCK_2M;
    vm.map_cached(
        &mut cache,
        Ipa(ipa),
        pa(ipa),
        PAGE_SIZE,
        ram(Perms::RW),
        BlockSize::Page,
    )
    .unwrap();
    assert!(log::writes() > 0);
    assert_eq!(log::tlb_ops(), vec![]);
    // No invalidation: only the DSB ISHSTs that order new tables after their zeroing and make
    // the new entries visible before returning.
    let m = maintenance();
    assert!(!m.is_empty());
    assert!(m
        .iter()
        .all(|r| *r == Record::Barrier(pt_core::Barrier::DsbIshSt)));
    cache.release(&arena);
}

fn unmap_of_n_leaves_is_one_batch<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    for (i, n) in counts().into_iter().enumerate() {
        // n pages and one more that keeps the level-3 table alive.
        let ipa = RAM + i as u64 * BLOCK_2M;
        vm.map_ram(
            Ipa(ipa),
            pa(ipa),
            (n + 1) * PAGE_SIZE,
            Perms::RW,
            BlockSize::Page,
        )
        .unwrap();
        log::clear();
        vm.unmap_range(Ipa(ipa), n * PAGE_SIZE).unwrap();
        assert_eq!(
            log::tlb_ops(),
            batch::<A>(vm.vttbr(), &pages(ipa, n)),
            "n = {n}"
        );
    }
    // Blocks are leaves too: n 2 MiB blocks, one more kept.
    for n in [1, 3] {
        let ipa = RAM + 64 * BLOCK_2M;
        vm.map_ram(
            Ipa(ipa),
            pa(ipa),
            (n + 1) * BLOCK_2M,
            Perms::RW,
            BlockSize::Block2M,
        )
        .unwrap();
        log::clear();
        vm.unmap_range(Ipa(ipa), n * BLOCK_2M).unwrap();
        let blocks: Vec<(u64, u8)> = (0..n).map(|i| (ipa + i * BLOCK_2M, 2)).collect();
        assert_eq!(log::tlb_ops(), batch::<A>(vm.vttbr(), &blocks));
        vm.unmap_range(Ipa(ipa), (n + 1) * BLOCK_2M).unwrap();
    }
}

fn write_protect_of_n_leaves_is_one_batch<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    for (i, n) in counts().into_iter().enumerate() {
        let ipa = RAM + i as u64 * BLOCK_2M;
        vm.map_ram(Ipa(ipa), pa(ipa), n * PAGE_SIZE, Perms::RW, BlockSize::Page)
            .unwrap();
        log::clear();
        assert_eq!(
            vm.write_protect_range(Ipa(ipa), n * PAGE_SIZE).unwrap(),
            n as usize
        );
        assert_eq!(
            log::tlb_ops(),
            batch::<A>(vm.vttbr(), &pages(ipa, n)),
            "n = {n}"
        );
        // Already read-only: nothing to change, nothing to invalidate.
        log::clear();
        assert_eq!(vm.write_protect_range(Ipa(ipa), n * PAGE_SIZE).unwrap(), 0);
        assert_eq!(log::tlb_ops(), vec![]);
        assert_eq!(log::writes(), 0);
    }
}

/// The exact sequence of one batch, pinned once: ARMv8 by IPA is `DSB ISHST`, the by-IPA
/// invalidations, `DSB ISH`, `TLBI VMALLE1IS`, `DSB ISH`, `ISB`; a whole-VMID batch (ARMv7
/// always, ARMv8 above the threshold) is `DSB ISHST`, `TLBI VMALLS12E1IS`, `DSB ISH`, `ISB`.
/// The barriers do not depend on the number of leaves.
fn tlb_batch_barriers_are_constant<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let vttbr = vm.vttbr();
    let ipa = RAM;
    vm.map_ram(Ipa(ipa), pa(ipa), PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    log::clear();
    vm.write_protect_range(Ipa(ipa), PAGE_SIZE).unwrap();
    let one = maintenance();
    let small = if by_ipa::<A>() {
        vec![
            Record::Barrier(Barrier::DsbIshSt),
            Record::Tlb(TlbOp::S2Ipa {
                vttbr,
                ipa: Ipa(ipa),
                level: 3,
            }),
            Record::Barrier(Barrier::DsbIsh),
            Record::Tlb(TlbOp::S2CombinedForVmid { vttbr }),
            Record::Barrier(Barrier::DsbIsh),
            Record::Barrier(Barrier::Isb),
        ]
    } else {
        vec![
            Record::Barrier(Barrier::DsbIshSt),
            Record::Tlb(TlbOp::S2Vmid { vttbr }),
            Record::Barrier(Barrier::DsbIsh),
            Record::Barrier(Barrier::Isb),
        ]
    };
    assert_eq!(one, small);
    let small_barriers = log::barriers();
    let large_barriers = vec![Barrier::DsbIshSt, Barrier::DsbIsh, Barrier::Isb];
    for (i, n) in counts().into_iter().enumerate() {
        let ipa = RAM + (i as u64 + 1) * BLOCK_2M;
        vm.map_ram(Ipa(ipa), pa(ipa), n * PAGE_SIZE, Perms::RW, BlockSize::Page)
            .unwrap();
        log::clear();
        vm.write_protect_range(Ipa(ipa), n * PAGE_SIZE).unwrap();
        let want = if by_ipa::<A>() && n as usize <= TLB_BATCH_THRESHOLD {
            &small_barriers
        } else {
            &large_barriers
        };
        assert_eq!(&log::barriers(), want, "wp n = {n}");
        log::clear();
        vm.unmap_range(Ipa(ipa), n * PAGE_SIZE).unwrap();
        // The n leaves and the entry of the level-3 table they leave empty.
        let want = if by_ipa::<A>() && (n as usize) < TLB_BATCH_THRESHOLD {
            &small_barriers
        } else {
            &large_barriers
        };
        assert_eq!(&log::barriers(), want, "unmap n = {n}");
    }
    // The TLB operations all carry this VM's VTTBR (VMID 1).
    assert!(log::tlb_ops().iter().all(|op| match *op {
        TlbOp::S2Ipa { vttbr: v, .. }
        | TlbOp::S2CombinedForVmid { vttbr: v }
        | TlbOp::S2Vmid { vttbr: v } => v == vttbr && v >> 48 == 1,
        _ => false,
    }));
}

/// Unmapping the last pages of a level-3 table frees it, and the level-2 table above when
/// that empties too: each cleared table entry is invalidated by address in the same batch
/// (walk caches), after the leaves.
fn unmap_emptying_tables_invalidates_their_entries<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let ipa = RAM + 5 * BLOCK_2M + 8 * PAGE_SIZE;
    vm.map_ram(Ipa(ipa), pa(ipa), 3 * PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    // One level-3 table, and the level-2 table with a level-1 start (40 bits); a 32-bit VM's
    // root is the level-2 table.
    assert_eq!(
        arena.live_pages(),
        root_pages(bits) + l2_tables(bits, 1) + 1
    );
    log::clear();
    vm.unmap_range(Ipa(ipa), 3 * PAGE_SIZE).unwrap();
    let mut entries = pages(ipa, 3);
    entries.push((RAM + 5 * BLOCK_2M, 2));
    if start_level(bits) == 1 {
        entries.push((RAM, 1));
    }
    assert_eq!(log::tlb_ops(), batch::<A>(vm.vttbr(), &entries));
    assert_eq!(arena.live_pages(), root_pages(bits));
    // The tables are freed only after the batch is synchronised.
    let recs = log::records();
    let last_sync = recs
        .iter()
        .rposition(|r| *r == Record::Barrier(Barrier::DsbIsh))
        .unwrap();
    let first_free = recs
        .iter()
        .position(|r| matches!(r, Record::Free { .. }))
        .unwrap();
    assert!(last_sync < first_free);
}

/// A range that covers a whole table cuts it off in one store without visiting its leaves,
/// so the batch cannot count them: one whole-VMID invalidation, whatever the architecture.
fn unmap_of_whole_table_is_one_vmid_flush<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let chunk = RAM + 7 * BLOCK_2M;
    vm.map_ram(
        Ipa(chunk + PAGE_SIZE),
        pa(chunk + PAGE_SIZE),
        3 * PAGE_SIZE,
        Perms::RW,
        BlockSize::Page,
    )
    .unwrap();
    // Keep the level-2 table alive.
    vm.map_ram(Ipa(RAM), pa(RAM), PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    log::clear();
    vm.unmap_range(Ipa(chunk), BLOCK_2M).unwrap();
    assert_eq!(log::tlb_ops(), vec![TlbOp::S2Vmid { vttbr: vm.vttbr() }]);
    // RAM's level-3 table, and its level-2 table with a level-1 start.
    assert_eq!(
        arena.live_pages(),
        root_pages(bits) + l2_tables(bits, 1) + 1
    );
}

fn unmap_of_nothing_issues_nothing<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    vm.map_ram(Ipa(RAM), pa(RAM), PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    log::clear();
    vm.unmap_range(Ipa(RAM + PAGE_SIZE), 100 * PAGE_SIZE)
        .unwrap();
    vm.unmap_range(Ipa(0), BLOCK_1G).unwrap();
    assert_eq!(vm.write_protect_range(Ipa(0), BLOCK_1G).unwrap(), 0);
    assert_eq!(log::tlb_ops(), vec![]);
    assert_eq!(log::writes(), 0);
}

fn flush_tlb_is_one_vmid_invalidation<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let vm = new_vm::<A>(&arena, bits);
    log::clear();
    vm.flush_tlb();
    assert_eq!(log::tlb_ops(), vec![TlbOp::S2Vmid { vttbr: vm.vttbr() }]);
    assert_eq!(
        log::barriers(),
        vec![Barrier::DsbIshSt, Barrier::DsbIsh, Barrier::Isb]
    );
}

fn destroy_is_one_vmid_invalidation_then_frees<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    vm.map_ram(
        Ipa(RAM),
        pa(RAM),
        40 * PAGE_SIZE,
        Perms::RW,
        BlockSize::Page,
    )
    .unwrap();
    vm.map_ram(Ipa(0), pa(0), BLOCK_2M, Perms::RW, BlockSize::Block2M)
        .unwrap();
    let vttbr = vm.vttbr();
    log::clear();
    vm.destroy().unwrap();
    assert_eq!(log::tlb_ops(), vec![TlbOp::S2Vmid { vttbr }]);
    assert_eq!(arena.live_pages(), 0);
    let recs = log::records();
    let sync = recs
        .iter()
        .position(|r| *r == Record::Barrier(Barrier::DsbIsh))
        .unwrap();
    let first_free = recs
        .iter()
        .position(|r| matches!(r, Record::Free { .. }))
        .unwrap();
    assert!(sync < first_free);
}

stage2_tests!(
    map_into_invalid_entries_issues_no_tlb_op,
    unmap_of_n_leaves_is_one_batch,
    write_protect_of_n_leaves_is_one_batch,
    tlb_batch_barriers_are_constant,
    unmap_emptying_tables_invalidates_their_entries,
    unmap_of_whole_table_is_one_vmid_flush,
    unmap_of_nothing_issues_nothing,
    flush_tlb_is_one_vmid_invalidation,
    destroy_is_one_vmid_invalidation_then_frees,
);
