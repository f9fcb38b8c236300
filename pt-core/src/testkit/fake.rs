//! A deliberately odd descriptor format, so that tests catch level mix-ups that the real LPAE
//! layout (the same at every level) would hide.
//!
//! - The low nibble is a per-level tag: `8 + level` for a table, `4 + level` for a leaf;
//!   anything else (0 included) is invalid. Decoding an entry at the wrong level gives
//!   `Invalid`.
//! - A leaf stores its output address in units of its own entry size, at bit 16: the same
//!   bits mean a different address at each level.
//! - A table stores its page number at bit 16 XOR a per-level constant.
//! - Attributes ([`FakeAttrs`]) live in bits [15:8].
//! - Blocks are allowed at levels 1 and 2; the walker gets no `leaf_step`, so every entry is
//!   encoded on its own.

use crate::addr::PhysAddr;
use crate::format::{Entry, Format};
use crate::geometry::{level_shift, Limits, Stage};

/// Attributes of the fake format: one byte, opaque to pt-core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FakeAttrs(pub u8);

/// The odd format with stage-2 limits up to 48 bits (levels 0..=3).
pub struct Fake;

const XOR: [u64; 4] = [0x1111, 0x2222, 0x3333, 0x4444];

impl Format for Fake {
    type Attrs = FakeAttrs;
    const NAME: &'static str = "fake";
    const LIMITS: Limits = Limits::ARMV8_STAGE2;
    const MAX_OA_BITS: u8 = 48;

    fn block_allowed(level: u8) -> bool {
        level == 1 || level == 2
    }

    fn decode(desc: u64, level: u8) -> Entry<FakeAttrs> {
        let tag = desc & 0xf;
        if level < 3 && tag == 8 + level as u64 {
            let pfn = (desc >> 16) ^ XOR[level as usize];
            Entry::Table(PhysAddr(pfn << 12))
        } else if tag == 4 + level as u64 {
            let oa = (desc >> 16) << level_shift(level);
            Entry::Leaf {
                oa: PhysAddr(oa),
                attrs: FakeAttrs((desc >> 8) as u8),
            }
        } else {
            Entry::Invalid
        }
    }

    fn is_table(desc: u64, level: u8) -> bool {
        desc & 0xf == 8 + level as u64
    }

    fn is_valid(desc: u64, level: u8) -> bool {
        !matches!(Self::decode(desc, level), Entry::Invalid)
    }

    fn encode_table(next: PhysAddr, level: u8) -> u64 {
        (((next.0 >> 12) ^ XOR[level as usize]) << 16) | (8 + level as u64)
    }

    fn encode_leaf(oa: PhysAddr, attrs: FakeAttrs, level: u8) -> u64 {
        ((oa.0 >> level_shift(level)) << 16) | ((attrs.0 as u64) << 8) | (4 + level as u64)
    }
}

/// The same odd format with hyp stage-1 limits, for the stage-1 paths of the checker.
pub struct FakeStage1;

impl Format for FakeStage1 {
    type Attrs = FakeAttrs;
    const NAME: &'static str = "fake-s1";
    const LIMITS: Limits = Limits {
        stage: Stage::Stage1,
        min_ia_bits: 25,
        max_ia_bits: 48,
        min_level: 0,
    };
    const MAX_OA_BITS: u8 = 48;
    fn block_allowed(level: u8) -> bool {
        Fake::block_allowed(level)
    }
    fn decode(desc: u64, level: u8) -> Entry<FakeAttrs> {
        Fake::decode(desc, level)
    }
    fn is_table(desc: u64, level: u8) -> bool {
        Fake::is_table(desc, level)
    }
    fn is_valid(desc: u64, level: u8) -> bool {
        Fake::is_valid(desc, level)
    }
    fn encode_table(next: PhysAddr, level: u8) -> u64 {
        Fake::encode_table(next, level)
    }
    fn encode_leaf(oa: PhysAddr, attrs: FakeAttrs, level: u8) -> u64 {
        Fake::encode_leaf(oa, attrs, level)
    }
}
