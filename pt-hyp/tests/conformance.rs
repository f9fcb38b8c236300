//! Conformance with the architecture and KVM (issue 14): cache maintenance of guest memory on
//! unmap, teardown and VM-wide flushes, the guest-memory seam, device memory never executable,
//! read-only slots never writable, memslot ids never reused while live. For ARMv7 and ARMv8,
//! 32- and 40-bit IPAs.

#[macro_use]
mod stage2_support;
use pt_core::testkit::GuestLending;
use stage2_support::*;

const DEV: u64 = 0x0900_0000;

/// The data-cache operations recorded since the last `log::clear`, as (op, va, len).
fn dcache_ops() -> Vec<(CacheOp, u64, u64)> {
    log::records()
        .into_iter()
        .filter_map(|r| match r {
            Record::DCache { op, va, len } => Some((op, va.0, len)),
            _ => None,
        })
        .collect()
}

/// The lent VA of guest physical address `pa` (the arena's lending).
fn va(pa: PhysAddr) -> u64 {
    GUEST_VA_OFFSET | pa.0
}

fn unmap_cleans_ram_after_the_invalidation_and_never_devices<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    vm.map_ram(Ipa(RAM), pa(RAM), BLOCK_2M, Perms::RW, BlockSize::Block2M)
        .unwrap();
    vm.map_ram(
        Ipa(RAM + BLOCK_2M),
        pa(RAM + BLOCK_2M),
        2 * PAGE_SIZE,
        Perms::RW,
        BlockSize::Page,
    )
    .unwrap();
    vm.map_device(Ipa(DEV), PhysAddr(DEV), PAGE_SIZE, true)
        .unwrap();
    log::clear();
    vm.unmap_range(Ipa(DEV), PAGE_SIZE).unwrap();
    assert_eq!(dcache_ops(), [], "device memory is never cleaned");
    log::clear();
    vm.unmap_range(Ipa(RAM), BLOCK_2M + 2 * PAGE_SIZE).unwrap();
    // The block and the two pages after it map contiguous host memory with equal attributes:
    // one clean+invalidate to PoC over all of it.
    assert_eq!(
        dcache_ops(),
        [(
            CacheOp::CleanInvalidate,
            va(pa(RAM)),
            BLOCK_2M + 2 * PAGE_SIZE
        )]
    );
    // ... after the TLB invalidation completed (its last barrier), as KVM cleans after
    // kvm_tlb_flush_vmid_ipa: the guest cannot refill a line once it is cleaned.
    let recs = log::records();
    let first_clean = recs
        .iter()
        .position(|r| matches!(r, Record::DCache { .. }))
        .unwrap();
    let last_tlb = recs
        .iter()
        .rposition(|r| matches!(r, Record::Tlb(_)))
        .unwrap();
    assert!(first_clean > last_tlb);
    assert!(recs[last_tlb..first_clean].contains(&Record::Barrier(Barrier::DsbIsh)));
}

fn remove_memslot_and_unmap_vm_clean_what_was_mapped<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let s = vm.add_memslot(slot(RAM, 4 * BLOCK_2M, false)).unwrap();
    vm.map_ram(Ipa(RAM), pa(RAM), PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    log::clear();
    vm.unmap_vm().unwrap();
    assert_eq!(
        dcache_ops(),
        [(CacheOp::CleanInvalidate, va(pa(RAM)), PAGE_SIZE)]
    );
    vm.map_ram(
        Ipa(RAM + BLOCK_2M),
        pa(RAM + BLOCK_2M),
        BLOCK_2M,
        Perms::RW,
        BlockSize::Block2M,
    )
    .unwrap();
    log::clear();
    vm.remove_memslot(s).unwrap();
    assert_eq!(
        dcache_ops(),
        [(CacheOp::CleanInvalidate, va(pa(RAM + BLOCK_2M)), BLOCK_2M)]
    );
}

fn teardown_cleans_every_ram_leaf_and_frees_every_page<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    vm.map_ram(Ipa(RAM), pa(RAM), BLOCK_2M, Perms::RW, BlockSize::Block2M)
        .unwrap();
    vm.map_device(Ipa(DEV), PhysAddr(DEV), PAGE_SIZE, true)
        .unwrap();
    log::clear();
    vm.destroy().unwrap();
    assert_eq!(
        dcache_ops(),
        [(CacheOp::CleanInvalidate, va(pa(RAM)), BLOCK_2M)]
    );
    assert_eq!(arena.live_pages(), 0);
}

fn flush_dcache_vm_skips_device_mappings_inside_slots<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    vm.add_memslot(slot(RAM, BLOCK_2M, false)).unwrap();
    vm.map_ram(Ipa(RAM), pa(RAM), PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    // A device page inside the slot's IPA range (a caller may do that): never cleaned.
    vm.map_device(Ipa(RAM + PAGE_SIZE), PhysAddr(DEV), PAGE_SIZE, true)
        .unwrap();
    log::clear();
    assert_eq!(vm.flush_dcache_vm(), Ok(1));
    assert_eq!(
        dcache_ops(),
        [(CacheOp::CleanInvalidate, va(pa(RAM)), PAGE_SIZE)]
    );
}

fn guest_memory_lent_page_by_page_is_cleaned_piece_by_piece<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    arena.lend_guest_memory(GuestLending::PerPage);
    let mut vm = new_vm::<A>(&arena, bits);
    vm.map_ram(Ipa(RAM), pa(RAM), 3 * PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    log::clear();
    vm.unmap_range(Ipa(RAM), 3 * PAGE_SIZE).unwrap();
    let want: Vec<_> = (0..3)
        .map(|i| {
            (
                CacheOp::CleanInvalidate,
                va(pa(RAM + i * PAGE_SIZE)),
                PAGE_SIZE,
            )
        })
        .collect();
    assert_eq!(dcache_ops(), want);
}

fn guest_memory_without_a_va_is_an_error_never_skipped_maintenance<A: Arch>(bits: u8) {
    // A port that cannot reach guest memory above some address (the A15 above 4 GiB).
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    vm.map_ram(Ipa(RAM), pa(RAM), 2 * PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    let limit = pa(RAM).0 + PAGE_SIZE;
    arena.lend_guest_memory(GuestLending::Below { from: limit });
    log::clear();
    // The unmap happens (the TLB entries are gone), the first page is cleaned, the second
    // cannot be and says so.
    assert_eq!(
        vm.unmap_range(Ipa(RAM), 2 * PAGE_SIZE),
        Err(Error::GuestMemory(pt_hyp::GuestMemoryError {
            pa: PhysAddr(limit)
        }))
    );
    assert_eq!(vm.translate(Ipa(RAM)), None);
    assert_eq!(
        dcache_ops(),
        [(CacheOp::CleanInvalidate, va(pa(RAM)), PAGE_SIZE)]
    );
    // VM-wide flush: the same error, after the reachable parts.
    vm.map_ram(Ipa(RAM), pa(RAM), 2 * PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    vm.add_memslot(slot(RAM, BLOCK_2M, false)).unwrap();
    assert_eq!(
        vm.flush_dcache_vm(),
        Err(Error::GuestMemory(pt_hyp::GuestMemoryError {
            pa: PhysAddr(limit)
        }))
    );
    // Replacing a page with one that cannot be cleaned changes nothing.
    let before = vm.translate(Ipa(RAM)).unwrap();
    assert_eq!(
        vm.replace_page(Ipa(RAM), PhysAddr(limit + BLOCK_2M)),
        Err(Error::GuestMemory(pt_hyp::GuestMemoryError {
            pa: PhysAddr(limit + BLOCK_2M)
        }))
    );
    assert_eq!(vm.translate(Ipa(RAM)), Some(before));
    arena.lend_guest_memory(GuestLending::Whole);
}

fn executable_device_memory_is_one_typed_error<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let dev_x = Stage2Attrs {
        perms: Perms::RWX,
        ..Stage2Attrs::device(true)
    };
    assert_eq!(
        vm.map(Ipa(DEV), PhysAddr(DEV), PAGE_SIZE, dev_x, BlockSize::Page),
        Err(Error::ExecutableDevice { ipa: DEV })
    );
    assert_eq!(vm.translate(Ipa(DEV)), None);
    // Without X it maps, and the identical request again is accepted (no Conflict): the
    // descriptor holds exactly what was asked for.
    let dev = Stage2Attrs::device(true);
    vm.map(Ipa(DEV), PhysAddr(DEV), PAGE_SIZE, dev, BlockSize::Page)
        .unwrap();
    vm.map(Ipa(DEV), PhysAddr(DEV), PAGE_SIZE, dev, BlockSize::Page)
        .unwrap();
    let t = vm.translate(Ipa(DEV)).unwrap();
    assert_eq!(t.attrs, dev);
    assert!(!t.attrs.perms.exec());
}

fn read_only_slot_pages_never_carry_the_logged_bit<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let rom = vm
        .add_memslot(SlotDesc {
            flags: SlotFlags {
                readonly: true,
                log_dirty: true,
                ..SlotFlags::default()
            },
            ..slot(RAM, BLOCK_2M, true)
        })
        .unwrap();
    vm.map_ram(Ipa(RAM), pa(RAM), PAGE_SIZE, Perms::R, BlockSize::Page)
        .unwrap();
    vm.enable_dirty_logging(rom).unwrap();
    let t = vm.translate(Ipa(RAM)).unwrap();
    assert!(!t.attrs.logged && !t.attrs.perms.write());
    // make_writable refuses inside a read-only slot, whatever the descriptor says.
    assert_eq!(vm.make_writable(Ipa(RAM)), Ok(false));
    assert!(!vm.translate(Ipa(RAM)).unwrap().attrs.perms.write());
    // replace_page inside it maps read-only without the bit too.
    assert_eq!(vm.replace_page(Ipa(RAM), pa(RAM + BLOCK_2M)), Ok(true));
    assert!(!vm.translate(Ipa(RAM)).unwrap().attrs.logged);
}

fn memslot_ids_never_collide_with_a_live_slot<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let keep = vm.add_memslot(slot(RAM, PAGE_SIZE, false)).unwrap();
    // 65,536 add/remove cycles wrap a 16-bit id counter: the new id must skip the live one.
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..=u16::MAX as u32 + 2 {
        let id = vm
            .add_memslot(slot(RAM + BLOCK_2M, PAGE_SIZE, false))
            .unwrap();
        assert_ne!(id, keep);
        ids.insert(id);
        vm.remove_memslot(id).unwrap();
    }
    assert_eq!(
        ids.len(),
        u16::MAX as usize,
        "every id but the live one was used"
    );
    assert_eq!(vm.slot(keep).unwrap().desc.ipa, Ipa(RAM));
    vm.remove_memslot(keep).unwrap();
    assert_eq!(vm.slots().len(), 0);
}

stage2_tests!(
    unmap_cleans_ram_after_the_invalidation_and_never_devices,
    remove_memslot_and_unmap_vm_clean_what_was_mapped,
    teardown_cleans_every_ram_leaf_and_frees_every_page,
    flush_dcache_vm_skips_device_mappings_inside_slots,
    guest_memory_lent_page_by_page_is_cleaned_piece_by_piece,
    guest_memory_without_a_va_is_an_error_never_skipped_maintenance,
    executable_device_memory_is_one_typed_error,
    read_only_slot_pages_never_carry_the_logged_bit,
    memslot_ids_never_collide_with_a_live_slot,
);
