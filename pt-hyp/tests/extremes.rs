//! Every public constructor and helper of pt-hyp driven with extreme values: none panics,
//! each gives the typed result worked out here from the ARM ARM field layouts (ESR_EL2 / HSR,
//! HPFAR) and KVM's MMIO completion (`kvm_handle_mmio_return`).
//!
//! The test profile has overflow checks on (workspace `Cargo.toml`), so an arithmetic
//! overflow anywhere below is a panic, and a test failure.

use pt_core::testkit::Arena;
use pt_core::{Format, GeometryError, PAGE_SIZE};
use pt_hyp::fault::{block_allowed, decode_armv7, decode_armv8, leaf_level};
use pt_hyp::hyp::{HypArch, HypConfig, HypError, HypTables, IoArea, VaConversion};
use pt_hyp::{
    AbortKind, Arch, Armv7, Armv8, DecodeError, Error, FaultStatus, GuestAbort, Ipa, MmioAccess,
    PhysAddr, SlotDesc, SlotFlags, Stage2, VirtAddr,
};

const U64S: [u64; 9] = [
    0,
    1,
    0xfff,
    0x1000,
    1 << 32,
    1 << 47,
    u64::MAX - 0xfff,
    u64::MAX - 1,
    u64::MAX,
];

#[test]
fn overflow_checks_are_on_in_test_builds() {
    let r = std::panic::catch_unwind(|| std::hint::black_box(u8::MAX) + 1);
    assert!(r.is_err(), "u8::MAX + 1 must panic under overflow checks");
}

/// A decoded data abort from the guest whose `sas` field is then set to any value (the field
/// is public, so a caller can build one).
fn abort_with_sas(sas: u8) -> GuestAbort {
    let mut a = decode_armv8(0x24 << 26, 0, 0).unwrap();
    a.sas = sas;
    a
}

#[test]
fn access_size_counts_only_the_two_sas_bits_for_every_value() {
    for sas in 0..=u8::MAX {
        // SAS is ESR/HSR bits [23:22]: 0b00 byte, 0b01 halfword, 0b10 word, 0b11 doubleword.
        let want = [1, 2, 4, 8][usize::from(sas & 3)];
        assert_eq!(abort_with_sas(sas).access_size(), want, "sas {sas}");
    }
}

#[test]
fn fault_status_decodes_every_byte_by_its_six_fsc_bits() {
    for fsc in 0..=u8::MAX {
        assert_eq!(
            FaultStatus::from_fsc(fsc),
            FaultStatus::from_fsc(fsc & 0x3f)
        );
    }
    assert_eq!(
        FaultStatus::from_fsc(u8::MAX),
        FaultStatus::Other(0x3f),
        "0b111111 is no architected code"
    );
}

#[test]
fn decoders_are_total_over_extreme_registers() {
    for esr in U64S {
        for far in U64S {
            for hpfar in U64S {
                let ec = ((esr >> 26) & 0x3f) as u8;
                let got = decode_armv8(esr, far, hpfar);
                match ec {
                    0x20 | 0x24 => {
                        let a = got.unwrap();
                        // HPFAR_EL2.FIPA [43:4] = IPA[51:12]; the page offset from FAR.
                        let ipa = ((hpfar >> 4) & ((1 << 40) - 1)) << 12 | (far & 0xfff);
                        assert_eq!(a.ipa, Ipa(ipa));
                        assert!([1, 2, 4, 8].contains(&a.access_size()));
                    }
                    _ => assert_eq!(got, Err(DecodeError::NotGuestAbort { ec })),
                }
                let (hsr, hdfar, hpfar32) = (esr as u32, far as u32, hpfar as u32);
                let got = decode_armv7(hsr, hdfar, hdfar, hpfar32);
                let ec = (hsr >> 26) as u8;
                match ec {
                    0x20 | 0x24 => {
                        let a = got.unwrap();
                        // HPFAR [31:4] = IPA[39:12].
                        let ipa = u64::from(hpfar32 >> 4) << 12 | u64::from(hdfar & 0xfff);
                        assert_eq!(a.ipa, Ipa(ipa));
                        assert!(a.srt <= 15);
                    }
                    _ => assert_eq!(got, Err(DecodeError::NotGuestAbort { ec })),
                }
            }
        }
    }
    // Every syndrome bit set on a data abort: SAS 0b11, SRT 31 (XZR), SF, AR, FnV, ...
    let a = decode_armv8(!(0x3f << 26) | (0x24 << 26), !0, !0).unwrap();
    assert_eq!(a.kind, AbortKind::Data);
    assert_eq!((a.sas, a.access_size(), a.srt), (3, 8, 31));
    assert_eq!(a.ipa, Ipa(0x000f_ffff_ffff_ffff));
}

fn access(size: u8, sign_extend: bool, sixty_four: bool) -> MmioAccess {
    MmioAccess {
        ipa: Ipa(0),
        size,
        write: false,
        reg: 0,
        sign_extend,
        sixty_four,
        acquire_release: false,
        insn_len: 4,
    }
}

#[test]
fn mmio_load_and_store_are_total_for_every_size() {
    for size in 0..=u8::MAX {
        for sse in [false, true] {
            for sf in [false, true] {
                let m = access(size, sse, sf);
                for data in U64S {
                    // Worked out bit by bit: keep the low `8 * min(size, 8)` bits, copy the
                    // top kept bit upwards when sign-extending a 1..=7-byte access, keep 32
                    // bits of the result for a W register.
                    let bits = 8 * u32::from(size.min(8));
                    let mut want = 0u64;
                    for b in 0..64 {
                        let bit = if b < bits {
                            (data >> b) & 1
                        } else if sse && (1..8).contains(&size) {
                            (data >> (bits - 1)) & 1
                        } else {
                            0
                        };
                        want |= bit << b;
                    }
                    let stored = want_stored(data, bits);
                    if !sf {
                        want &= 0xffff_ffff;
                    }
                    assert_eq!(m.load_result(data), want, "{m:?} {data:#x}");
                    assert_eq!(m.store_value(data), stored, "{m:?} {data:#x}");
                }
            }
        }
    }
    // Spot values: a zero-byte load is 0 even sign-extended; a signed byte 0x80 is -128.
    assert_eq!(access(0, true, true).load_result(u64::MAX), 0);
    assert_eq!(
        access(1, true, true).load_result(0x80),
        0xffff_ffff_ffff_ff80
    );
    assert_eq!(access(1, true, false).load_result(0x80), 0xffff_ff80);
    assert_eq!(access(u8::MAX, true, true).load_result(u64::MAX), u64::MAX);
}

fn want_stored(data: u64, bits: u32) -> u64 {
    if bits >= 64 {
        data
    } else {
        data & ((1u64 << bits) - 1)
    }
}

fn slot_helpers_are_total<A: Arch>() {
    let arena = Arena::standard();
    let mut vm = Stage2::<A, _>::new(&arena, 40, 1).unwrap();
    let desc = SlotDesc {
        ipa: Ipa(0x4000_0000),
        size: 0x20_0000,
        host: PhysAddr(0x8000_0000),
        flags: SlotFlags::default(),
    };
    let id = vm.add_memslot(desc).unwrap();
    let slot = *vm.slot(id).unwrap();
    let cases = [
        (0, None, None),
        (0x3fff_ffff, None, None),
        (0x4000_0000, Some(0x8000_0000), Some(0)),
        (0x4000_1fff, Some(0x8000_1fff), Some(1)),
        (0x401f_ffff, Some(0x801f_ffff), Some(0x1ff)),
        (0x4020_0000, None, None),
        (u64::MAX, None, None),
    ];
    for (ipa, host, gfn) in cases {
        assert_eq!(slot.host_addr(Ipa(ipa)), host.map(PhysAddr), "{ipa:#x}");
        assert_eq!(slot.gfn_offset(Ipa(ipa)), gfn, "{ipa:#x}");
    }
    // A copy whose description was made absurd still answers without panicking.
    let mut wild = slot;
    wild.desc.ipa = Ipa(u64::MAX - 0xfff);
    wild.desc.size = u64::MAX;
    wild.desc.host = PhysAddr(u64::MAX);
    assert_eq!(wild.end(), u64::MAX);
    assert!(wild.contains(Ipa(u64::MAX - 1)));
    assert_eq!(
        wild.host_addr(Ipa(u64::MAX - 1)),
        None,
        "host address wraps"
    );
    assert_eq!(wild.gfn_offset(Ipa(u64::MAX - 1)), Some(0));
    for ipa in U64S {
        for block in U64S.into_iter().chain([1 << 21, 1 << 30, 1 << 63]) {
            for s in [&slot, &wild] {
                let _ = block_allowed(s, Ipa(ipa), block);
            }
        }
        for level in 0..=u8::MAX {
            let l = leaf_level::<A::S2>(&vm.geometry(), &slot, Ipa(ipa), level);
            assert!((1..=3).contains(&l), "level {level}: {l}");
        }
    }
    // The pages of a slot: exactly the page size is always allowed inside it.
    assert!(block_allowed(&slot, Ipa(0x4000_0000), PAGE_SIZE));
    assert!(!block_allowed(&slot, Ipa(0x4000_0000), 0));
    vm.remove_memslot(id).unwrap();
}

#[test]
fn memslot_helpers_are_total_armv7() {
    slot_helpers_are_total::<Armv7>();
}

#[test]
fn memslot_helpers_are_total_armv8() {
    slot_helpers_are_total::<Armv8>();
}

fn stage2_new_is_total<A: Arch>() {
    let arena = Arena::standard();
    let limits = <A::S2 as Format>::LIMITS;
    for bits in 0..=u8::MAX {
        for vmid in [0, 1, 255, 256, u16::MAX] {
            let r = Stage2::<A, _>::new(&arena, bits, vmid);
            if bits < limits.min_ia_bits || bits > limits.max_ia_bits {
                assert_eq!(
                    r.err(),
                    Some(Error::Geometry(GeometryError::UnsupportedInputSize {
                        bits,
                        min: limits.min_ia_bits,
                        max: limits.max_ia_bits
                    }))
                );
            } else if vmid == 0 {
                assert_eq!(r.err(), Some(Error::HostVmid));
            } else if vmid > 255 {
                assert!(matches!(r, Err(Error::Register(_))), "vmid {vmid}");
            } else if bits <= A::PA_BITS {
                assert!(r.is_ok(), "{bits}-bit IPA, vmid {vmid}");
            } else {
                // Wider than the 40-bit PA of the supported CPUs: VTCR refuses it.
                assert!(matches!(r, Err(Error::Register(_))), "{bits}");
            }
        }
    }
    assert_eq!(arena.live_pages(), 0);
}

#[test]
fn stage2_new_is_total_armv7() {
    stage2_new_is_total::<Armv7>();
}

#[test]
fn stage2_new_is_total_armv8() {
    stage2_new_is_total::<Armv8>();
}

fn hyp_tables_new_is_total<A: HypArch>() {
    let arena = Arena::standard();
    let limits = <A::Hyp as Format>::LIMITS;
    for va_bits in [0, 1, 12, 24, 25, 32, 33, 48, 49, 64, u8::MAX] {
        for pa_bits in [0, 31, 32, 40, 41, 48, 64, u8::MAX] {
            for io_base in U64S {
                for io_size in U64S {
                    let config = HypConfig::new(va_bits, pa_bits, VirtAddr(io_base), io_size);
                    match HypTables::<A, _>::new(&arena, config) {
                        Ok(t) => {
                            assert!(limits.min_ia_bits <= va_bits && va_bits <= limits.max_ia_bits);
                            assert!(io_size != 0 && io_size % PAGE_SIZE == 0);
                            assert!(io_base + io_size <= 1u64 << va_bits);
                            drop(t);
                        }
                        Err(HypError::Geometry(GeometryError::UnsupportedInputSize {
                            bits,
                            ..
                        })) => {
                            assert_eq!(bits, va_bits);
                            assert!(va_bits < limits.min_ia_bits || va_bits > limits.max_ia_bits);
                        }
                        Err(_) => {}
                    }
                }
            }
        }
    }
    assert_eq!(arena.live_pages(), 0);
}

#[test]
fn hyp_tables_new_is_total_armv7() {
    hyp_tables_new_is_total::<Armv7>();
}

#[test]
fn hyp_tables_new_is_total_armv8() {
    hyp_tables_new_is_total::<Armv8>();
}

#[test]
fn io_area_and_linear_map_are_total() {
    for base in U64S {
        for size in U64S {
            for va_size in U64S {
                if let Ok(area) = IoArea::new(VirtAddr(base), size, va_size) {
                    assert_eq!(area.end().0, base + size);
                    assert!(area.end().0 <= va_size);
                    assert_eq!(area.remaining(), size);
                    for start in U64S {
                        for end in U64S {
                            let _ = area.overlap(start, end);
                        }
                    }
                }
            }
        }
    }
    for kernel_base in U64S {
        for hyp in U64S {
            for phys in U64S {
                let map = pt_hyp::hyp::LinearMap {
                    kernel_base,
                    hyp_base: VirtAddr(hyp),
                    phys_base: PhysAddr(phys),
                };
                for kva in U64S {
                    let want = kva.checked_sub(kernel_base).and_then(|off| {
                        Some((
                            VirtAddr(hyp.checked_add(off)?),
                            PhysAddr(phys.checked_add(off)?),
                        ))
                    });
                    assert_eq!(map.convert(kva), want);
                }
            }
        }
    }
}
