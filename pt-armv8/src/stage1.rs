//! EL2 stage-1 descriptors: the hypervisor's own mappings, reached through `TTBR0_EL2`
//! (KVM's hyp page tables, `create_hyp_mappings` / `__create_hyp_mappings`).
//!
//! Leaf attribute fields (ARM ARM D5.3.3, EL2 regime without VHE):
//!
//! | bits | field | value written |
//! |---|---|---|
//! | `[4:2]` | `AttrIndx` | [`attr_index`] of the memory type ([`crate::memattr`]) |
//! | 5 | `NS` | 0 (ignored in the Non-secure EL2 regime) |
//! | 6 | `AP[1]` | 1: RES1 at EL2 (Linux's `PTE_HYP` = `PTE_USER`) |
//! | 7 | `AP[2]` | 1 when the mapping is read-only |
//! | `[9:8]` | `SH` | `0b11` inner shareable, for every memory type (see below) |
//! | 10 | `AF` | 1 always (the hypervisor takes no access-flag faults) |
//! | 11 | `nG` | 0 (EL2 has no ASIDs) |
//! | 52 | contiguous hint | 0 ([`crate::descriptor::with_contiguous`] sets it) |
//! | 53 | `PXN` | 0 (RES0 at EL2) |
//! | 54 | `XN` | 1 when not executable, and always for device memory |
//!
//! `SH` is `0b11` for device and non-cacheable memory as well: the architecture treats
//! those as outer shareable whatever `SH` says, so one constant serves all types (as Linux's
//! `PROT_DEFAULT` does).
//!
//! Encoding normalises two things, so `decode(encode(a)) == a` holds for attributes already in
//! that form: read permission is implied (stage-1 EL2 mappings are always readable), and device
//! memory is never executable.

use crate::descriptor::{
    self, disjoint, Kind, ADDR_MASK, AF, CONTIGUOUS, KIND_TABLE, SH_INNER, SH_MASK, SW_MASK, XN,
};
use crate::memattr::{attr_index, mem_from_attr_index};
use pt_core::{entry_size, Entry, Format, Limits, MemType, Perms, PhysAddr, Stage1Attrs};
use static_assertions::const_assert;

/// Bits `[4:2]`: `AttrIndx`, the `MAIR_EL2` byte selecting the memory type.
pub const ATTR_INDX_SHIFT: u32 = 2;
/// Mask of `AttrIndx`.
pub const ATTR_INDX_MASK: u64 = 0b111 << ATTR_INDX_SHIFT;
/// Bit 5: `NS`, left 0.
pub const NS: u64 = 1 << 5;
/// Bit 6: `AP[1]`, RES1 in the EL2 regime.
pub const AP1_RES1: u64 = 1 << 6;
/// Bit 7: `AP[2]`, read-only.
pub const AP2_RDONLY: u64 = 1 << 7;
/// Bit 11: `nG`, left 0.
pub const NG: u64 = 1 << 11;
/// Bit 53: `PXN`, RES0 at EL2, left 0.
pub const PXN: u64 = 1 << 53;

const_assert!(disjoint(&[
    KIND_TABLE,
    ATTR_INDX_MASK,
    NS,
    AP1_RES1,
    AP2_RDONLY,
    SH_MASK,
    AF,
    NG,
    ADDR_MASK,
    CONTIGUOUS,
    PXN,
    XN,
    SW_MASK
]));

/// The EL2 stage-1 format (tables reached through `TTBR0_EL2`), with [`Stage1Attrs`].
///
/// Serves KVM's hyp mappings: `create_hyp_mappings`, `create_hyp_io_mappings`, the identity
/// map of `kvm_mmu_init`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HypFormat;

/// The leaf attribute bits of `attrs` (everything but the address and the type bits).
#[inline]
pub fn leaf_attr_bits(attrs: Stage1Attrs) -> u64 {
    let mut bits = (attr_index(attrs.mem) << ATTR_INDX_SHIFT) | AP1_RES1 | SH_INNER | AF;
    if !attrs.perms.write() {
        bits |= AP2_RDONLY;
    }
    if !attrs.perms.exec() || attrs.mem.is_device() {
        bits |= XN;
    }
    bits
}

/// The attributes of the leaf descriptor `desc`. Unprogrammed `AttrIndx` values (4..=7, which
/// [`crate::regs::MAIR_EL2`] leaves 0) decode as Device-nGnRnE, what the hardware would use.
#[inline]
pub fn leaf_attrs(desc: u64) -> Stage1Attrs {
    let idx = (desc & ATTR_INDX_MASK) >> ATTR_INDX_SHIFT;
    let mem = mem_from_attr_index(idx).unwrap_or(MemType::DeviceNGnRnE);
    let mut perms = Perms::R;
    if desc & AP2_RDONLY == 0 {
        perms |= Perms::W;
    }
    if desc & XN == 0 {
        perms |= Perms::X;
    }
    Stage1Attrs { perms, mem }
}

impl Format for HypFormat {
    type Attrs = Stage1Attrs;
    const NAME: &'static str = "armv8-el2";
    const LIMITS: Limits = Limits::ARMV8_STAGE1;
    const MAX_OA_BITS: u8 = descriptor::OA_BITS;

    #[inline]
    fn block_allowed(level: u8) -> bool {
        level == 1 || level == 2
    }

    #[inline]
    fn decode(desc: u64, level: u8) -> Entry<Stage1Attrs> {
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
    fn encode_leaf(oa: PhysAddr, attrs: Stage1Attrs, level: u8) -> u64 {
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
pub(crate) mod tests {
    use super::*;
    use pt_core::geometry::LAST_LEVEL;

    const ALL_MEM: [MemType; 4] = [
        MemType::NormalWb,
        MemType::NormalNc,
        MemType::DeviceNGnRE,
        MemType::DeviceNGnRnE,
    ];

    /// The permissions with raw bits `bits` (R = 1, W = 2, X = 4).
    pub(crate) fn perms_from_bits(bits: u8) -> Perms {
        let mut p = Perms::NONE;
        for (bit, perm) in [(1, Perms::R), (2, Perms::W), (4, Perms::X)] {
            if bits & bit != 0 {
                p |= perm;
            }
        }
        p
    }

    fn leaf(oa: u64, attrs: Stage1Attrs, level: u8) -> u64 {
        HypFormat::encode_leaf(PhysAddr(oa), attrs, level)
    }

    #[test]
    fn page_normal_rw_is_af_inner_shareable_ap1_xn_idx0() {
        let expect =
            (1u64 << 54) | (1 << 10) | (0b11 << 8) | (0b01 << 6) | (0 << 2) | 0b11 | 0x4000_1000;
        assert_eq!(leaf(0x4000_1000, Stage1Attrs::normal(Perms::RW), 3), expect);
    }

    #[test]
    fn page_normal_rx_is_read_only_and_executable() {
        let expect = (1u64 << 10) | (0b11 << 8) | (0b11 << 6) | 0b11 | 0x8_0000_0000;
        assert_eq!(
            leaf(0x8_0000_0000, Stage1Attrs::normal(Perms::RX), 3),
            expect
        );
    }

    #[test]
    fn page_normal_rwx_has_no_xn_and_writable_ap() {
        let expect = (1u64 << 10) | (0b11 << 8) | (0b01 << 6) | 0b11 | 0x1000;
        assert_eq!(leaf(0x1000, Stage1Attrs::normal(Perms::RWX), 3), expect);
    }

    #[test]
    fn page_normal_read_only_is_ap2_and_xn() {
        let expect = (1u64 << 54) | (1 << 10) | (0b11 << 8) | (0b11 << 6) | 0b11 | 0x2000;
        assert_eq!(leaf(0x2000, Stage1Attrs::normal(Perms::R), 3), expect);
    }

    #[test]
    fn device_page_is_idx2_and_always_xn() {
        let expect =
            (1u64 << 54) | (1 << 10) | (0b11 << 8) | (0b01 << 6) | (2 << 2) | 0b11 | 0x0900_0000;
        assert_eq!(leaf(0x0900_0000, Stage1Attrs::device(), 3), expect);
        let rwx = Stage1Attrs {
            perms: Perms::RWX,
            mem: MemType::DeviceNGnRnE,
        };
        let expect =
            (1u64 << 54) | (1 << 10) | (0b11 << 8) | (0b01 << 6) | (3 << 2) | 0b11 | 0x0900_0000;
        assert_eq!(leaf(0x0900_0000, rwx, 3), expect);
        assert_eq!(
            HypFormat::decode(expect, 3),
            Entry::Leaf {
                oa: PhysAddr(0x0900_0000),
                attrs: Stage1Attrs {
                    perms: Perms::RW,
                    mem: MemType::DeviceNGnRnE
                }
            },
            "device execute permission is dropped"
        );
    }

    #[test]
    fn normal_nc_is_idx1() {
        let a = Stage1Attrs {
            perms: Perms::RW,
            mem: MemType::NormalNc,
        };
        let expect =
            (1u64 << 54) | (1 << 10) | (0b11 << 8) | (0b01 << 6) | (1 << 2) | 0b11 | 0x3000;
        assert_eq!(leaf(0x3000, a, 3), expect);
    }

    #[test]
    fn level2_block_is_bit1_clear_with_2m_address() {
        let expect = (1u64 << 54) | (1 << 10) | (0b11 << 8) | (0b01 << 6) | 0b01 | 0x4020_0000;
        assert_eq!(leaf(0x4020_0000, Stage1Attrs::normal(Perms::RW), 2), expect);
    }

    #[test]
    fn level1_block_is_bit1_clear_with_1g_address() {
        let expect = (1u64 << 54) | (1 << 10) | (0b11 << 8) | (0b01 << 6) | 0b01 | 0x80_4000_0000;
        assert_eq!(
            leaf(0x80_4000_0000, Stage1Attrs::normal(Perms::RW), 1),
            expect
        );
    }

    #[test]
    fn table_descriptor_is_address_and_0b11_only() {
        for level in 0..LAST_LEVEL {
            assert_eq!(
                HypFormat::encode_table(PhysAddr(0xffff_ffff_f000), level),
                0xffff_ffff_f000 | 0b11
            );
            assert_eq!(
                HypFormat::decode(0x4000_2003, level),
                Entry::Table(PhysAddr(0x4000_2000))
            );
            assert!(HypFormat::is_table(0x4000_2003, level));
            assert!(HypFormat::is_valid(0x4000_2003, level));
        }
        assert!(
            !HypFormat::is_table(0x4000_2003, 3),
            "level 3 0b11 is a page"
        );
    }

    #[test]
    fn blocks_only_at_levels_1_and_2_and_level0_leaf_is_invalid() {
        assert!(!HypFormat::block_allowed(0));
        assert!(HypFormat::block_allowed(1));
        assert!(HypFormat::block_allowed(2));
        assert!(!HypFormat::block_allowed(3));
        assert_eq!(leaf(0, Stage1Attrs::normal(Perms::RW), 0), 0);
        assert_eq!(HypFormat::decode(0x8000_0000_0401, 0), Entry::Invalid);
        assert_eq!(HypFormat::leaf_step(0), None);
    }

    #[test]
    fn invalid_decodes_as_invalid_at_every_level() {
        for level in 0..=LAST_LEVEL {
            assert_eq!(HypFormat::decode(HypFormat::INVALID, level), Entry::Invalid);
            assert_eq!(
                HypFormat::decode(0xffff_ffff_fffe, level),
                Entry::Invalid,
                "bit 0 clear"
            );
            assert!(!HypFormat::is_valid(0, level));
        }
    }

    #[test]
    fn leaf_round_trips_every_attribute_at_every_leaf_level() {
        for level in 1..=LAST_LEVEL {
            let oa = PhysAddr(0xabc << 30);
            for mem in ALL_MEM {
                for bits in 0..8u8 {
                    let perms = Perms::R.with(perms_from_bits(bits));
                    let perms = if mem.is_device() {
                        perms.without(Perms::X)
                    } else {
                        perms
                    };
                    let attrs = Stage1Attrs { perms, mem };
                    let d = leaf(oa.0, attrs, level);
                    assert_eq!(
                        HypFormat::decode(d, level),
                        Entry::Leaf { oa, attrs },
                        "{level} {attrs:?}"
                    );
                    assert!(HypFormat::is_valid(d, level));
                    assert!(!HypFormat::is_table(d, level));
                    let next = d + HypFormat::leaf_step(level).unwrap();
                    assert_eq!(
                        HypFormat::decode(next, level),
                        Entry::Leaf {
                            oa: PhysAddr(oa.0 + entry_size(level)),
                            attrs
                        }
                    );
                }
            }
        }
    }

    #[test]
    fn output_address_beyond_48_bits_is_masked_and_oa_fits_rejects_it() {
        let d = leaf(1 << 48 | 0x1000, Stage1Attrs::normal(Perms::RW), 3);
        assert_eq!(
            d & !0xfff & ((1 << 52) - 1),
            0x1000,
            "bit 48 dropped, not spilled"
        );
        assert!(!HypFormat::oa_fits(PhysAddr(1 << 48), 0x1000));
        assert!(HypFormat::oa_fits(PhysAddr((1 << 48) - 0x1000), 0x1000));
        // Decode ignores bits [51:48] (RES0 without FEAT_LPA).
        assert_eq!(
            HypFormat::decode(0xf_0000_4000_1443, 3),
            HypFormat::decode(0x4000_1443, 3)
        );
    }

    #[test]
    fn unaligned_block_address_keeps_only_the_block_bits() {
        let d = leaf(0x4020_1000, Stage1Attrs::normal(Perms::RW), 2);
        assert_eq!(d & ADDR_MASK, 0x4020_0000);
    }

    #[test]
    fn contiguous_hint_does_not_change_the_decoded_leaf() {
        let d = leaf(0x1000, Stage1Attrs::normal(Perms::RW), 3);
        assert_eq!(
            HypFormat::decode(descriptor::with_contiguous(d), 3),
            HypFormat::decode(d, 3)
        );
    }

    #[test]
    fn unprogrammed_attr_index_decodes_as_strongest_device() {
        let d = (5 << 2) | (1 << 10) | 0b11 | 0x1000;
        match HypFormat::decode(d, 3) {
            Entry::Leaf { attrs, .. } => assert_eq!(attrs.mem, MemType::DeviceNGnRnE),
            e => panic!("{e:?}"),
        }
    }
}
