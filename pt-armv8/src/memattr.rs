//! Memory types: `MAIR_EL2` attributes and indices (stage 1) and `MemAttr` (stage 2).
//!
//! Stage 1 names a memory type indirectly: the leaf's `AttrIndx` selects one byte of
//! `MAIR_EL2`. This crate fixes the four bytes (ARM ARM D17 `MAIR_EL2`, Linux's `MT_*`
//! indices differ, the values are the same):
//!
//! | index | `MAIR_EL2` byte | type |
//! |---|---|---|
//! | 0 | `0xff` | Normal, inner/outer write-back non-transient, read- and write-allocate |
//! | 1 | `0x44` | Normal, inner/outer non-cacheable |
//! | 2 | `0x04` | Device-nGnRE |
//! | 3 | `0x00` | Device-nGnRnE |
//!
//! Stage 2 names the type directly in the leaf's `MemAttr[3:0]` (ARM ARM D5.5.5 "Stage 2
//! memory region type and cacheability attributes"): `0b1111` Normal outer+inner write-back,
//! `0b0101` Normal outer+inner non-cacheable, `0b0001` Device-nGnRE, `0b0000` Device-nGnRnE.
//! It combines with the guest's own stage-1 type, the stronger winning (KVM's
//! `PAGE_S2` / `PAGE_S2_DEVICE`).

use pt_core::MemType;

/// `MAIR_EL2` attribute byte: Normal, inner and outer write-back non-transient, read- and
/// write-allocate.
pub const MAIR_NORMAL_WB: u8 = 0xff;
/// `MAIR_EL2` attribute byte: Normal, inner and outer non-cacheable.
pub const MAIR_NORMAL_NC: u8 = 0x44;
/// `MAIR_EL2` attribute byte: Device-nGnRE.
pub const MAIR_DEVICE_NGNRE: u8 = 0x04;
/// `MAIR_EL2` attribute byte: Device-nGnRnE.
pub const MAIR_DEVICE_NGNRNE: u8 = 0x00;

/// `AttrIndx` of [`MemType::NormalWb`].
pub const IDX_NORMAL_WB: u64 = 0;
/// `AttrIndx` of [`MemType::NormalNc`].
pub const IDX_NORMAL_NC: u64 = 1;
/// `AttrIndx` of [`MemType::DeviceNGnRE`].
pub const IDX_DEVICE_NGNRE: u64 = 2;
/// `AttrIndx` of [`MemType::DeviceNGnRnE`].
pub const IDX_DEVICE_NGNRNE: u64 = 3;

/// The `MAIR_EL2` value that gives every `AttrIndx` this crate writes its meaning: program it
/// before turning the EL2 MMU on (KVM: `__kvm_hyp_init` copies the host's `MAIR_EL1`).
pub const MAIR_EL2: u64 = (MAIR_NORMAL_WB as u64) << (8 * IDX_NORMAL_WB)
    | (MAIR_NORMAL_NC as u64) << (8 * IDX_NORMAL_NC)
    | (MAIR_DEVICE_NGNRE as u64) << (8 * IDX_DEVICE_NGNRE)
    | (MAIR_DEVICE_NGNRNE as u64) << (8 * IDX_DEVICE_NGNRNE);

/// The stage-1 `AttrIndx` (index into [`MAIR_EL2`]) of `mem`.
#[inline]
pub const fn attr_index(mem: MemType) -> u64 {
    match mem {
        MemType::NormalWb => IDX_NORMAL_WB,
        MemType::NormalNc => IDX_NORMAL_NC,
        MemType::DeviceNGnRE => IDX_DEVICE_NGNRE,
        MemType::DeviceNGnRnE => IDX_DEVICE_NGNRNE,
    }
}

/// The memory type `AttrIndx` `idx` selects in [`MAIR_EL2`], or `None` for the indices 4..=7
/// this crate leaves unprogrammed (0, Device-nGnRnE, in [`MAIR_EL2`]).
#[inline]
pub const fn mem_from_attr_index(idx: u64) -> Option<MemType> {
    match idx {
        IDX_NORMAL_WB => Some(MemType::NormalWb),
        IDX_NORMAL_NC => Some(MemType::NormalNc),
        IDX_DEVICE_NGNRE => Some(MemType::DeviceNGnRE),
        IDX_DEVICE_NGNRNE => Some(MemType::DeviceNGnRnE),
        _ => None,
    }
}

/// Stage-2 `MemAttr`: Normal, outer and inner write-back.
pub const S2_NORMAL_WB: u64 = 0b1111;
/// Stage-2 `MemAttr`: Normal, outer and inner non-cacheable.
pub const S2_NORMAL_NC: u64 = 0b0101;
/// Stage-2 `MemAttr`: Device-nGnRE.
pub const S2_DEVICE_NGNRE: u64 = 0b0001;
/// Stage-2 `MemAttr`: Device-nGnRnE.
pub const S2_DEVICE_NGNRNE: u64 = 0b0000;

/// The stage-2 `MemAttr[3:0]` of `mem`.
#[inline]
pub const fn s2_memattr(mem: MemType) -> u64 {
    match mem {
        MemType::NormalWb => S2_NORMAL_WB,
        MemType::NormalNc => S2_NORMAL_NC,
        MemType::DeviceNGnRE => S2_DEVICE_NGNRE,
        MemType::DeviceNGnRnE => S2_DEVICE_NGNRNE,
    }
}

/// The memory type of stage-2 `MemAttr[3:0]` `attr`, or `None` for the encodings this crate
/// never writes (Device-nGRE/GRE, write-through, mixed cacheability, reserved).
#[inline]
pub const fn mem_from_s2_memattr(attr: u64) -> Option<MemType> {
    match attr {
        S2_NORMAL_WB => Some(MemType::NormalWb),
        S2_NORMAL_NC => Some(MemType::NormalNc),
        S2_DEVICE_NGNRE => Some(MemType::DeviceNGnRE),
        S2_DEVICE_NGNRNE => Some(MemType::DeviceNGnRnE),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [MemType; 4] = [
        MemType::NormalWb,
        MemType::NormalNc,
        MemType::DeviceNGnRE,
        MemType::DeviceNGnRnE,
    ];

    #[test]
    fn mair_el2_holds_the_four_architected_attribute_bytes() {
        // ARM ARM MAIR_EL2: Attr<n> is byte n. 0xff = Normal WB RW-alloc inner+outer,
        // 0x44 = Normal NC inner+outer, 0b0000_0100 = Device-nGnRE, 0 = Device-nGnRnE.
        let expect = 0xffu64 | (0x44 << 8) | (0b0000_0100 << 16);
        assert_eq!(MAIR_EL2, expect);
        assert_eq!(MAIR_EL2, 0x0004_44ff);
    }

    #[test]
    fn every_memory_type_has_its_own_index_selecting_its_mair_byte() {
        let bytes = [0xffu64, 0x44, 0x04, 0x00];
        for (i, mem) in ALL.into_iter().enumerate() {
            let idx = attr_index(mem);
            assert_eq!(idx, i as u64);
            assert_eq!((MAIR_EL2 >> (8 * idx)) & 0xff, bytes[i]);
            assert_eq!(mem_from_attr_index(idx), Some(mem));
        }
        for idx in 4..8 {
            assert_eq!(mem_from_attr_index(idx), None);
        }
    }

    #[test]
    fn stage2_memattr_values_are_the_architected_ones() {
        // MemAttr[3:2] = outer, [1:0] = inner: 0b11 WB, 0b01 NC; 0b00xx device: xx = 00 nGnRnE,
        // 01 nGnRE.
        assert_eq!(s2_memattr(MemType::NormalWb), (0b11 << 2) | 0b11);
        assert_eq!(s2_memattr(MemType::NormalNc), (0b01 << 2) | 0b01);
        assert_eq!(s2_memattr(MemType::DeviceNGnRE), 0b01);
        assert_eq!(s2_memattr(MemType::DeviceNGnRnE), 0b00);
        for mem in ALL {
            assert_eq!(mem_from_s2_memattr(s2_memattr(mem)), Some(mem));
        }
        for unknown in [0b0010, 0b0011, 0b1010, 0b0100, 0b1101] {
            assert_eq!(mem_from_s2_memattr(unknown), None);
        }
    }
}
