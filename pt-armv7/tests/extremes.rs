//! Every public constructor and helper of pt-armv7 driven with extreme values: none panics,
//! each gives the typed result worked out here from the LPAE rules of DDI 0406C (levels 1-3,
//! blocks at levels 1 and 2, pages at level 3, 40-bit output addresses; HTCR/VTCR T0SZ and
//! SL0 ranges).
//!
//! The test profile has overflow checks on (workspace `Cargo.toml`), so an arithmetic
//! overflow anywhere below is a panic, and a test failure.

use pt_armv7::descriptor::{is_contiguous, with_contiguous};
use pt_armv7::memattr::{mem_from_attr_index, mem_from_s2_memattr};
use pt_armv7::regs::{htcr, httbr, vtcr, vttbr, vttbr_alignment, RegError};
use pt_armv7::{Descriptor, HypFormat, Maint, S2Format};
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
    (1 << 40) - 1,
    1 << 40,
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

/// Every level, every extreme descriptor and address: no panic; levels ARMv7 does not have
/// (0 and past 3) hold nothing; leaves round-trip at the leaf levels.
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
                    // Bits of the OA outside [39:log2(size)] are dropped.
                    let want = oa & ((1 << 40) - 1) & !(size - 1);
                    match F::decode(desc, level) {
                        Entry::Leaf { oa, .. } => assert_eq!(oa, PhysAddr(want)),
                        other => panic!("{other:?} at level {level}"),
                    }
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
        let m = mem_from_attr_index(idx);
        if idx < 4 {
            assert_eq!(m, MEMS[idx as usize]);
        } else {
            // Indices HMAIR0/1 leave 0 select Strongly-ordered.
            assert_eq!(m, MemType::DeviceNGnRnE);
        }
    }
    for attr in U64S.into_iter().chain(0..16) {
        // Only MemAttr[3:0] counts.
        assert_eq!(mem_from_s2_memattr(attr), mem_from_s2_memattr(attr & 0xf));
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
                let t0sz = 32 - i32::from(bits);
                // HTCR: T0SZ 0..=7 (25..=32 bits); level 1 for T0SZ 0..=1, level 2 for 2..=7.
                match htcr(&g) {
                    Ok(v) => {
                        assert!((0..=7).contains(&t0sz));
                        assert_eq!(v & 0b111, t0sz as u32);
                        assert_eq!(g.start_level(), if t0sz <= 1 { 1 } else { 2 });
                    }
                    Err(RegError::InputSize { .. }) => assert!(!(25..=32).contains(&bits)),
                    Err(RegError::StartLevel { .. }) => {}
                    Err(e) => panic!("{e:?}"),
                }
                // VTCR: signed T0SZ -8..=7; SL0 level 2 for T0SZ -2..=7, level 1 for -8..=1.
                let legal = match g.start_level() {
                    2 => (-2..=7).contains(&t0sz),
                    1 => (-8..=1).contains(&t0sz),
                    _ => false,
                };
                assert_eq!(
                    vtcr(&g).is_ok(),
                    (25..=40).contains(&bits) && legal,
                    "{g:?}"
                );
                assert_eq!(vttbr_alignment(&g).is_ok(), vtcr(&g).is_ok());
                for root in U64S {
                    for vmid in [0, 255, 256, u16::MAX] {
                        let r = vttbr(PhysAddr(root), &g, vmid);
                        if let Ok(v) = r {
                            assert!(vmid <= 255 && root < 1 << 40);
                            assert_eq!(v, root | u64::from(vmid) << 48);
                        }
                    }
                }
            }
        }
    }
    for root in U64S {
        let want = if root % 0x1000 != 0 {
            Err(RegError::Misaligned {
                addr: root,
                align: 0x1000,
            })
        } else if root >= 1 << 40 {
            Err(RegError::AddressTooWide { addr: root })
        } else {
            Ok(root)
        };
        assert_eq!(httbr(PhysAddr(root)), want);
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
        // A range reaching the top of the address space stops there (on the target a usize
        // cannot name an address above 4 GiB at all).
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
