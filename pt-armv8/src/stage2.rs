//! Stage-2 descriptors: a guest's IPA-to-PA translation, reached through `VTTBR_EL2` (KVM's
//! stage-2 tables: `kvm_alloc_stage2_pgd`, `stage2_set_pte`, `kvm_set_s2pte_readonly`).
//!
//! Leaf attribute fields (ARM ARM D5.3.3 "Attribute fields in stage 2 VMSAv8-64 Block and
//! Page descriptors", ARMv8.0):
//!
//! | bits | field | value written |
//! |---|---|---|
//! | `[5:2]` | `MemAttr` | [`s2_memattr`] of the memory type ([`crate::memattr`]) |
//! | 6 | `S2AP[0]` | 1 when the guest may read |
//! | 7 | `S2AP[1]` | 1 when the guest may write |
//! | `[9:8]` | `SH` | `0b11` inner shareable, for every memory type (device and non-cacheable are outer shareable whatever `SH` says) |
//! | 10 | `AF` | [`Stage2Attrs::accessed`] |
//! | 52 | contiguous hint | 0 ([`crate::descriptor::with_contiguous`] sets it) |
//! | 54 | `XN` | 1 when the guest may not execute |
//! | 55 | software | [`Stage2Attrs::logged`]: made read-only by dirty logging ([`LOGGED`]) |
//!
//! Every field round-trips: `decode(encode(a)) == a` for every [`Stage2Attrs`] whose memory
//! type is one of the four [`pt_core::MemType`]s.

use crate::descriptor::{
    self, disjoint, Kind, ADDR_MASK, AF, CONTIGUOUS, KIND_TABLE, SH_INNER, SH_MASK, XN,
};
use crate::memattr::{mem_from_s2_memattr, s2_memattr};
use pt_core::{entry_size, Entry, Format, Limits, MemType, Perms, PhysAddr, Stage2Attrs};
use static_assertions::const_assert;

/// Bits `[5:2]`: `MemAttr`.
pub const MEMATTR_SHIFT: u32 = 2;
/// Mask of `MemAttr`.
pub const MEMATTR_MASK: u64 = 0b1111 << MEMATTR_SHIFT;
/// Bit 6: `S2AP[0]`, guest read access.
pub const S2AP_R: u64 = 1 << 6;
/// Bit 7: `S2AP[1]`, guest write access.
pub const S2AP_W: u64 = 1 << 7;
/// Bit 55 (first software bit): the leaf was made read-only by dirty logging
/// (`kvm_mmu_wp_memory_region`) and the fault path may make it writable again after marking the
/// page dirty.
pub const LOGGED: u64 = 1 << 55;

const_assert!(disjoint(&[
    KIND_TABLE,
    MEMATTR_MASK,
    S2AP_R,
    S2AP_W,
    SH_MASK,
    AF,
    ADDR_MASK,
    CONTIGUOUS,
    XN,
    LOGGED
]));

/// The stage-2 format (tables reached through `VTTBR_EL2`), with [`Stage2Attrs`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct S2Format;

/// The leaf attribute bits of `attrs` (everything but the address and the type bits).
#[inline]
pub fn leaf_attr_bits(attrs: Stage2Attrs) -> u64 {
    let mut bits = (s2_memattr(attrs.mem) << MEMATTR_SHIFT) | SH_INNER;
    if attrs.perms.read() {
        bits |= S2AP_R;
    }
    if attrs.perms.write() {
        bits |= S2AP_W;
    }
    if !attrs.perms.exec() {
        bits |= XN;
    }
    if attrs.accessed {
        bits |= AF;
    }
    if attrs.logged {
        bits |= LOGGED;
    }
    bits
}

/// The attributes of the leaf descriptor `desc`. `MemAttr` encodings this crate never writes
/// decode by their class: device (`0b00xx`) as Device-nGnRE if gathering or reordering is
/// allowed (`xx` != 0), Normal as non-cacheable unless both halves are write-back.
#[inline]
pub fn leaf_attrs(desc: u64) -> Stage2Attrs {
    let attr = (desc & MEMATTR_MASK) >> MEMATTR_SHIFT;
    let mem = match mem_from_s2_memattr(attr) {
        Some(mem) => mem,
        None if attr >> 2 == 0 => MemType::DeviceNGnRE,
        None => MemType::NormalNc,
    };
    let mut perms = Perms::NONE;
    if desc & S2AP_R != 0 {
        perms |= Perms::R;
    }
    if desc & S2AP_W != 0 {
        perms |= Perms::W;
    }
    if desc & XN == 0 {
        perms |= Perms::X;
    }
    Stage2Attrs {
        perms,
        mem,
        accessed: desc & AF != 0,
        logged: desc & LOGGED != 0,
    }
}

impl Format for S2Format {
    type Attrs = Stage2Attrs;
    const NAME: &'static str = "armv8-s2";
    const LIMITS: Limits = Limits::ARMV8_STAGE2;
    const MAX_OA_BITS: u8 = descriptor::OA_BITS;

    #[inline]
    fn block_allowed(level: u8) -> bool {
        level == 1 || level == 2
    }

    #[inline]
    fn decode(desc: u64, level: u8) -> Entry<Stage2Attrs> {
        match descriptor::kind(desc, level) {
            Kind::Invalid => Entry::Invalid,
            Kind::Table(pa) => Entry::Table(pa),
            Kind::Leaf(oa) => Entry::Leaf {
                oa,
                attrs: leaf_attrs(desc),
            },
        }
    }

    #[inline]
    fn is_table(desc: u64, level: u8) -> bool {
        descriptor::is_table(desc, level)
    }

    #[inline]
    fn any_table(entries: &[u64], level: u8) -> bool {
        descriptor::any_table(entries, level)
    }

    #[inline]
    fn is_valid(desc: u64, level: u8) -> bool {
        descriptor::is_valid(desc, level)
    }

    #[inline]
    fn encode_table(next: PhysAddr, level: u8) -> u64 {
        descriptor::table(next, level)
    }

    /// A block (levels 1, 2) or page (level 3). At level 0 (no blocks with the 4 KiB granule)
    /// the result is the invalid descriptor; output-address bits outside the level's
    /// `[47:n]` are dropped (check [`Format::oa_fits`] first).
    #[inline]
    fn encode_leaf(oa: PhysAddr, attrs: Stage2Attrs, level: u8) -> u64 {
        match descriptor::leaf_base(oa, level) {
            Some(base) => base | leaf_attr_bits(attrs),
            None => Self::INVALID,
        }
    }

    #[inline]
    fn leaf_step(level: u8) -> Option<u64> {
        descriptor::leaf_allowed(level).then(|| entry_size(level))
    }
}

#[cfg(test)]
// Expected values spell out every field, zero ones included.
#[allow(clippy::identity_op)]
mod tests {
    use super::*;
    use crate::stage1::tests::perms_from_bits;
    use pt_core::geometry::LAST_LEVEL;

    const ALL_MEM: [MemType; 4] = [
        MemType::NormalWb,
        MemType::NormalNc,
        MemType::DeviceNGnRE,
        MemType::DeviceNGnRnE,
    ];

    fn leaf(oa: u64, attrs: Stage2Attrs, level: u8) -> u64 {
        S2Format::encode_leaf(PhysAddr(oa), attrs, level)
    }

    #[test]
    fn ram_page_rw_is_s2ap_11_memattr_1111_xn() {
        let expect = (1u64 << 54)
            | (1 << 10)
            | (0b11 << 8)
            | (0b11 << 6)
            | (0b1111 << 2)
            | 0b11
            | 0x4000_1000;
        assert_eq!(leaf(0x4000_1000, Stage2Attrs::ram(Perms::RW), 3), expect);
    }

    #[test]
    fn ram_page_rwx_has_no_xn() {
        let expect = (1u64 << 10) | (0b11 << 8) | (0b11 << 6) | (0b1111 << 2) | 0b11 | 0x4000_1000;
        assert_eq!(leaf(0x4000_1000, Stage2Attrs::ram(Perms::RWX), 3), expect);
    }

    #[test]
    fn read_only_page_is_s2ap_01() {
        let expect =
            (1u64 << 54) | (1 << 10) | (0b11 << 8) | (0b01 << 6) | (0b1111 << 2) | 0b11 | 0x5000;
        assert_eq!(leaf(0x5000, Stage2Attrs::ram(Perms::R), 3), expect);
    }

    #[test]
    fn write_only_page_is_s2ap_10() {
        let expect =
            (1u64 << 54) | (1 << 10) | (0b11 << 8) | (0b10 << 6) | (0b1111 << 2) | 0b11 | 0x5000;
        assert_eq!(leaf(0x5000, Stage2Attrs::ram(Perms::W), 3), expect);
    }

    #[test]
    fn device_page_is_memattr_0001_and_xn() {
        let expect = (1u64 << 54)
            | (1 << 10)
            | (0b11 << 8)
            | (0b11 << 6)
            | (0b0001 << 2)
            | 0b11
            | 0x0900_0000;
        assert_eq!(leaf(0x0900_0000, Stage2Attrs::device(true), 3), expect);
        let expect_ro = (1u64 << 54)
            | (1 << 10)
            | (0b11 << 8)
            | (0b01 << 6)
            | (0b0001 << 2)
            | 0b11
            | 0x0900_0000;
        assert_eq!(leaf(0x0900_0000, Stage2Attrs::device(false), 3), expect_ro);
    }

    #[test]
    fn nc_and_ngnrne_memattr() {
        let nc = Stage2Attrs {
            mem: MemType::NormalNc,
            ..Stage2Attrs::ram(Perms::RW)
        };
        let expect =
            (1u64 << 54) | (1 << 10) | (0b11 << 8) | (0b11 << 6) | (0b0101 << 2) | 0b11 | 0x6000;
        assert_eq!(leaf(0x6000, nc, 3), expect);
        let strong = Stage2Attrs {
            mem: MemType::DeviceNGnRnE,
            ..Stage2Attrs::ram(Perms::RW)
        };
        let expect = (1u64 << 54) | (1 << 10) | (0b11 << 8) | (0b11 << 6) | 0b11 | 0x6000;
        assert_eq!(leaf(0x6000, strong, 3), expect);
    }

    #[test]
    fn access_flag_clear_when_not_accessed() {
        let a = Stage2Attrs {
            accessed: false,
            ..Stage2Attrs::ram(Perms::RW)
        };
        let expect = (1u64 << 54) | (0b11 << 8) | (0b11 << 6) | (0b1111 << 2) | 0b11 | 0x7000;
        assert_eq!(leaf(0x7000, a, 3), expect);
    }

    #[test]
    fn logged_is_software_bit_55() {
        let a = Stage2Attrs {
            logged: true,
            ..Stage2Attrs::ram(Perms::R)
        };
        let expect = (1u64 << 55)
            | (1 << 54)
            | (1 << 10)
            | (0b11 << 8)
            | (0b01 << 6)
            | (0b1111 << 2)
            | 0b11
            | 0x7000;
        assert_eq!(leaf(0x7000, a, 3), expect);
    }

    #[test]
    fn blocks_at_level_1_and_2() {
        let expect2 = (1u64 << 54)
            | (1 << 10)
            | (0b11 << 8)
            | (0b11 << 6)
            | (0b1111 << 2)
            | 0b01
            | 0x4020_0000;
        assert_eq!(leaf(0x4020_0000, Stage2Attrs::ram(Perms::RW), 2), expect2);
        let expect1 = (1u64 << 54)
            | (1 << 10)
            | (0b11 << 8)
            | (0b11 << 6)
            | (0b1111 << 2)
            | 0b01
            | 0x40_0000_0000;
        assert_eq!(
            leaf(0x40_0000_0000, Stage2Attrs::ram(Perms::RW), 1),
            expect1
        );
        assert!(!S2Format::block_allowed(0));
        assert!(!S2Format::block_allowed(3));
        assert_eq!(leaf(0, Stage2Attrs::ram(Perms::RW), 0), 0);
    }

    #[test]
    fn table_descriptor_round_trips_at_levels_0_to_2() {
        for level in 0..LAST_LEVEL {
            let d = S2Format::encode_table(PhysAddr(0x1234_5678_9000), level);
            assert_eq!(d, 0x1234_5678_9000 | 0b11);
            assert_eq!(
                S2Format::decode(d, level),
                Entry::Table(PhysAddr(0x1234_5678_9000))
            );
        }
    }

    #[test]
    fn every_attribute_round_trips_at_every_leaf_level() {
        for level in 1..=LAST_LEVEL {
            let oa = PhysAddr(0x7fff_c000_0000);
            for mem in ALL_MEM {
                for bits in 0..8u8 {
                    for accessed in [false, true] {
                        for logged in [false, true] {
                            let attrs = Stage2Attrs {
                                perms: perms_from_bits(bits),
                                mem,
                                accessed,
                                logged,
                            };
                            let d = leaf(oa.0, attrs, level);
                            assert_eq!(
                                S2Format::decode(d, level),
                                Entry::Leaf { oa, attrs },
                                "{level} {attrs:?}"
                            );
                            assert!(S2Format::is_valid(d, level));
                            assert!(!S2Format::is_table(d, level));
                            let next = d + S2Format::leaf_step(level).unwrap();
                            assert_eq!(
                                S2Format::decode(next, level),
                                Entry::Leaf {
                                    oa: PhysAddr(oa.0 + entry_size(level)),
                                    attrs
                                }
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn invalid_and_reserved_encodings_decode_as_invalid() {
        for level in 0..=LAST_LEVEL {
            assert_eq!(S2Format::decode(S2Format::INVALID, level), Entry::Invalid);
            assert_eq!(
                S2Format::decode(LOGGED | 0x4000_0000, level),
                Entry::Invalid,
                "software bit alone"
            );
        }
        assert_eq!(
            S2Format::decode(0x4000_07fd, 3),
            Entry::Invalid,
            "level 3 0b01 reserved"
        );
        assert_eq!(
            S2Format::decode(0x80_0000_07fd, 0),
            Entry::Invalid,
            "no level 0 blocks"
        );
    }

    #[test]
    fn output_address_beyond_48_bits_is_masked_and_oa_fits_rejects_it() {
        let d = leaf(0xffff_0000_0000_1000, Stage2Attrs::ram(Perms::RW), 3);
        assert_eq!(d & ADDR_MASK, 0x1000);
        assert_eq!(
            d & (0xffu64 << 56),
            0,
            "high address bits do not leak into software bits"
        );
        assert!(!S2Format::oa_fits(PhysAddr(0xffff_ffff_f000), 0x2000));
    }

    #[test]
    fn unknown_memattr_decodes_by_class() {
        let gre = (0b0011 << 2) | (1 << 10) | 0b11;
        let wt = (0b1010 << 2) | (1 << 10) | 0b11;
        match (S2Format::decode(gre, 3), S2Format::decode(wt, 3)) {
            (Entry::Leaf { attrs: a, .. }, Entry::Leaf { attrs: b, .. }) => {
                assert_eq!(a.mem, MemType::DeviceNGnRE);
                assert_eq!(b.mem, MemType::NormalNc);
            }
            e => panic!("{e:?}"),
        }
    }
}
