use crate::memattr::{mem_from_attr_index, s2_memattr};
use crate::regs::*;
use pt_core::{Geometry, Limits, MemType, PhysAddr, Stage};

fn s1(bits: u8) -> Geometry {
    Geometry::new(Limits::ARMV7_STAGE1, bits).unwrap()
}
fn s2(bits: u8) -> Geometry {
    Geometry::new(Limits::ARMV7_STAGE2, bits).unwrap()
}
/// A home-made limit that forces stage 2 to start at level 2 with concatenated tables.
fn s2_level2(bits: u8) -> Geometry {
    let l = Limits {
        stage: Stage::Stage2,
        min_ia_bits: 25,
        max_ia_bits: 40,
        min_level: 2,
    };
    Geometry::new(l, bits).unwrap()
}

/// Walk attributes from the ARM ARM: SH0 [13:12] = 0b11, ORGN0 [11:10] = 0b01,
/// IRGN0 [9:8] = 0b01.
const WALK: u32 = (0b11 << 12) | (0b01 << 10) | (0b01 << 8);

#[test]
fn hmair0_holds_wb_nc_device_strongly_ordered() {
    assert_eq!(HMAIR0, 0xff | (0x44 << 8) | (0x04 << 16) | (0x00 << 24));
    assert_eq!(HMAIR0, 0x0004_44ff);
    assert_eq!(HMAIR1, 0);
    for (mem, idx) in [
        (MemType::NormalWb, 0),
        (MemType::NormalNc, 1),
        (MemType::DeviceNGnRE, 2),
        (MemType::DeviceNGnRnE, 3),
    ] {
        assert_eq!(attr_index(mem), idx);
        assert_eq!(mem_from_attr_index(idx), mem);
        // the HMAIR byte at that index
        let byte = (HMAIR0 >> (8 * idx)) & 0xff;
        let want = match mem {
            MemType::NormalWb => 0xff,
            MemType::NormalNc => 0x44,
            MemType::DeviceNGnRE => 0x04,
            MemType::DeviceNGnRnE => 0x00,
        };
        assert_eq!(byte, want);
    }
    for idx in 4..8 {
        assert_eq!(mem_from_attr_index(idx), MemType::DeviceNGnRnE);
    }
}

#[test]
fn stage2_memattr_values() {
    assert_eq!(s2_memattr(MemType::NormalWb), 0b1111);
    assert_eq!(s2_memattr(MemType::NormalNc), 0b0101);
    assert_eq!(s2_memattr(MemType::DeviceNGnRE), 0b0001);
    assert_eq!(s2_memattr(MemType::DeviceNGnRnE), 0b0000);
}

#[test]
fn htcr_32_bit_hyp_va() {
    assert_eq!(htcr(&s1(32)), Ok((1 << 31) | WALK));
    assert_eq!(htcr(&s1(32)), Ok(0x8000_3500));
}

#[test]
fn htcr_t0sz_is_32_minus_bits() {
    for bits in 25..=32u8 {
        let t0sz = 32 - bits as u32;
        assert_eq!(htcr(&s1(bits)), Ok((1 << 31) | WALK | t0sz), "{bits}");
    }
    assert_eq!(htcr(&s1(30)), Ok(0x8000_3502));
    assert_eq!(htcr(&s1(25)), Ok(0x8000_3507));
}

#[test]
fn htcr_does_not_set_armv8_only_bit_23() {
    assert_eq!(htcr(&s1(32)).unwrap() & (1 << 23), 0);
    assert_eq!(HTCR_RES1_ARMV8, 1 << 23);
}

#[test]
fn htcr_rejects_sizes_t0sz_cannot_express() {
    let g = Geometry::new(Limits::ARMV7_STAGE2, 40).unwrap();
    assert_eq!(
        htcr(&g),
        Err(RegError::InputSize {
            bits: 40,
            min: 25,
            max: 32
        })
    );
}

#[test]
fn htcr_rejects_a_start_level_the_walk_would_not_use() {
    // 32-bit tree forced to start at level 2: HTCR.T0SZ = 0 always starts at level 1.
    assert_eq!(
        htcr(&s2_level2(32)),
        Err(RegError::StartLevel { bits: 32, level: 2 })
    );
}

#[test]
fn vtcr_40_bit_ipa_is_t0sz_minus_8_sl0_level1_s_set() {
    // T0SZ = -8 = 0b1000, S = T0SZ[3] = 1, SL0 = 0b01
    let expect = (1 << 31) | WALK | (0b01 << 6) | (1 << 4) | 0b1000;
    assert_eq!(vtcr(&s2(40)), Ok(expect));
    assert_eq!(vtcr(&s2(40)), Ok(0x8000_3558));
}

/// Issue 17: the shortest walk. 32-bit IPA: T0SZ = 32 - 32 = 0, S = 0; SL0 = 0b00 (level 2)
/// allows T0SZ -2..=7 (DDI 0406C B4.1.159), so the walk starts at level 2 with 2^(32 - 21) =
/// 2048 entries = four concatenated tables. Before, SL0 = 0b01 (level 1, 4 entries).
#[test]
fn vtcr_32_bit_ipa_is_t0sz_0_sl0_level2() {
    assert_eq!(vtcr(&s2(32)), Ok((1 << 31) | WALK | (0b00 << 6)));
    assert_eq!(vtcr(&s2(32)), Ok(0x8000_3500));
    // 31 bits: T0SZ = 1, SL0 = 0b00, two concatenated level-2 tables.
    assert_eq!(vtcr(&s2(31)), Ok((1 << 31) | WALK | (0b00 << 6) | 1));
    assert_eq!(vtcr(&s2(31)), Ok(0x8000_3501));
}

/// 34 bits is the last size SL0 = 0b00 takes (T0SZ = -2 = 0b1110, S = 1, 16 tables); 35 bits
/// (T0SZ = -3 = 0b1101) must start at level 1 (SL0 = 0b01, 32 entries).
#[test]
fn vtcr_34_and_35_bit_ipa_are_the_level2_to_level1_boundary() {
    assert_eq!(vtcr(&s2(34)), Ok(0x8000_351e));
    assert_eq!(s2(34).start_level(), 2);
    assert_eq!(s2(34).root_pages(), 16);
    assert_eq!(vtcr(&s2(35)), Ok(0x8000_355d));
    assert_eq!(s2(35).start_level(), 1);
    assert_eq!(s2(35).root_entries(), 32);
}

#[test]
fn vtcr_30_bit_ipa_starts_at_level2() {
    assert_eq!(vtcr(&s2(30)), Ok((1 << 31) | WALK | (0b00 << 6) | 2));
    assert_eq!(vtcr(&s2(25)), Ok((1 << 31) | WALK | 7));
}

#[test]
fn vtcr_t0sz_is_signed_and_s_is_its_sign() {
    for bits in 25..=40u8 {
        let v = vtcr(&s2(bits)).unwrap();
        let field = v & 0xf;
        let signed = ((field as i32) << 28) >> 28; // sign-extend 4 bits
        assert_eq!(signed, 32 - bits as i32, "{bits}");
        assert_eq!((v >> 4) & 1, field >> 3, "S must equal T0SZ[3] at {bits}");
        let sl0 = (v >> 6) & 0b11;
        // Shortest walk: level 2 (SL0 = 0b00) up to T0SZ = -2 (34 bits), level 1 above.
        assert_eq!(sl0, if bits <= 34 { 0b00 } else { 0b01 }, "{bits}");
        assert_eq!(v & !(0xff | WALK), 1 << 31);
    }
    // 36 bits: T0SZ = -4 = 0b1100
    assert_eq!(
        vtcr(&s2(36)),
        Ok((1 << 31) | WALK | (0b01 << 6) | (1 << 4) | 0b1100)
    );
    assert_eq!(vtcr(&s2(36)), Ok(0x8000_355c));
}

#[test]
fn vtcr_level2_start_with_concatenated_tables_is_legal_up_to_34_bits() {
    // SL0 = 0b00 allows T0SZ -2..=7: 32 bits at level 2 = four concatenated tables.
    assert_eq!(vtcr(&s2_level2(32)), Ok((1 << 31) | WALK));
    // 34 bits: T0SZ = -2 = 0b1110, S = 1, SL0 = 0b00 (16 concatenated level-2 tables)
    assert_eq!(
        vtcr(&s2_level2(34)),
        Ok((1 << 31) | WALK | (1 << 4) | 0b1110)
    );
    assert_eq!(vttbr_alignment(&s2_level2(34)), Ok(1 << (14 + 2)));
}

#[test]
fn vtcr_rejects_level0_and_oversized_inputs() {
    // ARMv8 stage 1 at 40 bits starts at level 0, which VTCR.SL0 cannot express.
    let g = Geometry::new(Limits::ARMV8_STAGE1, 40).unwrap();
    assert_eq!(vtcr(&g), Err(RegError::StartLevel { bits: 40, level: 0 }));
    let g = Geometry::new(Limits::ARMV8_STAGE2, 42).unwrap();
    assert_eq!(
        vtcr(&g),
        Err(RegError::InputSize {
            bits: 42,
            min: 25,
            max: 40
        })
    );
    assert_eq!(
        vttbr(PhysAddr(0), &g, 1),
        Err(RegError::InputSize {
            bits: 42,
            min: 25,
            max: 40
        })
    );
}

#[test]
fn vttbr_40_bit_needs_8k_alignment_for_two_concatenated_roots() {
    let g = s2(40);
    assert_eq!(vttbr_alignment(&g), Ok(1 << 13)); // x = 5 - (-8)
    assert_eq!(
        vttbr(PhysAddr(0x8000_2000), &g, 5),
        Ok((5u64 << 48) | 0x8000_2000)
    );
    assert_eq!(
        vttbr(PhysAddr(0x8000_1000), &g, 5),
        Err(RegError::Misaligned {
            addr: 0x8000_1000,
            align: 0x2000
        })
    );
}

#[test]
fn vttbr_alignment_follows_t0sz_and_sl0() {
    // SL0 = 0b00: x = 14 - T0SZ; SL0 = 0b01: x = 5 - T0SZ (DDI 0406C B4.1.160).
    assert_eq!(vttbr_alignment(&s2(32)), Ok(1 << 14)); // x = 14 - 0: four 4 KiB tables
    assert_eq!(vttbr_alignment(&s2(31)), Ok(1 << 13)); // x = 14 - 1: two tables
    assert_eq!(vttbr_alignment(&s2(30)), Ok(1 << 12)); // x = 14 - 2
    assert_eq!(vttbr_alignment(&s2(25)), Ok(1 << 7)); // 16 entries
    assert_eq!(vttbr_alignment(&s2(34)), Ok(1 << 16)); // x = 14 + 2: 16 tables
    assert_eq!(vttbr_alignment(&s2(36)), Ok(1 << 9)); // x = 5 + 4: 64 entries
    for bits in 25..=40 {
        let g = s2(bits);
        // The alignment is the root's size: entries * 8 bytes.
        assert_eq!(
            vttbr_alignment(&g),
            Ok(g.root_entries() as u64 * 8),
            "{bits}"
        );
    }
    // 32 bits: the root needs 16 KiB alignment.
    assert_eq!(
        vttbr(PhysAddr(0x8000_4000), &s2(32), 3),
        Ok((3u64 << 48) | 0x8000_4000)
    );
    assert_eq!(
        vttbr(PhysAddr(0x8000_2000), &s2(32), 3),
        Err(RegError::Misaligned {
            addr: 0x8000_2000,
            align: 0x4000
        })
    );
    assert_eq!(vttbr(PhysAddr(0x8000_0200), &s2(36), 0), Ok(0x8000_0200));
}

#[test]
fn vttbr_vmid_is_8_bits_at_48() {
    let g = s2(40);
    assert_eq!(
        vttbr(PhysAddr(0x4000_0000), &g, 255),
        Ok((0xffu64 << 48) | 0x4000_0000)
    );
    assert_eq!(
        vttbr(PhysAddr(0x4000_0000), &g, 256),
        Err(RegError::VmidTooLarge { vmid: 256 })
    );
    assert_eq!(vttbr_vmid((0xabu64 << 48) | 0x4000_0000), 0xab);
}

#[test]
fn vttbr_base_must_fit_40_bits() {
    let g = s2(40);
    assert_eq!(
        vttbr(PhysAddr(0xff_ffff_e000), &g, 1),
        Ok((1u64 << 48) | 0xff_ffff_e000)
    );
    assert_eq!(
        vttbr(PhysAddr(1 << 40), &g, 1),
        Err(RegError::AddressTooWide { addr: 1 << 40 })
    );
}

#[test]
fn httbr_is_the_page_aligned_40_bit_root() {
    assert_eq!(httbr(PhysAddr(0xff_ffff_f000)), Ok(0xff_ffff_f000));
    assert_eq!(httbr(PhysAddr(0x8000_0000)), Ok(0x8000_0000));
    assert_eq!(
        httbr(PhysAddr(0x8000_0800)),
        Err(RegError::Misaligned {
            addr: 0x8000_0800,
            align: 4096
        })
    );
    assert_eq!(
        httbr(PhysAddr(1 << 40)),
        Err(RegError::AddressTooWide { addr: 1 << 40 })
    );
}

#[test]
fn hsctlr_res1_bits_are_the_unk_sbop_bits_of_ddi_0406c() {
    // DDI 0406C.c, HSCTLR: every bit, high to low. 'c' = a control field, '1' = UNK/SBOP,
    // '0' = UNK/SBZP. Bit 5 (CP15BEN) is counted as a control here (see HSCTLR_RES1).
    #[rustfmt::skip]
    let layout: [(u32, char); 32] = [
        (31, '0'), (30, 'c'), (29, '1'), (28, '1'), (27, '0'), (26, '0'), (25, 'c'), (24, '0'),
        (23, '1'), (22, '1'), (21, 'c'), (20, '0'), (19, 'c'), (18, '1'), (17, '0'), (16, '1'),
        (15, '0'), (14, '0'), (13, '0'), (12, 'c'), (11, '1'), (10, '0'), (9, '0'), (8, '0'),
        (7, '0'), (6, '1'), (5, 'c'), (4, '1'), (3, '1'), (2, 'c'), (1, 'c'), (0, 'c'),
    ];
    let sbop = layout
        .iter()
        .filter(|&&(_, k)| k == '1')
        .fold(0u32, |m, &(bit, _)| m | 1 << bit);
    assert_eq!(HSCTLR_RES1, sbop);
    assert_eq!(HSCTLR_RES1, 0x30c5_0858);
    assert_eq!(
        HSCTLR_RES1 & HSCTLR_CP15BEN,
        0,
        "bit 5 is CP15BEN, a control bit"
    );
    // The example used to write 0x30c5_0818, the ARMv8 AArch32 RES1 set: bit 6 is the
    // difference, and ARMv7 requires it.
    assert_eq!(HSCTLR_RES1 ^ 0x30c5_0818, 1 << 6);
}

#[test]
fn hsctlr_mmu_on_is_res1_cp15ben_i_c_m() {
    assert_eq!(
        (HSCTLR_M, HSCTLR_C, HSCTLR_I, HSCTLR_WXN),
        (1, 1 << 2, 1 << 12, 1 << 19)
    );
    let expect = 0x30c5_0858 | (1 << 5) | (1 << 12) | (1 << 2) | 1;
    assert_eq!(hsctlr_mmu_on(), expect);
    assert_eq!(hsctlr_mmu_on(), 0x30c5_187d);
    assert_eq!(
        hsctlr_mmu_on() & (HSCTLR_A | HSCTLR_WXN | HSCTLR_EE | HSCTLR_TE),
        0
    );
}

#[test]
fn errors_display() {
    extern crate std;
    use std::string::ToString;
    assert_eq!(
        RegError::VmidTooLarge { vmid: 300 }.to_string(),
        "VMID 300 does not fit in 8 bits"
    );
}
