//! Memory types: the HMAIR indices of HYP stage 1 and the MemAttr field of stage 2.
//!
//! ARMv7 ARM B4.1.104 (MAIRn/HMAIRn, long-descriptor attribute encoding) and B3.6.2 / B3.8.x
//! (stage-2 MemAttr). ARMv7 calls Device-nGnRE simply "Device" and Device-nGnRnE
//! "Strongly-ordered"; the pt-core names are the ARMv8 ones.

use pt_core::MemType;

/// HMAIR attribute byte: Normal, inner and outer Write-Back, Read- and Write-Allocate.
pub const ATTR_NORMAL_WB: u8 = 0xff;
/// HMAIR attribute byte: Normal, inner and outer Non-cacheable.
pub const ATTR_NORMAL_NC: u8 = 0x44;
/// HMAIR attribute byte: Device memory (ARMv8 Device-nGnRE).
pub const ATTR_DEVICE: u8 = 0x04;
/// HMAIR attribute byte: Strongly-ordered memory (ARMv8 Device-nGnRnE).
pub const ATTR_STRONGLY_ORDERED: u8 = 0x00;

/// HMAIR index of [`MemType::NormalWb`].
pub const IDX_NORMAL_WB: u64 = 0;
/// HMAIR index of [`MemType::NormalNc`].
pub const IDX_NORMAL_NC: u64 = 1;
/// HMAIR index of [`MemType::DeviceNGnRE`].
pub const IDX_DEVICE_NGNRE: u64 = 2;
/// HMAIR index of [`MemType::DeviceNGnRnE`].
pub const IDX_DEVICE_NGNRNE: u64 = 3;

/// HMAIR0 (Attr0..Attr3, one byte each, Attr0 in bits `[7:0]`): Attr0 = 0xff Normal WB,
/// Attr1 = 0x44 Normal NC, Attr2 = 0x04 Device, Attr3 = 0x00 Strongly-ordered.
/// Program it before turning the HYP MMU on (`__do_hyp_init`).
pub const HMAIR0: u32 = (ATTR_NORMAL_WB as u32)
    | (ATTR_NORMAL_NC as u32) << 8
    | (ATTR_DEVICE as u32) << 16
    | (ATTR_STRONGLY_ORDERED as u32) << 24;

/// HMAIR1 (Attr4..Attr7): all 0x00, Strongly-ordered. Indices 4-7 are never written by this
/// crate; a descriptor that names one anyway is decoded as [`MemType::DeviceNGnRnE`], which is
/// what the hardware makes of it with this HMAIR1.
pub const HMAIR1: u32 = 0;

/// The HMAIR index (stage-1 AttrIndx) of `mem`.
#[inline]
pub const fn attr_index(mem: MemType) -> u64 {
    match mem {
        MemType::NormalWb => IDX_NORMAL_WB,
        MemType::NormalNc => IDX_NORMAL_NC,
        MemType::DeviceNGnRE => IDX_DEVICE_NGNRE,
        MemType::DeviceNGnRnE => IDX_DEVICE_NGNRNE,
    }
}

/// The memory type behind HMAIR index `idx` (0-7) with [`HMAIR0`]/[`HMAIR1`] programmed.
#[inline]
pub const fn mem_from_attr_index(idx: u64) -> MemType {
    match idx {
        IDX_NORMAL_WB => MemType::NormalWb,
        IDX_NORMAL_NC => MemType::NormalNc,
        IDX_DEVICE_NGNRE => MemType::DeviceNGnRE,
        _ => MemType::DeviceNGnRnE,
    }
}

/// Stage-2 MemAttr `[3:0]`: Normal, outer Write-Back (`[3:2]` = 0b11), inner Write-Back
/// (`[1:0]` = 0b11) (`PAGE_S2` in KVM).
pub const S2_MEMATTR_NORMAL_WB: u64 = 0b1111;
/// Stage-2 MemAttr: Normal, outer and inner Non-cacheable (0b01 / 0b01).
pub const S2_MEMATTR_NORMAL_NC: u64 = 0b0101;
/// Stage-2 MemAttr: Device (`[3:2]` = 0b00, `[1:0]` = 0b01), `PAGE_S2_DEVICE` in KVM.
pub const S2_MEMATTR_DEVICE: u64 = 0b0001;
/// Stage-2 MemAttr: Strongly-ordered (0b0000).
pub const S2_MEMATTR_STRONGLY_ORDERED: u64 = 0b0000;

/// The stage-2 MemAttr value of `mem`.
#[inline]
pub const fn s2_memattr(mem: MemType) -> u64 {
    match mem {
        MemType::NormalWb => S2_MEMATTR_NORMAL_WB,
        MemType::NormalNc => S2_MEMATTR_NORMAL_NC,
        MemType::DeviceNGnRE => S2_MEMATTR_DEVICE,
        MemType::DeviceNGnRnE => S2_MEMATTR_STRONGLY_ORDERED,
    }
}

/// The memory type of a stage-2 MemAttr value (`[3:0]`).
///
/// The four values this crate writes map back exactly. Of the others: `0b00xx` (Device) other
/// than Strongly-ordered decode as [`MemType::DeviceNGnRE`]; Normal memory that is not
/// write-back in both the inner and outer domain (write-through or mixed) decodes as
/// [`MemType::NormalNc`], the closest type that does not claim write-back caching.
#[inline]
pub const fn mem_from_s2_memattr(memattr: u64) -> MemType {
    match memattr & 0b1111 {
        S2_MEMATTR_NORMAL_WB => MemType::NormalWb,
        S2_MEMATTR_STRONGLY_ORDERED => MemType::DeviceNGnRnE,
        0b0001..=0b0011 => MemType::DeviceNGnRE,
        _ => MemType::NormalNc,
    }
}
