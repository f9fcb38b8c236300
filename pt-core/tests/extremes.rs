//! Every public constructor and helper of pt-core driven with extreme values: none panics,
//! each gives the typed result worked out here from the 4 KiB-granule rules (a level `L`
//! entry covers `2^(12 + 9 * (3 - L))` bytes; a tree walks `ceil((bits - 12) / 9)` levels, at
//! most four; a stage-2 root may be up to 16 concatenated tables).
//!
//! The test profile has overflow checks on (workspace `Cargo.toml`), so an arithmetic
//! overflow anywhere below is a panic, and a test failure.

use pt_core::{
    checked_entry_size, checked_level_shift, entry_size, level_shift, AddrRange, Address, Geometry,
    GeometryError, Ipa, Limits, PhysAddr, RangeError, Stage, VirtAddr,
};

const U64S: [u64; 10] = [
    0,
    1,
    0xfff,
    0x1000,
    0x1001,
    1 << 32,
    1 << 47,
    u64::MAX - 0x1fff,
    u64::MAX - 0xfff,
    u64::MAX,
];

#[test]
fn overflow_checks_are_on_in_test_builds() {
    let r = std::panic::catch_unwind(|| std::hint::black_box(u8::MAX) + 1);
    assert!(r.is_err(), "u8::MAX + 1 must panic under overflow checks");
}

#[test]
fn level_shift_and_entry_size_are_total_and_checked_versions_refuse_levels_past_3() {
    let shifts = [39, 30, 21, 12];
    for level in 0..=u8::MAX {
        let (shift, size) = (level_shift(level), entry_size(level));
        match level {
            0..=3 => {
                let want = shifts[usize::from(level)];
                assert_eq!((shift, size), (want, 1u64 << want));
                assert_eq!(checked_level_shift(level), Some(want));
                assert_eq!(checked_entry_size(level), Some(1u64 << want));
            }
            _ => {
                // No such level: taken as the last one, and the checked forms say so.
                assert_eq!((shift, size), (12, 0x1000), "level {level}");
                assert_eq!(checked_level_shift(level), None);
                assert_eq!(checked_entry_size(level), None);
            }
        }
    }
}

/// The (start level, root entries) a tree of `bits` bits has under `limits`, worked out
/// independently of `Geometry::new`, or `None` where no tree has that shape.
fn expected_shape(limits: Limits, bits: u8) -> Option<(u8, u32)> {
    if limits.min_level > 3 || bits <= 12 {
        return None;
    }
    let start = if limits.stage == Stage::Stage1 {
        let levels = (u32::from(bits) - 12).div_ceil(9);
        if levels > 4 {
            return None;
        }
        4 - levels
    } else {
        // Stage 2, the shortest walk (issue 17), from the ARM ARM's AArch64.S2InconsistentSL
        // ranges for the 4 KiB granule: level 2 takes 22..=34 bits, level 1 31..=43, level 0
        // 40..=48 (no concatenation at level 0). Take the deepest start level that fits.
        match bits {
            22..=34 => 2,
            35..=43 => 1,
            44..=48 => 0,
            _ => return None,
        }
    };
    if start < u32::from(limits.min_level) {
        return None;
    }
    let root_bits = u32::from(bits) - (12 + 9 * (3 - start));
    // At most 16 concatenated tables of 512 entries: 2^13.
    (root_bits <= 13).then(|| (start as u8, 1 << root_bits))
}

#[test]
fn geometry_new_is_total_for_hand_made_limits_and_every_size() {
    let edges = [
        0u8, 1, 12, 13, 21, 22, 25, 39, 40, 48, 49, 52, 63, 64, 65, 200, 255,
    ];
    for stage in [Stage::Stage1, Stage::Stage2] {
        for &min_ia_bits in &edges {
            for &max_ia_bits in &edges {
                for min_level in [0u8, 1, 2, 3, 4, 200, 255] {
                    let limits = Limits {
                        stage,
                        min_ia_bits,
                        max_ia_bits,
                        min_level,
                    };
                    for bits in 0..=u8::MAX {
                        let got = Geometry::new(limits, bits);
                        if bits < min_ia_bits || bits > max_ia_bits {
                            assert_eq!(
                                got,
                                Err(GeometryError::UnsupportedInputSize {
                                    bits,
                                    min: min_ia_bits,
                                    max: max_ia_bits
                                })
                            );
                            continue;
                        }
                        match expected_shape(limits, bits) {
                            None => assert_eq!(
                                got,
                                Err(GeometryError::NoTreeShape { bits, min_level }),
                                "{limits:?} {bits}"
                            ),
                            Some((start, entries)) => {
                                let g = got.unwrap();
                                assert_eq!(g.start_level(), start, "{limits:?} {bits}");
                                assert_eq!(g.root_entries(), entries as usize);
                                assert_eq!(g.ia_size(), 1u64 << bits);
                                assert_eq!(g.levels(), 4 - start);
                                assert_eq!(g.max_tables_per_map(), usize::from(3 - start));
                                assert_eq!(g.root_tables(), (entries as usize).div_ceil(512));
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn geometry_hand_made_limits_spot_values() {
    let any = |stage, min_level| Limits {
        stage,
        min_ia_bits: 0,
        max_ia_bits: u8::MAX,
        min_level,
    };
    let no = |bits, min_level| Err(GeometryError::NoTreeShape { bits, min_level });
    // 12 bits is a page offset and nothing to walk; 49 bits needs a fifth level.
    assert_eq!(Geometry::new(any(Stage::Stage1, 0), 12), no(12, 0));
    assert_eq!(Geometry::new(any(Stage::Stage1, 0), 0), no(0, 0));
    assert_eq!(Geometry::new(any(Stage::Stage2, 0), 49), no(49, 0));
    assert_eq!(Geometry::new(any(Stage::Stage2, 0), 255), no(255, 0));
    // There is no level 4.
    assert_eq!(Geometry::new(any(Stage::Stage1, 4), 32), no(32, 4));
    // 13 bits: one level-3 table of 2 entries.
    let g = Geometry::new(any(Stage::Stage1, 0), 13).unwrap();
    assert_eq!((g.start_level(), g.root_entries()), (3, 2));
    // 48 bits forced to start at level 2: 2^27 root entries, far more than 16 tables.
    assert_eq!(Geometry::new(any(Stage::Stage2, 2), 48), no(48, 2));
    // 34 bits starting at level 2: 2^13 entries, exactly 16 concatenated tables.
    let g = Geometry::new(any(Stage::Stage2, 2), 34).unwrap();
    assert_eq!((g.start_level(), g.root_tables()), (2, 16));
    assert_eq!(Geometry::new(any(Stage::Stage2, 2), 35), no(35, 2));
}

#[test]
fn geometry_index_and_entries_at_are_total_for_every_level() {
    let g = Geometry::new(Limits::ARMV8_STAGE2, 40).unwrap();
    for level in 0..=u8::MAX {
        for ia in U64S {
            let k = g.index(level, ia);
            assert!(k < g.entries_at(level), "level {level} ia {ia:#x}");
        }
    }
    // Levels past 3 index like level 3; level 1 is the 1024-entry concatenated root.
    assert_eq!(g.index(200, 0x1234_5000), 0x12345 & 511);
    assert_eq!(g.index(1, u64::MAX), 1023);
    assert_eq!(g.entries_at(255), 512);
}

#[test]
fn address_alignment_helpers_are_total() {
    for raw in U64S {
        let a = PhysAddr(raw);
        // 0 and non-powers of two are no alignment.
        for bad in [0, 3, 0x1001, u64::MAX] {
            assert!(!a.is_aligned(bad));
            assert_eq!(a.align_down(bad), None);
        }
        for shift in 0..64 {
            let align = 1u64 << shift;
            assert_eq!(a.is_aligned(align), raw % align == 0);
            assert_eq!(a.align_down(align), Some(PhysAddr(raw - raw % align)));
        }
        assert_eq!(
            a.checked_add(u64::MAX),
            raw.checked_add(u64::MAX).map(PhysAddr)
        );
    }
    assert_eq!(
        VirtAddr(u64::MAX).align_down(1 << 63),
        Some(VirtAddr(1 << 63))
    );
}

#[test]
fn addr_range_constructors_are_total() {
    for start in U64S {
        for size in U64S {
            for align in [0, 1, 3, 0x1000, 0x1001, 1 << 21, 1 << 63, u64::MAX] {
                let got = AddrRange::with_align(Ipa(start), size, align);
                let want = if !align.is_power_of_two() {
                    Err(RangeError::BadAlignment { align })
                } else if size == 0 {
                    Err(RangeError::Empty)
                } else if start % align != 0 {
                    Err(RangeError::Unaligned {
                        value: start,
                        align,
                    })
                } else if size % align != 0 {
                    Err(RangeError::Unaligned { value: size, align })
                } else if start.checked_add(size).is_none() {
                    Err(RangeError::Wraps)
                } else {
                    Ok((start, start + size))
                };
                assert_eq!(
                    got.map(|r| (r.start().0, r.end().0)),
                    want,
                    "{start:#x} {size:#x} {align:#x}"
                );
                if let Ok(r) = got {
                    assert_eq!(r.size(), size);
                    assert_eq!(r.pages(), size >> 12);
                    assert!(r.contains(Ipa(start)) && !r.contains(r.end()));
                    assert!(r.overlaps(&r));
                }
            }
            // from_bounds: start..end with end = the other value.
            let end = size;
            let got = AddrRange::from_bounds(Ipa(start), Ipa(end));
            if end < start {
                assert_eq!(got, Err(RangeError::Wraps));
            } else {
                assert_eq!(got, AddrRange::new(Ipa(start), end - start));
            }
        }
    }
}

/// A format whose output addresses are 64 bits wide: `oa_fits` must not shift by 64.
struct Wide;

impl pt_core::Format for Wide {
    type Attrs = u8;
    const NAME: &'static str = "wide";
    const LIMITS: Limits = Limits::ARMV8_STAGE1;
    const MAX_OA_BITS: u8 = 64;
    fn block_allowed(_: u8) -> bool {
        false
    }
    fn decode(_: u64, _: u8) -> pt_core::Entry<u8> {
        pt_core::Entry::Invalid
    }
    fn is_table(_: u64, _: u8) -> bool {
        false
    }
    fn is_valid(_: u64, _: u8) -> bool {
        false
    }
    fn encode_table(_: PhysAddr, _: u8) -> u64 {
        0
    }
    fn encode_leaf(_: PhysAddr, _: u8, _: u8) -> u64 {
        0
    }
}

#[test]
fn oa_fits_is_total_up_to_a_64_bit_output_size() {
    use pt_core::Format;
    for oa in U64S {
        for size in U64S {
            // Every range that does not wrap fits in 64 bits.
            let fits = oa.checked_add(size).is_some();
            assert_eq!(Wide::oa_fits(PhysAddr(oa), size), fits, "{oa:#x} {size:#x}");
        }
    }
}
