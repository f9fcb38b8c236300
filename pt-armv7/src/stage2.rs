//! Stage-2 descriptors (translation regime of VTTBR/VTCR): a guest's IPA -> PA mappings, as
//! KVM's `stage2_set_pte` / `stage2_set_pmd_huge` / `kvm_phys_addr_ioremap` build them.

use crate::descriptor::{self as d, Kind};
use crate::memattr::{mem_from_s2_memattr, s2_memattr};
use pt_core::{Entry, Format, Limits, Perms, PhysAddr, Stage2Attrs};

/// The ARMv7 LPAE stage-2 format (tables pointed to by VTTBR).
///
/// Leaf layout: MemAttr `[5:2]` ([`s2_memattr`]), S2AP `[7:6]` (bit 6 = read, bit 7 =
/// write), SH `[9:8]` = 0b11, AF (bit 10) = `accessed`, XN (bit 54) when `perms` lacks `X`
/// **or the memory is a device type** (KVM's `PAGE_S2_DEVICE` is execute-never too), software
/// bit 55 = `logged`.
///
/// Normalisation: a device mapping with `X` decodes without `X`; every other field
/// round-trips exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct S2Format;

impl S2Format {
    /// The leaf attribute bits (everything but the OA and the type bits) of `attrs`.
    #[inline]
    pub const fn attr_bits(attrs: Stage2Attrs) -> u64 {
        let mut bits = (s2_memattr(attrs.mem) << d::S2_MEMATTR_SHIFT) | d::SH_INNER;
        if attrs.perms.read() {
            bits |= d::S2AP_R;
        }
        if attrs.perms.write() {
            bits |= d::S2AP_W;
        }
        if !attrs.perms.exec() || attrs.mem.is_device() {
            bits |= d::XN;
        }
        if attrs.accessed {
            bits |= d::AF;
        }
        if attrs.logged {
            bits |= d::S2_LOGGED;
        }
        bits
    }

    /// The attributes encoded in a leaf descriptor.
    #[inline]
    pub const fn attrs_of(desc: u64) -> Stage2Attrs {
        let mut perms = Perms::NONE;
        if desc & d::S2AP_R != 0 {
            perms = perms.with(Perms::R);
        }
        if desc & d::S2AP_W != 0 {
            perms = perms.with(Perms::W);
        }
        if desc & d::XN == 0 {
            perms = perms.with(Perms::X);
        }
        Stage2Attrs {
            perms,
            mem: mem_from_s2_memattr((desc & d::S2_MEMATTR_MASK) >> d::S2_MEMATTR_SHIFT),
            accessed: desc & d::AF != 0,
            logged: desc & d::S2_LOGGED != 0,
        }
    }
}

impl Format for S2Format {
    type Attrs = Stage2Attrs;
    const NAME: &'static str = "armv7-s2";
    const LIMITS: Limits = Limits::ARMV7_STAGE2;
    const MAX_OA_BITS: u8 = d::OA_BITS;

    #[inline]
    fn block_allowed(level: u8) -> bool {
        d::block_allowed(level)
    }

    #[inline]
    fn decode(desc: u64, level: u8) -> Entry<Stage2Attrs> {
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
    fn encode_leaf(oa: PhysAddr, attrs: Stage2Attrs, level: u8) -> u64 {
        (oa.0 & d::leaf_oa_mask(level)) | Self::attr_bits(attrs) | d::leaf_type_bits(level)
    }

    #[inline]
    fn leaf_step(level: u8) -> Option<u64> {
        d::leaf_step(level)
    }
}
