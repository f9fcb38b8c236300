//! Every public constructor and helper of pt-armv8 driven with extreme values: none panics,
//! each gives the typed result worked out here from the VMSAv8-64 rules of DDI 0487 with the
//! 4 KiB granule (levels 0-3, tables at levels 0-2, blocks at levels 1 and 2, pages at level 3,
//! 48-bit output addresses; TCR_EL2/VTCR_EL2 T0SZ 16..=39, PS encodings, 8-bit VMIDs).
//!
//! The test profile has overflow checks on (workspace `Cargo.toml`), so an arithmetic
//! overflow anywhere below is a panic, and a test failure.

use pt_armv8::descriptor::{is_contiguous, with_contiguous};
use pt_armv8::memattr::{mem_from_attr_index, mem_from_s2_memattr};
use pt_armv8::regs::{
    pa_bits_to_ps, parange_to_pa_bits, tcr_el2, ttbr0_el2, vtcr_el2, vttbr_el2, RegError,
};
use pt_armv8::{Descriptor, HypFormat, Maint, S2Format};
use pt_core::{
    Barrier, CacheOp, Entry, Format, Geometry, Ipa, Limits, Maintenance, MemType, Perms, PhysAddr,
    Stage, Stage1Attrs, Stage2Attrs, TlbOp, VirtAddr,
};

const U64S: [u64; 10] = [
    0,
    1,
    3,
    0xfff,
    0x1000,
    1 << 32,
    (1 << 48) - 1,
    1 << 48,
    u64::MAX - 0xfff,
    u64::MAX,
];

const MEMS: [MemType; 4] = [
    MemType::NormalWb,
    MemType::NormalNc,
    MemType::DeviceNGnRE,
    MemType::DeviceNGnRnE,
];

/// Every combination of R, W and X.
const PERMS: [Perms; 8] = [
    Perms::NONE,
    Perms::R,
    Perms::W,
    Perms::X,
    Perms::RW,
    Perms::RX,
    Perms::RWX,
    Perms::W.with(Perms::X),
];

#[test]
fn overflow_checks_are_on_in_test_builds() {
    let r = std::panic::catch_unwind(|| std::hint::black_box(u8::MAX) + 1);
    assert!(r.is_err(), "u8::MAX + 1 must panic under overflow checks");
}

/// Every level, every extreme descriptor and address: no panic; levels past 3 hold nothing,
/// level 0 holds no leaf; leaves round-trip at the leaf levels and encode as invalid elsewhere.
fn format_is_total<F: Format>(attrs: &[F::Attrs]) {
    for level in 0..=u8::MAX {
        let has_leaves = (1..=3).contains(&level);
        assert_eq!(F::block_allowed(level), level == 1 || level == 2, "{level}");
        assert_eq!(
            F::leaf_step(level),
            has_leaves.then(|| 1u64 << (12 + 9 * (3 - u32::from(level)))),
            "{level}"
        );
        for desc in U64S {
            let e = F::decode(desc, level);
            if level > 3 {
                assert_eq!(e, Entry::Invalid, "{desc:#x} at level {level}");
                assert!(!F::is_valid(desc, level) && !F::is_table(desc, level));
            }
            assert_eq!(F::is_valid(desc, level), e != Entry::Invalid);
            assert_eq!(F::is_table(desc, level), matches!(e, Entry::Table(_)));
            let _ = (
                with_contiguous(desc),
                is_contiguous(desc),
                F::encode_table(PhysAddr(desc), level),
            );
        }
        for oa in U64S {
            for &a in attrs {
                let desc = F::encode_leaf(PhysAddr(oa), a, level);
                if has_leaves {
                    let size = 1u64 << (12 + 9 * (3 - u32::from(level)));
                    // Bits of the OA outside [47:log2(size)] are dropped.
                    let want = oa & ((1 << 48) - 1) & !(size - 1);
                    match F::decode(desc, level) {
                        Entry::Leaf { oa, .. } => assert_eq!(oa, PhysAddr(want)),
                        other => panic!("{other:?} at level {level}"),
                    }
                } else {
                    assert_eq!(desc, 0, "no leaf at level {level}");
                }
            }
            let _ = F::oa_fits(PhysAddr(oa), u64::MAX);
        }
    }
}

#[test]
fn formats_are_total_at_every_level() {
    let mut s1 = Vec::new();
    let mut s2 = Vec::new();
    for mem in MEMS {
        for perms in PERMS {
            s1.push(Stage1Attrs { perms, mem });
            for (accessed, logged) in [(false, false), (true, true)] {
                s2.push(Stage2Attrs {
                    perms,
                    mem,
                    accessed,
                    logged,
                });
            }
        }
    }
    format_is_total::<HypFormat>(&s1);
    format_is_total::<S2Format>(&s2);
}

/// 40 bytes aligned to 8.
#[repr(C, align(8))]
struct Aligned([u8; 40]);

#[test]
fn descriptor_table_views_only_whole_aligned_entries() {
    let backing = Aligned([0xa5; 40]);
    let bytes = &backing.0[..];
    for len in 0..=bytes.len() {
        let got = Descriptor::table(&bytes[..len]);
        assert_eq!(
            got.map(<[Descriptor]>::len),
            (len % 8 == 0).then_some(len / 8)
        );
    }
    // Misaligned by one byte: refused whatever the length.
    assert_eq!(Descriptor::table(&bytes[1..9]), None);
    assert_eq!(
        Descriptor::table(&bytes[..8]),
        Some(&[Descriptor(0xa5a5_a5a5_a5a5_a5a5)][..])
    );
}

#[test]
fn memattr_decoders_are_total() {
    for idx in U64S.into_iter().chain(0..16) {
        // MAIR_EL2 indices 0..=3 are programmed, the rest are not.
        let want = (idx < 4).then(|| MEMS[idx as usize]);
        assert_eq!(mem_from_attr_index(idx), want, "{idx}");
    }
    for attr in U64S.into_iter().chain(0..16) {
        let want = match attr {
            0b1111 => Some(MemType::NormalWb),
            0b0101 => Some(MemType::NormalNc),
            0b0001 => Some(MemType::DeviceNGnRE),
            0b0000 => Some(MemType::DeviceNGnRnE),
            _ => None,
        };
        assert_eq!(mem_from_s2_memattr(attr), want, "{attr:#x}");
    }
}

#[test]
fn pa_size_encodings_are_total() {
    // TCR_EL2.PS / VTCR_EL2.PS: 0b000 32 bits .. 0b101 48 bits.
    for bits in 0..=u8::MAX {
        let want = match bits {
            32 => Ok(0),
            36 => Ok(1),
            40 => Ok(2),
            42 => Ok(3),
            44 => Ok(4),
            48 => Ok(5),
            _ => Err(RegError::UnsupportedPaBits { pa_bits: bits }),
        };
        assert_eq!(pa_bits_to_ps(bits), want);
    }
    // ID_AA64MMFR0_EL1.PARange [3:0]; 52 bits (0b0110) is capped at 48.
    for reg in U64S.into_iter().chain(0..16) {
        let want = match reg & 0xf {
            0 => Ok(32),
            1 => Ok(36),
            2 => Ok(40),
            3 => Ok(42),
            4 => Ok(44),
            5 | 6 => Ok(48),
            n => Err(RegError::UnsupportedPaBits { pa_bits: n as u8 }),
        };
        assert_eq!(parange_to_pa_bits(reg), want, "{reg:#x}");
    }
}

#[test]
fn register_values_are_total_for_every_geometry_root_and_vmid() {
    for stage in [Stage::Stage1, Stage::Stage2] {
        for min_level in 0..=3 {
            let limits = Limits {
                stage,
                min_ia_bits: 0,
                max_ia_bits: u8::MAX,
                min_level,
            };
            for bits in 0..=u8::MAX {
                let Ok(g) = Geometry::new(limits, bits) else {
                    continue;
                };
                for pa_bits in [0, 32, 40, 44, 48, 52, u8::MAX] {
                    if let Ok(v) = tcr_el2(&g, pa_bits) {
                        // T0SZ [5:0] = 64 - bits, 16..=39.
                        assert_eq!(v & 0x3f, 64 - u64::from(bits));
                        assert!((25..=48).contains(&bits));
                    }
                    if let Ok(v) = vtcr_el2(&g, pa_bits) {
                        assert_eq!(v & 0x3f, 64 - u64::from(bits));
                        // SL0 [7:6]: 2 - start level.
                        assert_eq!((v >> 6) & 3, 2 - u64::from(g.start_level()));
                        assert!(bits <= pa_bits);
                    }
                }
                for root in U64S {
                    for vmid in [0, 255, 256, u16::MAX] {
                        if let Ok(v) = vttbr_el2(&g, PhysAddr(root), vmid) {
                            assert!(vmid <= 255 && root < 1 << 48);
                            assert_eq!(v, root | u64::from(vmid) << 48);
                        }
                    }
                }
            }
        }
    }
    for root in U64S {
        let want = if root % 0x1000 != 0 {
            Err(RegError::UnalignedRoot {
                root: PhysAddr(root),
                align: 0x1000,
            })
        } else if root >= 1 << 48 {
            Err(RegError::RootBeyondOa {
                root: PhysAddr(root),
            })
        } else {
            Ok(root)
        };
        assert_eq!(ttbr0_el2(PhysAddr(root)), want);
    }
}

#[test]
fn maintenance_is_total_for_extreme_operands() {
    let m = Maint;
    for x in U64S {
        for level in [0, 3, 4, u8::MAX] {
            m.tlb(TlbOp::S2Ipa {
                vttbr: x,
                ipa: Ipa(x),
                level,
            });
        }
        m.tlb(TlbOp::S2Vmid { vttbr: x });
        m.tlb(TlbOp::S2CombinedForVmid { vttbr: x });
        m.tlb(TlbOp::HypVa { va: VirtAddr(x) });
        for len in [0, 1, 64, 0x1000] {
            m.dcache(CacheOp::Clean, x as usize, len);
            m.dcache(CacheOp::CleanInvalidate, x as usize, len);
            m.dcache(CacheOp::CleanToPou, x as usize, len);
        }
        // A range reaching the top of the address space stops there.
        if x as usize >= usize::MAX - 0xfff {
            m.dcache(CacheOp::Clean, x as usize, usize::MAX);
        }
    }
    for b in [Barrier::DsbIshSt, Barrier::DsbIsh, Barrier::Isb] {
        m.barrier(b);
    }
    m.tlb(TlbOp::HypAll);
    m.icache_invalidate_all();
    m.flush_vm_context();
}
