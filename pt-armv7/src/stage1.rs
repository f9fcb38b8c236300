//! HYP-mode stage-1 descriptors (translation regime of HTTBR/HTCR): the hypervisor's own
//! mappings, as KVM's `create_hyp_mappings` / `create_hyp_io_mappings` build them.

use crate::descriptor::{self as d, Kind};
use crate::memattr::{attr_index, mem_from_attr_index};
use pt_core::{Entry, Format, Limits, Perms, PhysAddr, Stage1Attrs};

/// The ARMv7 LPAE HYP stage-1 format (tables pointed to by HTTBR).
///
/// Leaf layout: AttrIndx `[4:2]` = HMAIR index ([`attr_index`]), AP\[1\] (bit 6) = 1 always
/// (required for HYP mappings), AP\[2\] (bit 7) = read-only when `perms` lacks `W`,
/// SH `[9:8]` = 0b11, AF (bit 10) = 1, nG (bit 11) = 0, XN (bit 54) when `perms` lacks `X`
/// **or the memory is a device type** (device mappings are always execute-never), PXN (bit 53)
/// = 0 (RES0 at HYP). Read permission is implied: decode always reports `R`.
///
/// Normalisation, so the round-trip law holds for every attribute a caller can mean: a
/// `Stage1Attrs` without `R` decodes with `R`, and a device mapping with `X` decodes without
/// `X`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HypFormat;

impl HypFormat {
    /// The leaf attribute bits (everything but the OA and the type bits) of `attrs`.
    #[inline]
    pub const fn attr_bits(attrs: Stage1Attrs) -> u64 {
        let mut bits = (attr_index(attrs.mem) << d::ATTR_INDX_SHIFT) | d::AP1 | d::SH_INNER | d::AF;
        if !attrs.perms.write() {
            bits |= d::AP2_RO;
        }
        if !attrs.perms.exec() || attrs.mem.is_device() {
            bits |= d::XN;
        }
        bits
    }

    /// The attributes encoded in a leaf descriptor.
    #[inline]
    pub const fn attrs_of(desc: u64) -> Stage1Attrs {
        let mut perms = Perms::R;
        if desc & d::AP2_RO == 0 {
            perms = perms.with(Perms::W);
        }
        if desc & d::XN == 0 {
            perms = perms.with(Perms::X);
        }
        let mem = mem_from_attr_index((desc & d::ATTR_INDX_MASK) >> d::ATTR_INDX_SHIFT);
        Stage1Attrs { perms, mem }
    }
}

impl Format for HypFormat {
    type Attrs = Stage1Attrs;
    const NAME: &'static str = "armv7-hyp";
    const LIMITS: Limits = Limits::ARMV7_STAGE1;
    const MAX_OA_BITS: u8 = d::OA_BITS;

    #[inline]
    fn block_allowed(level: u8) -> bool {
        d::block_allowed(level)
    }

    #[inline]
    fn decode(desc: u64, level: u8) -> Entry<Stage1Attrs> {
        match d::kind(desc, level) {
            Kind::Invalid => Entry::Invalid,
            Kind::Table => Entry::Table(PhysAddr(desc & d::OA_MASK)),
            Kind::Leaf => Entry::Leaf {
                oa: PhysAddr(desc & d::leaf_oa_mask(level)),
                attrs: Self::attrs_of(desc),
            },
        }
    }

    #[inline]
    fn is_table(desc: u64, level: u8) -> bool {
        matches!(d::kind(desc, level), Kind::Table)
    }

    #[inline]
    fn any_table(entries: &[u64], level: u8) -> bool {
        d::any_table(entries, level)
    }

    #[inline]
    fn is_valid(desc: u64, level: u8) -> bool {
        !matches!(d::kind(desc, level), Kind::Invalid)
    }

    #[inline]
    fn encode_table(next: PhysAddr, _level: u8) -> u64 {
        d::table(next.0)
    }

    #[inline]
    fn encode_leaf(oa: PhysAddr, attrs: Stage1Attrs, level: u8) -> u64 {
        (oa.0 & d::leaf_oa_mask(level)) | Self::attr_bits(attrs) | d::leaf_type_bits(level)
    }

    #[inline]
    fn leaf_step(level: u8) -> Option<u64> {
        d::leaf_step(level)
    }
}
