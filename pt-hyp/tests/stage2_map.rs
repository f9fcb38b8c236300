//! Stage-2 creation, mapping, translation, and bad input (issue 5).

#[macro_use]
mod stage2_support;
use stage2_support::*;

// ----- create ---------------------------------------------------------------------------

fn create_allocates_root_pages<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let vm = new_vm::<A>(&arena, bits);
    let pages = root_pages(bits);
    assert_eq!(arena.live_pages(), pages);
    assert_eq!(vm.geometry().root_pages(), pages);
    assert_eq!(vm.geometry().start_level(), start_level(bits));
    // Concatenated roots are aligned to their size.
    assert_eq!(vm.root().0 % (pages as u64 * PAGE_SIZE), 0);
    assert!(arena.is_live(vm.root()));
    drop(vm);
    assert_eq!(arena.live_pages(), 0);
}

fn create_vttbr_holds_root_and_vmid<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    assert_eq!(
        Stage2::<A, &Arena>::new(&arena, bits, 0).err(),
        Some(Error::HostVmid)
    );
    for vmid in [1u16, 0x5a, 255] {
        let vm = Stage2::<A, &Arena>::new(&arena, bits, vmid).unwrap();
        // Both architectures: BADDR in the low bits (root below 2^40), VMID in [55:48].
        let expected = vm.root().0 | (vmid as u64) << 48;
        assert_eq!(vm.vttbr(), expected, "{} vmid {vmid}", A::NAME);
        assert_eq!((vm.vttbr() >> 48) & 0xff, vmid as u64);
        assert_eq!(vm.vmid(), vmid);
    }
    assert_eq!(arena.live_pages(), 0);
}

fn create_rejects_vmid_256<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let err = Stage2::<A, &Arena>::new(&arena, bits, 256).err().unwrap();
    let expected = match A::NAME {
        "armv7" => RegisterError::Armv7(pt_armv7::regs::RegError::VmidTooLarge { vmid: 256 }),
        _ => RegisterError::Armv8(pt_armv8::regs::RegError::VmidTooWide { vmid: 256 }),
    };
    assert_eq!(err, Error::Register(expected));
    assert_eq!(arena.live_pages(), 0);
    assert_eq!(arena.allocation_calls(), 0);
}

fn create_out_of_memory<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    arena.fail_nth(1);
    let err = Stage2::<A, &Arena>::new(&arena, bits, 1).err().unwrap();
    assert_eq!(err, Error::OutOfMemory);
    assert_eq!(arena.live_pages(), 0);
}

/// A 41-bit IPA: beyond what ARMv7 LPAE stage 2 can walk (Geometry), and on ARMv8 wider than
/// the 40-bit PA of the Cortex-A53 (VTCR refuses it).
fn create_rejects_ipa_41<A: Arch>() {
    let arena = Arena::standard();
    let err = Stage2::<A, &Arena>::new(&arena, 41, 1).err().unwrap();
    let expected = match A::NAME {
        "armv7" => Error::Geometry(GeometryError::UnsupportedInputSize {
            bits: 41,
            min: 25,
            max: 40,
        }),
        _ => Error::Register(RegisterError::Armv8(
            pt_armv8::regs::RegError::IpaExceedsPa {
                ia_bits: 41,
                pa_bits: 40,
            },
        )),
    };
    assert_eq!(err, expected);
    let max = <A::S2 as Format>::LIMITS.max_ia_bits;
    let err = Stage2::<A, &Arena>::new(&arena, max + 1, 1).err().unwrap();
    assert_eq!(
        err,
        Error::Geometry(GeometryError::UnsupportedInputSize {
            bits: max + 1,
            min: 25,
            max,
        })
    );
    assert_eq!(arena.live_pages(), 0);
}

// ----- map and translate ----------------------------------------------------------------

fn map_pages_translate_exactly<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    // Four permission sets, each on its own pages (not 2 MiB aligned).
    let sets = [Perms::R, Perms::RW, Perms::RX, Perms::RWX];
    for (i, p) in sets.iter().enumerate() {
        let ipa = RAM + 0x3000 + i as u64 * 3 * PAGE_SIZE;
        vm.map_ram(Ipa(ipa), pa(ipa), 3 * PAGE_SIZE, *p, BlockSize::Block1G)
            .unwrap();
    }
    for (i, p) in sets.iter().enumerate() {
        let first = RAM + 0x3000 + i as u64 * 3 * PAGE_SIZE;
        for page in 0..3 {
            for off in [0, 0x123, 0xfff] {
                assert_maps(&vm, first + page * PAGE_SIZE + off, ram(*p), 3);
            }
        }
    }
    let t = vm.translate(Ipa(RAM + 0x3000)).unwrap();
    assert_eq!(t.attrs.mem, MemType::NormalWb);
    assert!(t.attrs.accessed && !t.attrs.logged);
    assert_eq!(vm.translate(Ipa(RAM + 0x2fff)), None);
    assert_eq!(vm.translate(Ipa(RAM + 0x3000 + 12 * PAGE_SIZE)), None);
    // One level-3 table, and a level-2 table when the walk starts at level 1.
    assert_eq!(
        arena.live_pages(),
        root_pages(bits) + l2_tables(bits, 1) + 1
    );
}

fn map_2m_blocks_translate_exactly<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    // Two whole blocks, then two pages: blocks where aligned, pages elsewhere.
    let ipa = RAM + 3 * BLOCK_2M;
    vm.map_ram(
        Ipa(ipa),
        pa(ipa),
        2 * BLOCK_2M + 2 * PAGE_SIZE,
        Perms::RX,
        BlockSize::Block2M,
    )
    .unwrap();
    for off in [0, 0x1234, BLOCK_2M - 1, BLOCK_2M, 2 * BLOCK_2M - 1] {
        assert_maps(&vm, ipa + off, ram(Perms::RX), 2);
    }
    assert_maps(&vm, ipa + 2 * BLOCK_2M, ram(Perms::RX), 3);
    assert_maps(&vm, ipa + 2 * BLOCK_2M + PAGE_SIZE + 8, ram(Perms::RX), 3);
    assert_eq!(vm.translate(Ipa(ipa + 2 * BLOCK_2M + 2 * PAGE_SIZE)), None);
    assert_eq!(vm.translate(Ipa(ipa - 1)), None);
    // A PA not aligned like the IPA cannot be a block: pages.
    let ipa2 = RAM + 8 * BLOCK_2M;
    vm.map_ram(
        Ipa(ipa2),
        PhysAddr(pa(ipa2).0 + PAGE_SIZE),
        BLOCK_2M,
        Perms::RW,
        BlockSize::Block2M,
    )
    .unwrap();
    let t = vm.translate(Ipa(ipa2 + 5 * PAGE_SIZE)).unwrap();
    assert_eq!((t.level, t.pa), (3, PhysAddr(pa(ipa2).0 + 6 * PAGE_SIZE)));
    // BlockSize::Page maps an aligned range with pages.
    let ipa3 = RAM + 10 * BLOCK_2M;
    vm.map_ram(Ipa(ipa3), pa(ipa3), BLOCK_2M, Perms::RW, BlockSize::Page)
        .unwrap();
    assert_maps(&vm, ipa3 + BLOCK_2M - PAGE_SIZE, ram(Perms::RW), 3);
    // L2 table + L3 for the tail pages, the unaligned block and the page-only range.
    assert_eq!(
        arena.live_pages(),
        root_pages(bits) + l2_tables(bits, 1) + 3
    );
}

fn map_1g_blocks_translate_exactly<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    vm.map_ram(Ipa(RAM), pa(RAM), BLOCK_1G, Perms::RWX, BlockSize::Block1G)
        .unwrap();
    for off in [0, 0x1234_5678, BLOCK_1G - 1] {
        assert_maps(&vm, RAM + off, ram(Perms::RWX), top_block_level(bits));
    }
    // A level-1 block lives in the root: no table.
    assert_eq!(arena.live_pages(), root_pages(bits));
    // With Block2M a 1 GiB range is 512 level-2 blocks.
    vm.map_ram(
        Ipa(3 * BLOCK_1G),
        pa(3 * BLOCK_1G),
        BLOCK_1G,
        Perms::RW,
        BlockSize::Block2M,
    )
    .unwrap();
    assert_maps(&vm, 3 * BLOCK_1G + 0x1234_5678, ram(Perms::RW), 2);
    assert_eq!(arena.live_pages(), root_pages(bits) + l2_tables(bits, 1));
    // 1 GiB + 2 MiB + one page with Block1G: one of each size (after a clean slate, so
    // that it fits a 32-bit IPA space too).
    vm.unmap_range(Ipa(0), 1 << bits).unwrap();
    assert_eq!(arena.live_pages(), root_pages(bits));
    vm.map_ram(
        Ipa(0),
        pa(0),
        BLOCK_1G + BLOCK_2M + PAGE_SIZE,
        Perms::R,
        BlockSize::Block1G,
    )
    .unwrap();
    assert_maps(&vm, 5, ram(Perms::R), top_block_level(bits));
    assert_maps(&vm, BLOCK_1G + 5, ram(Perms::R), 2);
    assert_maps(&vm, BLOCK_1G + BLOCK_2M + 5, ram(Perms::R), 3);
    assert_eq!(vm.translate(Ipa(BLOCK_1G + BLOCK_2M + PAGE_SIZE)), None);
    assert_eq!(
        arena.live_pages(),
        root_pages(bits) + l2_tables(bits, 1) + 1
    );
}

fn map_device_is_ngnre_pages_never_executable<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let dev = 0x0800_0000u64; // 2 MiB aligned IPA and PA: still pages.
    vm.map_device(Ipa(dev), PhysAddr(0x0900_0000), BLOCK_2M, true)
        .unwrap();
    vm.map_device(Ipa(dev + BLOCK_2M), PhysAddr(0x0a00_0000), PAGE_SIZE, false)
        .unwrap();
    for off in [0, 0x1000, BLOCK_2M - 1] {
        let t = vm.translate(Ipa(dev + off)).unwrap();
        assert_eq!(t.pa, PhysAddr(0x0900_0000 + off));
        assert_eq!(t.level, 3);
        assert_eq!(t.attrs, Stage2Attrs::device(true));
        assert_eq!(t.attrs.mem, MemType::DeviceNGnRE);
        assert_eq!(t.attrs.perms, Perms::RW);
        assert!(!t.attrs.perms.exec());
    }
    let t = vm.translate(Ipa(dev + BLOCK_2M)).unwrap();
    assert_eq!(t.attrs.mem, MemType::DeviceNGnRE);
    assert_eq!(t.attrs.perms, Perms::R);
    assert_eq!(t.pa, PhysAddr(0x0a00_0000));
    assert_eq!(
        arena.live_pages(),
        root_pages(bits) + l2_tables(bits, 1) + 2
    );
}

fn map_identical_again_writes_nothing<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    vm.map_ram(
        Ipa(RAM),
        pa(RAM),
        4 * BLOCK_2M,
        Perms::RW,
        BlockSize::Block2M,
    )
    .unwrap();
    let live = arena.live_pages();
    log::clear();
    vm.map_ram(
        Ipa(RAM),
        pa(RAM),
        4 * BLOCK_2M,
        Perms::RW,
        BlockSize::Block2M,
    )
    .unwrap();
    // Pages inside an identical block are already mapped.
    vm.map_ram(
        Ipa(RAM + 8192),
        pa(RAM + 8192),
        8192,
        Perms::RW,
        BlockSize::Page,
    )
    .unwrap();
    assert_eq!(log::writes(), 0);
    assert_eq!(arena.live_pages(), live);
}

// ----- bad input --------------------------------------------------------------------------

/// Maps `f` and checks that it failed with `err` without any store or allocation.
#[track_caller]
fn refused<A: Arch>(
    arena: &Arena,
    vm: &mut Stage2<A, &Arena>,
    err: Error,
    f: impl FnOnce(&mut Stage2<A, &Arena>) -> Result<(), Error>,
) {
    let live = arena.live_pages();
    let calls = arena.allocation_calls();
    log::clear();
    assert_eq!(f(vm), Err(err));
    assert_eq!(log::writes(), 0);
    assert!(log::tlb_ops().is_empty());
    assert_eq!(arena.live_pages(), live);
    assert_eq!(arena.allocation_calls(), calls);
}

fn map_rejects_unaligned_range<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let rw = Perms::RW;
    let e = Error::Range(RangeError::Unaligned {
        value: RAM + 0x800,
        align: PAGE_SIZE,
    });
    refused(&arena, &mut vm, e, |vm| {
        vm.map_ram(Ipa(RAM + 0x800), pa(RAM), PAGE_SIZE, rw, BlockSize::Page)
    });
    let e = Error::Range(RangeError::Unaligned {
        value: 0x1800,
        align: PAGE_SIZE,
    });
    refused(&arena, &mut vm, e, |vm| {
        vm.map_ram(Ipa(RAM), pa(RAM), 0x1800, rw, BlockSize::Page)
    });
    refused(&arena, &mut vm, Error::Range(RangeError::Empty), |vm| {
        vm.map_ram(Ipa(RAM), pa(RAM), 0, rw, BlockSize::Page)
    });
    refused(&arena, &mut vm, Error::Range(RangeError::Empty), |vm| {
        vm.unmap_range(Ipa(RAM), 0)
    });
    let e = Error::Range(RangeError::Unaligned {
        value: RAM + 1,
        align: PAGE_SIZE,
    });
    refused(&arena, &mut vm, e, |vm| {
        vm.unmap_range(Ipa(RAM + 1), PAGE_SIZE)
    });
}

fn map_rejects_unaligned_output<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let oa = pa(RAM).0 + 0x10;
    refused(&arena, &mut vm, Error::UnalignedOutput { oa }, |vm| {
        vm.map_ram(
            Ipa(RAM),
            PhysAddr(oa),
            PAGE_SIZE,
            Perms::RW,
            BlockSize::Page,
        )
    });
    refused(&arena, &mut vm, Error::UnalignedOutput { oa }, |vm| {
        vm.replace_page(Ipa(RAM), PhysAddr(oa)).map(drop)
    });
}

fn map_rejects_wrapping_range<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let top = !(PAGE_SIZE - 1);
    refused(&arena, &mut vm, Error::Range(RangeError::Wraps), |vm| {
        vm.map_ram(Ipa(top), pa(0), 2 * PAGE_SIZE, Perms::RW, BlockSize::Page)
    });
    refused(&arena, &mut vm, Error::Range(RangeError::Wraps), |vm| {
        vm.unmap_range(Ipa(top), 2 * PAGE_SIZE)
    });
    refused(&arena, &mut vm, Error::Range(RangeError::Wraps), |vm| {
        vm.write_protect_range(Ipa(top), 2 * PAGE_SIZE).map(drop)
    });
    // A wrapping output range.
    let e = Error::OutputTooLarge {
        end: u64::MAX,
        bits: PA_BITS,
    };
    refused(&arena, &mut vm, e, |vm| {
        vm.map_ram(
            Ipa(0),
            PhysAddr(top),
            2 * PAGE_SIZE,
            Perms::RW,
            BlockSize::Page,
        )
    });
}

fn map_rejects_ipa_beyond_vm<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let limit = 1u64 << bits;
    let e = Error::InputTooLarge {
        end: limit + PAGE_SIZE,
        limit,
    };
    refused(&arena, &mut vm, e, |vm| {
        vm.map_ram(
            Ipa(limit - PAGE_SIZE),
            pa(0),
            2 * PAGE_SIZE,
            Perms::RW,
            BlockSize::Page,
        )
    });
    refused(&arena, &mut vm, e, |vm| {
        vm.map_device(Ipa(limit), PhysAddr(0x0900_0000), PAGE_SIZE, true)
    });
    refused(&arena, &mut vm, e, |vm| {
        vm.unmap_range(Ipa(limit - PAGE_SIZE), 2 * PAGE_SIZE)
    });
    assert_eq!(vm.translate(Ipa(limit)), None);
    // The last page is fine.
    vm.map_ram(
        Ipa(limit - PAGE_SIZE),
        pa(0),
        PAGE_SIZE,
        Perms::RW,
        BlockSize::Page,
    )
    .unwrap();
    assert_eq!(
        vm.translate(Ipa(limit - 1)).unwrap().pa,
        PhysAddr(PA_BASE + 0xfff)
    );
}

fn map_rejects_output_beyond_40_bits<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let limit = 1u64 << PA_BITS;
    let e = Error::OutputTooLarge {
        end: limit + PAGE_SIZE,
        bits: PA_BITS,
    };
    refused(&arena, &mut vm, e, |vm| {
        vm.map_ram(
            Ipa(RAM),
            PhysAddr(limit - PAGE_SIZE),
            2 * PAGE_SIZE,
            Perms::RW,
            BlockSize::Page,
        )
    });
    refused(&arena, &mut vm, e, |vm| {
        vm.map_device(Ipa(RAM), PhysAddr(limit), PAGE_SIZE, true)
    });
    let e1 = Error::OutputTooLarge {
        end: limit + PAGE_SIZE,
        bits: PA_BITS,
    };
    vm.map_ram(Ipa(RAM), pa(RAM), PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    refused(&arena, &mut vm, e1, |vm| {
        vm.replace_page(Ipa(RAM), PhysAddr(limit)).map(drop)
    });
    assert_maps(&vm, RAM, ram(Perms::RW), 3);
}

fn map_rejects_conflict_tree_unchanged<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let x = RAM + 5 * PAGE_SIZE;
    vm.map_ram(Ipa(x), pa(x), PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    vm.map_ram(
        Ipa(RAM + BLOCK_2M),
        pa(RAM + BLOCK_2M),
        BLOCK_2M,
        Perms::RW,
        BlockSize::Block2M,
    )
    .unwrap();
    let before = snapshot(&vm, RAM, RAM + 2 * BLOCK_2M + PAGE_SIZE);
    let c = Error::Conflict { ia: x };
    // Other output address.
    refused(&arena, &mut vm, c, |vm| {
        vm.map_ram(
            Ipa(x),
            pa(x + PAGE_SIZE),
            PAGE_SIZE,
            Perms::RW,
            BlockSize::Page,
        )
    });
    // Other permissions.
    refused(&arena, &mut vm, c, |vm| {
        vm.map_ram(Ipa(x), pa(x), PAGE_SIZE, Perms::R, BlockSize::Page)
    });
    // Device over RAM.
    refused(&arena, &mut vm, c, |vm| {
        vm.map_device(Ipa(x), pa(x), PAGE_SIZE, true)
    });
    // A range whose first pages are free: nothing of it may be written.
    refused(&arena, &mut vm, c, |vm| {
        vm.map_ram(
            Ipa(RAM),
            pa(RAM + 0x10_0000),
            8 * PAGE_SIZE,
            Perms::RW,
            BlockSize::Page,
        )
    });
    // A block wanted where a page differs.
    refused(&arena, &mut vm, c, |vm| {
        vm.map_ram(
            Ipa(RAM),
            pa(RAM + 0x10_0000),
            BLOCK_2M,
            Perms::RW,
            BlockSize::Block2M,
        )
    });
    // A page inside an existing block, mapped elsewhere.
    let y = RAM + BLOCK_2M + 7 * PAGE_SIZE;
    refused(&arena, &mut vm, Error::Conflict { ia: y }, |vm| {
        vm.map_ram(Ipa(y), pa(RAM), PAGE_SIZE, Perms::RW, BlockSize::Page)
    });
    // A 1 GiB block over the lot.
    refused(&arena, &mut vm, c, |vm| {
        vm.map_ram(Ipa(RAM), pa(0), BLOCK_1G, Perms::RW, BlockSize::Block1G)
    });
    assert_eq!(snapshot(&vm, RAM, RAM + 2 * BLOCK_2M + PAGE_SIZE), before);
}

fn map_cached_empty_cache_is_cache_exhausted<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    vm.map_ram(Ipa(RAM), pa(RAM), PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    let ipa = RAM + BLOCK_1G - PAGE_SIZE; // same GiB, new 2 MiB: needs one L3 table
                                          // New GiB: L2 + L3 when the walk starts at level 1; at 32 bits (level-2 root) only L3.
    let other = if bits == 32 { 0 } else { 5 * BLOCK_1G };
    let needed = l2_tables(bits, 1) + 1;
    let attrs = ram(Perms::RW);
    let mut cache = PageCache::<8>::new();
    refused(
        &arena,
        &mut vm,
        Error::CacheExhausted {
            needed: 1,
            available: 0,
        },
        |vm| {
            vm.map_cached(
                &mut cache,
                Ipa(ipa),
                pa(ipa),
                PAGE_SIZE,
                attrs,
                BlockSize::Page,
            )
        },
    );
    refused(
        &arena,
        &mut vm,
        Error::CacheExhausted {
            needed,
            available: 0,
        },
        |vm| {
            vm.map_cached(
                &mut cache,
                Ipa(other),
                pa(other),
                PAGE_SIZE,
                attrs,
                BlockSize::Page,
            )
        },
    );
    if needed > 1 {
        cache.top_up(&arena, 1).unwrap();
        refused(
            &arena,
            &mut vm,
            Error::CacheExhausted {
                needed: 2,
                available: 1,
            },
            |vm| {
                vm.map_cached(
                    &mut cache,
                    Ipa(other),
                    pa(other),
                    PAGE_SIZE,
                    attrs,
                    BlockSize::Page,
                )
            },
        );
        assert_eq!(cache.len(), 1);
    }
    assert_eq!(vm.translate(Ipa(other)), None);
    cache.top_up(&arena, needed).unwrap();
    let calls = arena.allocation_calls();
    let live = arena.live_pages();
    vm.map_cached(
        &mut cache,
        Ipa(other),
        pa(other),
        PAGE_SIZE,
        attrs,
        BlockSize::Page,
    )
    .unwrap();
    assert_eq!(
        arena.allocation_calls(),
        calls,
        "map_cached never allocates"
    );
    assert_eq!(
        arena.live_pages(),
        live,
        "the cache's pages became the tables"
    );
    assert!(cache.is_empty());
    assert_maps(&vm, other, attrs, 3);
    assert_eq!(
        arena.live_pages(),
        root_pages(bits) + 2 + l2_tables(bits, 2)
    );
}

fn map_out_of_memory_at_every_allocation<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    vm.map_ram(Ipa(RAM), pa(RAM), PAGE_SIZE, Perms::RW, BlockSize::Page)
        .unwrap();
    // Pages across a GiB boundary: an L3 table in the mapped GiB, then an L2 table (only when
    // the walk starts at level 1), a 2 MiB block and an L3 table in the next one.
    let lo = RAM + BLOCK_1G - 2 * PAGE_SIZE;
    let size = 2 * PAGE_SIZE + BLOCK_2M + 2 * PAGE_SIZE;
    let hi = lo + size;
    let snap = |vm: &Stage2<A, &Arena>| {
        let mut v = snapshot(vm, RAM, RAM + PAGE_SIZE);
        v.extend(snapshot(vm, lo - PAGE_SIZE, hi + PAGE_SIZE));
        v
    };
    let before = snap(&vm);
    let mut failures = 0;
    for k in 1.. {
        let live = arena.live_pages();
        arena.fail_nth(k);
        let r = vm.map_ram(Ipa(lo), pa(lo), size, Perms::RW, BlockSize::Block2M);
        arena.stop_failing();
        match r {
            Err(e) => {
                assert_eq!(e, Error::OutOfMemory, "allocation {k}");
                assert_eq!(arena.live_pages(), live, "allocation {k}: leak");
                assert_eq!(snap(&vm), before, "allocation {k}");
                failures += 1;
            }
            Ok(()) => break,
        }
    }
    assert_eq!(failures, 2 + l2_tables(bits, 1));
    assert_maps(&vm, lo, ram(Perms::RW), 3);
    assert_maps(&vm, RAM + BLOCK_1G + PAGE_SIZE, ram(Perms::RW), 2);
    assert_maps(
        &vm,
        RAM + BLOCK_1G + BLOCK_2M + PAGE_SIZE,
        ram(Perms::RW),
        3,
    );
    assert_eq!(vm.translate(Ipa(hi)), None);
    assert_eq!(
        arena.live_pages(),
        root_pages(bits) + 3 + l2_tables(bits, 2)
    );
}

fn memslot_and_logging_out_of_memory<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let live = arena.live_pages();
    arena.fail_nth(1);
    assert_eq!(
        vm.add_memslot(slot(RAM, BLOCK_2M, true)),
        Err(Error::OutOfMemory)
    );
    assert!(vm.slots().is_empty());
    assert_eq!(arena.live_pages(), live);
    let id = vm.add_memslot(slot(RAM, BLOCK_2M, false)).unwrap();
    arena.fail_nth(1);
    assert_eq!(vm.enable_dirty_logging(id), Err(Error::OutOfMemory));
    assert!(!vm.slot(id).unwrap().logging());
    assert_eq!(vm.is_dirty(id, 0), Err(Error::NotLogging(id)));
    assert_eq!(arena.live_pages(), live);
}

// ----- memslots ---------------------------------------------------------------------------

fn memslot_overlap_is_refused<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let a = vm.add_memslot(slot(RAM, 4 * BLOCK_2M, false)).unwrap();
    for (ipa, size) in [
        (RAM + 2 * BLOCK_2M, 4 * BLOCK_2M),
        (RAM - PAGE_SIZE, 2 * PAGE_SIZE),
        (RAM + 4 * BLOCK_2M - PAGE_SIZE, PAGE_SIZE),
        (RAM - BLOCK_2M, 8 * BLOCK_2M),
    ] {
        assert_eq!(
            vm.add_memslot(slot(ipa, size, false)),
            Err(Error::SlotOverlap { existing: a })
        );
    }
    // Adjacent on both sides is fine.
    let b = vm
        .add_memslot(slot(RAM + 4 * BLOCK_2M, PAGE_SIZE, false))
        .unwrap();
    let c = vm
        .add_memslot(slot(RAM - PAGE_SIZE, PAGE_SIZE, false))
        .unwrap();
    assert_ne!(a, b);
    assert_ne!(b, c);
    assert_eq!(vm.slots().len(), 3);
    assert_eq!(vm.find_slot(Ipa(RAM + 4 * BLOCK_2M - 1)).unwrap().id, a);
    assert_eq!(vm.find_slot(Ipa(RAM + 4 * BLOCK_2M)).unwrap().id, b);
}

fn memslot_unknown_is_no_such_slot<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let a = vm.add_memslot(slot(RAM, BLOCK_2M, true)).unwrap();
    let bad = SlotId(a.0 + 7);
    assert_eq!(vm.remove_memslot(bad), Err(Error::NoSuchSlot(bad)));
    assert_eq!(vm.write_protect_slot(bad), Err(Error::NoSuchSlot(bad)));
    assert_eq!(
        vm.write_protect_masked(bad, 0, 1),
        Err(Error::NoSuchSlot(bad))
    );
    assert_eq!(vm.enable_dirty_logging(bad), Err(Error::NoSuchSlot(bad)));
    assert_eq!(vm.disable_dirty_logging(bad), Err(Error::NoSuchSlot(bad)));
    assert_eq!(vm.is_dirty(bad, 0), Err(Error::NoSuchSlot(bad)));
    assert_eq!(
        vm.get_dirty_log(bad, &mut [0; 8]),
        Err(Error::NoSuchSlot(bad))
    );
    vm.remove_memslot(a).unwrap();
    assert_eq!(vm.remove_memslot(a), Err(Error::NoSuchSlot(a)));
    assert_eq!(arena.live_pages(), root_pages(bits));
}

fn memslot_too_many<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let ids: Vec<SlotId> = (0..MAX_SLOTS as u64)
        .map(|i| {
            vm.add_memslot(slot(RAM + i * BLOCK_2M, BLOCK_2M, false))
                .unwrap()
        })
        .collect();
    assert_eq!(MAX_SLOTS, 32);
    let next = RAM + MAX_SLOTS as u64 * BLOCK_2M;
    assert_eq!(
        vm.add_memslot(slot(next, BLOCK_2M, false)),
        Err(Error::TooManySlots)
    );
    vm.remove_memslot(ids[3]).unwrap();
    vm.add_memslot(slot(next, BLOCK_2M, false)).unwrap();
}

fn memslot_beyond_ipa_is_input_too_large<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let limit = 1u64 << bits;
    assert_eq!(
        vm.add_memslot(SlotDesc {
            host: PhysAddr(0x1000_0000),
            ..slot(limit - PAGE_SIZE, 2 * PAGE_SIZE, false)
        }),
        Err(Error::InputTooLarge {
            end: limit + PAGE_SIZE,
            limit
        })
    );
    vm.add_memslot(SlotDesc {
        host: PhysAddr(0x1000_0000),
        ..slot(limit - PAGE_SIZE, PAGE_SIZE, false)
    })
    .unwrap();
}

fn memslot_host_beyond_pa_is_output_too_large<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let limit = 1u64 << PA_BITS;
    assert_eq!(
        vm.add_memslot(SlotDesc {
            host: PhysAddr(limit - PAGE_SIZE),
            ..slot(RAM, 2 * PAGE_SIZE, false)
        }),
        Err(Error::OutputTooLarge {
            end: limit + PAGE_SIZE,
            bits: PA_BITS
        })
    );
    assert!(vm.slots().is_empty());
}

fn memslot_unaligned_is_range<A: Arch>(bits: u8) {
    let arena = Arena::standard();
    let mut vm = new_vm::<A>(&arena, bits);
    let un = |value| {
        Err(Error::Range(RangeError::Unaligned {
            value,
            align: PAGE_SIZE,
        }))
    };
    assert_eq!(
        vm.add_memslot(slot(RAM + 0x800, PAGE_SIZE, false)),
        un(RAM + 0x800)
    );
    assert_eq!(vm.add_memslot(slot(RAM, 0x1800, false)), un(0x1800));
    assert_eq!(
        vm.add_memslot(SlotDesc {
            host: PhysAddr(pa(RAM).0 + 8),
            ..slot(RAM, PAGE_SIZE, false)
        }),
        un(pa(RAM).0 + 8)
    );
    assert_eq!(
        vm.add_memslot(slot(RAM, 0, false)),
        Err(Error::Range(RangeError::Empty))
    );
    assert!(vm.slots().is_empty());
}

stage2_tests!(
    create_allocates_root_pages,
    create_vttbr_holds_root_and_vmid,
    create_rejects_vmid_256,
    create_out_of_memory,
    map_pages_translate_exactly,
    map_2m_blocks_translate_exactly,
    map_1g_blocks_translate_exactly,
    map_device_is_ngnre_pages_never_executable,
    map_identical_again_writes_nothing,
    map_rejects_unaligned_range,
    map_rejects_unaligned_output,
    map_rejects_wrapping_range,
    map_rejects_ipa_beyond_vm,
    map_rejects_output_beyond_40_bits,
    map_rejects_conflict_tree_unchanged,
    map_cached_empty_cache_is_cache_exhausted,
    map_out_of_memory_at_every_allocation,
    memslot_and_logging_out_of_memory,
    memslot_overlap_is_refused,
    memslot_unknown_is_no_such_slot,
    memslot_too_many,
    memslot_beyond_ipa_is_input_too_large,
    memslot_host_beyond_pa_is_output_too_large,
    memslot_unaligned_is_range,
);

arch_tests!(create_rejects_ipa_41);
