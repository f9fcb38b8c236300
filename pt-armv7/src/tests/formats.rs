use crate::descriptor::{is_contiguous, with_contiguous, Descriptor};
use crate::{HypFormat, S2Format};
use pt_core::{Entry, Format, MemType, Perms, PhysAddr, Stage1Attrs, Stage2Attrs};

const ALL_MEM: [MemType; 4] = [
    MemType::NormalWb,
    MemType::NormalNc,
    MemType::DeviceNGnRE,
    MemType::DeviceNGnRnE,
];
const ALL_PERMS: [Perms; 8] = [
    Perms::NONE,
    Perms::R,
    Perms::W,
    Perms::RW,
    Perms::X,
    Perms::RX,
    Perms::W.with(Perms::X),
    Perms::RWX,
];

// ---- HYP stage 1 ------------------------------------------------------------------------

#[test]
fn hyp_page_rw_normal_is_xn_with_ap1_af_and_inner_shareable() {
    let d = HypFormat::encode_leaf(PhysAddr(0x4000_1000), Stage1Attrs::normal(Perms::RW), 3);
    // XN | AF | SH=0b11 | AP[1] | AttrIndx 0 | page | OA
    let expect = (1 << 54) | (1 << 10) | (0b11 << 8) | (1 << 6) | (0 << 2) | 0b11 | 0x4000_1000;
    assert_eq!(d, expect);
}

#[test]
fn hyp_page_rx_is_read_only_and_executable() {
    let d = HypFormat::encode_leaf(PhysAddr(0x4000_2000), Stage1Attrs::normal(Perms::RX), 3);
    // AP[2] (RO) | AF | SH | AP[1] | page
    let expect = (1 << 10) | (0b11 << 8) | (1 << 7) | (1 << 6) | 0b11 | 0x4000_2000;
    assert_eq!(d, expect);
}

#[test]
fn hyp_page_rwx_has_neither_ap2_nor_xn() {
    let d = HypFormat::encode_leaf(PhysAddr(0x4000_3000), Stage1Attrs::normal(Perms::RWX), 3);
    let expect = (1 << 10) | (0b11 << 8) | (1 << 6) | 0b11 | 0x4000_3000;
    assert_eq!(d, expect);
}

#[test]
fn hyp_page_read_only_has_ap2_and_xn() {
    let d = HypFormat::encode_leaf(PhysAddr(0x4000_4000), Stage1Attrs::normal(Perms::R), 3);
    let expect = (1 << 54) | (1 << 10) | (0b11 << 8) | (1 << 7) | (1 << 6) | 0b11 | 0x4000_4000;
    assert_eq!(d, expect);
}

#[test]
fn hyp_level2_block_has_type_0b01() {
    let d = HypFormat::encode_leaf(PhysAddr(0x8020_0000), Stage1Attrs::normal(Perms::RW), 2);
    let expect = (1 << 54) | (1 << 10) | (0b11 << 8) | (1 << 6) | 0b01 | 0x8020_0000;
    assert_eq!(d, expect);
}

#[test]
fn hyp_level1_block_has_type_0b01() {
    let d = HypFormat::encode_leaf(PhysAddr(0x4000_0000), Stage1Attrs::normal(Perms::RWX), 1);
    let expect = (1 << 10) | (0b11 << 8) | (1 << 6) | 0b01 | 0x4000_0000;
    assert_eq!(d, expect);
}

#[test]
fn hyp_memory_types_use_hmair_indices_0_to_3() {
    let cases = [
        (MemType::NormalWb, 0u64),
        (MemType::NormalNc, 1),
        (MemType::DeviceNGnRE, 2),
        (MemType::DeviceNGnRnE, 3),
    ];
    for (mem, idx) in cases {
        let attrs = Stage1Attrs {
            perms: Perms::RW,
            mem,
        };
        let d = HypFormat::encode_leaf(PhysAddr(0x1000), attrs, 3);
        let expect = (1 << 54) | (1 << 10) | (0b11 << 8) | (1 << 6) | (idx << 2) | 0b11 | 0x1000;
        assert_eq!(d, expect, "{mem:?}");
    }
}

#[test]
fn hyp_device_is_execute_never_even_when_x_is_asked_for() {
    let attrs = Stage1Attrs {
        perms: Perms::RWX,
        mem: MemType::DeviceNGnRE,
    };
    let d = HypFormat::encode_leaf(PhysAddr(0x0900_0000), attrs, 3);
    let expect = (1 << 54) | (1 << 10) | (0b11 << 8) | (1 << 6) | (2 << 2) | 0b11 | 0x0900_0000;
    assert_eq!(d, expect);
    let Entry::Leaf { attrs: back, .. } = HypFormat::decode(d, 3) else {
        panic!()
    };
    assert_eq!(back, Stage1Attrs::device());
}

#[test]
fn hyp_never_sets_ng_pxn_ns_or_contiguous() {
    for mem in ALL_MEM {
        for perms in ALL_PERMS {
            for level in 1..=3 {
                let d = HypFormat::encode_leaf(PhysAddr(0), Stage1Attrs { perms, mem }, level);
                assert_eq!(d & ((1 << 11) | (1 << 53) | (1 << 5) | (1 << 52)), 0);
                assert_ne!(d & (1 << 6), 0, "AP[1] must be 1 in HYP mappings");
                assert_ne!(d & (1 << 10), 0, "AF always set");
            }
        }
    }
}

#[test]
fn hyp_decode_round_trips_every_meaningful_attribute_at_every_level() {
    for mem in ALL_MEM {
        for perms in ALL_PERMS {
            // R is implied; device memory is never executable.
            let mut want = perms.with(Perms::R);
            if mem.is_device() {
                want = want.without(Perms::X);
            }
            for level in 1..=3u8 {
                let oa = PhysAddr(0xab_c000_0000 & !(pt_core::entry_size(level) - 1));
                let d = HypFormat::encode_leaf(oa, Stage1Attrs { perms, mem }, level);
                assert_eq!(
                    HypFormat::decode(d, level),
                    Entry::Leaf {
                        oa,
                        attrs: Stage1Attrs { perms: want, mem }
                    },
                    "{mem:?} {perms:?} L{level}"
                );
                assert!(HypFormat::is_valid(d, level));
                assert!(!HypFormat::is_table(d, level));
            }
        }
    }
}

#[test]
fn hyp_unknown_attr_index_decodes_as_strongly_ordered() {
    // AttrIndx 5 selects HMAIR1.Attr5 = 0x00 (Strongly-ordered).
    let d = (1 << 10) | (0b11 << 8) | (1 << 6) | (5 << 2) | 0b11 | 0x1000;
    let Entry::Leaf { attrs, .. } = HypFormat::decode(d, 3) else {
        panic!()
    };
    assert_eq!(attrs.mem, MemType::DeviceNGnRnE);
}

// ---- stage 2 ----------------------------------------------------------------------------

#[test]
fn s2_ram_rwx_page() {
    let d = S2Format::encode_leaf(PhysAddr(0x4000_1000), Stage2Attrs::ram(Perms::RWX), 3);
    // AF | SH | S2AP=RW | MemAttr 0b1111 | page
    let expect = (1 << 10) | (0b11 << 8) | (0b11 << 6) | (0b1111 << 2) | 0b11 | 0x4000_1000;
    assert_eq!(d, expect);
}

#[test]
fn s2_ram_rw_is_xn() {
    let d = S2Format::encode_leaf(PhysAddr(0x4000_1000), Stage2Attrs::ram(Perms::RW), 3);
    let expect =
        (1 << 54) | (1 << 10) | (0b11 << 8) | (0b11 << 6) | (0b1111 << 2) | 0b11 | 0x4000_1000;
    assert_eq!(d, expect);
}

#[test]
fn s2_read_only_has_only_s2ap_read() {
    let d = S2Format::encode_leaf(PhysAddr(0x5000), Stage2Attrs::ram(Perms::RX), 3);
    let expect = (1 << 10) | (0b11 << 8) | (0b01 << 6) | (0b1111 << 2) | 0b11 | 0x5000;
    assert_eq!(d, expect);
}

#[test]
fn s2_no_access_has_s2ap_00_and_xn() {
    let d = S2Format::encode_leaf(PhysAddr(0x5000), Stage2Attrs::ram(Perms::NONE), 3);
    let expect = (1 << 54) | (1 << 10) | (0b11 << 8) | (0b1111 << 2) | 0b11 | 0x5000;
    assert_eq!(d, expect);
}

#[test]
fn s2_access_flag_follows_accessed() {
    let attrs = Stage2Attrs {
        accessed: false,
        ..Stage2Attrs::ram(Perms::RWX)
    };
    let d = S2Format::encode_leaf(PhysAddr(0x6000), attrs, 3);
    let expect = (0b11 << 8) | (0b11 << 6) | (0b1111 << 2) | 0b11 | 0x6000;
    assert_eq!(d, expect);
}

#[test]
fn s2_logged_is_software_bit_55() {
    let attrs = Stage2Attrs {
        logged: true,
        ..Stage2Attrs::ram(Perms::RX)
    };
    let d = S2Format::encode_leaf(PhysAddr(0x7000), attrs, 3);
    let expect = (1 << 55) | (1 << 10) | (0b11 << 8) | (0b01 << 6) | (0b1111 << 2) | 0b11 | 0x7000;
    assert_eq!(d, expect);
}

#[test]
fn s2_memattr_of_each_memory_type() {
    let cases = [
        (MemType::NormalWb, 0b1111u64, 0u64),
        (MemType::NormalNc, 0b0101, 0),
        (MemType::DeviceNGnRE, 0b0001, 1 << 54),
        (MemType::DeviceNGnRnE, 0b0000, 1 << 54),
    ];
    for (mem, memattr, xn) in cases {
        let attrs = Stage2Attrs {
            mem,
            ..Stage2Attrs::ram(Perms::RWX)
        };
        let d = S2Format::encode_leaf(PhysAddr(0x9000), attrs, 3);
        let expect = xn | (1 << 10) | (0b11 << 8) | (0b11 << 6) | (memattr << 2) | 0b11 | 0x9000;
        assert_eq!(d, expect, "{mem:?}");
    }
}

#[test]
fn s2_device_mapping_is_kvm_page_s2_device() {
    let d = S2Format::encode_leaf(PhysAddr(0x0800_0000), Stage2Attrs::device(true), 3);
    let expect =
        (1 << 54) | (1 << 10) | (0b11 << 8) | (0b11 << 6) | (0b0001 << 2) | 0b11 | 0x0800_0000;
    assert_eq!(d, expect);
    let ro = S2Format::encode_leaf(PhysAddr(0x0800_0000), Stage2Attrs::device(false), 3);
    assert_eq!(ro, expect & !(1 << 7));
}

#[test]
fn s2_blocks_at_level_1_and_2() {
    let l2 = S2Format::encode_leaf(PhysAddr(0x8020_0000), Stage2Attrs::ram(Perms::RWX), 2);
    assert_eq!(
        l2,
        (1 << 10) | (0b11 << 8) | (0b11 << 6) | (0b1111 << 2) | 0b01 | 0x8020_0000
    );
    let l1 = S2Format::encode_leaf(PhysAddr(0xc0_0000_0000), Stage2Attrs::ram(Perms::RWX), 1);
    assert_eq!(
        l1,
        (1 << 10) | (0b11 << 8) | (0b11 << 6) | (0b1111 << 2) | 0b01 | 0xc0_0000_0000
    );
}

#[test]
fn s2_decode_round_trips_every_field_at_every_level() {
    for mem in ALL_MEM {
        for perms in ALL_PERMS {
            for (accessed, logged) in [(false, false), (true, false), (false, true), (true, true)] {
                let attrs = Stage2Attrs {
                    perms,
                    mem,
                    accessed,
                    logged,
                };
                let mut want = attrs;
                if mem.is_device() {
                    want.perms = perms.without(Perms::X);
                }
                for level in 1..=3u8 {
                    let oa = PhysAddr(0xff_c000_0000 & !(pt_core::entry_size(level) - 1));
                    let d = S2Format::encode_leaf(oa, attrs, level);
                    assert_eq!(
                        S2Format::decode(d, level),
                        Entry::Leaf { oa, attrs: want },
                        "{attrs:?} L{level}"
                    );
                }
            }
        }
    }
}

#[test]
fn s2_foreign_memattr_values_decode_to_the_closest_type() {
    let leaf = |memattr: u64| (1 << 10) | (0b11 << 6) | (memattr << 2) | 0b11;
    let mem = |memattr| match S2Format::decode(leaf(memattr), 3) {
        Entry::Leaf { attrs, .. } => attrs.mem,
        e => panic!("{e:?}"),
    };
    assert_eq!(mem(0b0010), MemType::DeviceNGnRE);
    assert_eq!(mem(0b1010), MemType::NormalNc); // outer WT, inner WT
    assert_eq!(mem(0b1101), MemType::NormalNc); // outer WB, inner NC
}

// ---- both: types, tables, OA, steps -----------------------------------------------------

#[test]
fn table_descriptor_is_address_and_0b11_in_both_regimes() {
    for level in 1..=2 {
        let expect = 0xab_cdef_1000 | 0b11;
        assert_eq!(
            HypFormat::encode_table(PhysAddr(0xab_cdef_1000), level),
            expect
        );
        assert_eq!(
            S2Format::encode_table(PhysAddr(0xab_cdef_1000), level),
            expect
        );
        assert_eq!(
            HypFormat::decode(expect, level),
            Entry::Table(PhysAddr(0xab_cdef_1000))
        );
        assert_eq!(
            S2Format::decode(expect, level),
            Entry::Table(PhysAddr(0xab_cdef_1000))
        );
        assert!(HypFormat::is_table(expect, level) && S2Format::is_table(expect, level));
        assert!(HypFormat::is_valid(expect, level) && S2Format::is_valid(expect, level));
    }
}

#[test]
fn table_decode_ignores_hierarchical_attributes() {
    // APTable / XNTable set by someone else: the next-level address is still [39:12].
    let d = (0b11111u64 << 59) | 0x1234_5000 | 0b11;
    assert_eq!(S2Format::decode(d, 1), Entry::Table(PhysAddr(0x1234_5000)));
}

#[test]
fn invalid_descriptors() {
    for level in 1..=3 {
        assert_eq!(HypFormat::decode(0, level), Entry::Invalid);
        assert_eq!(S2Format::decode(S2Format::INVALID, level), Entry::Invalid);
        // valid bit clear, everything else set
        assert_eq!(S2Format::decode(!1u64, level), Entry::Invalid);
        assert!(!HypFormat::is_valid(!1u64, level));
    }
}

#[test]
fn level3_type_0b01_is_reserved_and_decodes_invalid() {
    let d = (1 << 10) | (0b11 << 6) | (0b1111 << 2) | 0b01 | 0x1000;
    assert_eq!(S2Format::decode(d, 3), Entry::Invalid);
    assert_eq!(HypFormat::decode(d, 3), Entry::Invalid);
    assert!(!S2Format::is_valid(d, 3));
    // The same bits one level up are a 2 MiB block... of a misaligned OA, which is masked.
    assert!(matches!(
        S2Format::decode(d, 2),
        Entry::Leaf {
            oa: PhysAddr(0),
            ..
        }
    ));
}

#[test]
fn level3_type_0b11_is_a_page_not_a_table() {
    let d = 0x2000 | 0b11;
    assert!(!S2Format::is_table(d, 3));
    assert!(matches!(S2Format::decode(d, 3), Entry::Leaf { .. }));
}

#[test]
fn blocks_only_at_levels_1_and_2() {
    for f in [HypFormat::block_allowed, S2Format::block_allowed] {
        assert!(!f(0));
        assert!(f(1));
        assert!(f(2));
        assert!(!f(3));
    }
    // A block-shaped descriptor at level 0 (which ARMv7 does not have) is not a leaf.
    assert_eq!(S2Format::decode(0x1 | (1 << 10), 0), Entry::Invalid);
    assert_eq!(S2Format::decode(0x3, 4), Entry::Invalid);
}

#[test]
fn output_address_is_40_bits_and_decode_masks_res0_bits() {
    assert_eq!(HypFormat::MAX_OA_BITS, 40);
    assert_eq!(S2Format::MAX_OA_BITS, 40);
    assert!(S2Format::oa_fits(PhysAddr((1 << 40) - 0x1000), 0x1000));
    assert!(!S2Format::oa_fits(PhysAddr(1 << 40), 0x1000));
    assert!(!HypFormat::oa_fits(PhysAddr((1 << 40) - 0x1000), 0x2000));
    // bits [51:40] are RES0 and bits below the block size are RES0 in a block
    let d = (1u64 << 45) | (1 << 41) | 0xff_ffe0_0000 | 0x1f_f000 | (1 << 10) | (0b11 << 6) | 0b01;
    match S2Format::decode(d, 2) {
        Entry::Leaf { oa, .. } => assert_eq!(oa, PhysAddr(0xff_ffe0_0000)),
        e => panic!("{e:?}"),
    }
    match S2Format::decode(d | 0b10, 3) {
        Entry::Leaf { oa, .. } => assert_eq!(oa, PhysAddr(0xff_ffff_f000)),
        e => panic!("{e:?}"),
    }
}

#[test]
fn encode_masks_oa_beyond_40_bits_the_walker_rejects_it_first() {
    // Documented: encode keeps [39:12] only; pt-core calls oa_fits before encoding.
    let d = S2Format::encode_leaf(PhysAddr((1 << 40) | 0x3000), Stage2Attrs::ram(Perms::R), 3);
    assert_eq!(d & 0xff_ffff_f000, 0x3000);
    assert_eq!(d & (0xfffu64 << 40), 0);
    assert_eq!(
        HypFormat::encode_table(PhysAddr((1 << 44) | 0x5000), 1),
        0x5000 | 0b11
    );
}

#[test]
fn leaf_step_is_the_entry_size() {
    for (level, size) in [(1u8, 1u64 << 30), (2, 1 << 21), (3, 1 << 12)] {
        assert_eq!(S2Format::leaf_step(level), Some(size));
        assert_eq!(HypFormat::leaf_step(level), Some(size));
        let a = S2Format::encode_leaf(PhysAddr(size * 3), Stage2Attrs::ram(Perms::RW), level);
        let b = S2Format::encode_leaf(PhysAddr(size * 4), Stage2Attrs::ram(Perms::RW), level);
        assert_eq!(a + size, b);
        let a = HypFormat::encode_leaf(PhysAddr(size * 3), Stage1Attrs::device(), level);
        let b = HypFormat::encode_leaf(PhysAddr(size * 4), Stage1Attrs::device(), level);
        assert_eq!(a + size, b);
    }
    assert_eq!(S2Format::leaf_step(0), None);
}

#[test]
fn contiguous_hint_is_bit_52_and_invisible_to_decode() {
    let d = S2Format::encode_leaf(PhysAddr(0x10_0000), Stage2Attrs::ram(Perms::RW), 3);
    let c = with_contiguous(d);
    assert_eq!(c, d | (1 << 52));
    assert!(is_contiguous(c) && !is_contiguous(d));
    assert_eq!(S2Format::decode(c, 3), S2Format::decode(d, 3));
}

#[test]
fn limits_and_names() {
    assert_eq!(HypFormat::LIMITS, pt_core::Limits::ARMV7_STAGE1);
    assert_eq!(S2Format::LIMITS, pt_core::Limits::ARMV7_STAGE2);
    assert_eq!(HypFormat::NAME, "armv7-hyp");
    assert_eq!(S2Format::NAME, "armv7-s2");
}

#[test]
fn descriptor_view_of_a_table_page() {
    #[repr(C, align(8))]
    struct Page([u8; 4096]);
    let mut page = Page([0; 4096]);
    page.0[8..16].copy_from_slice(&(0x4000_1000u64 | 0b11).to_le_bytes());
    let table = Descriptor::table(&page.0).unwrap();
    assert_eq!(table.len(), 512);
    assert_eq!(table[1], Descriptor(0x4000_1003));
    assert_eq!(table[0], Descriptor(0));
    assert!(Descriptor::table(&page.0[..12]).is_none());
}
