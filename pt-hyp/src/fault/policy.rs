//! The pure "may this fault be mapped as a block?" policy of `user_mem_abort`
//! (`fault_supports_stage2_huge_mapping`).

use crate::memslot::Memslot;
use pt_core::{entry_size, Format, Geometry, Ipa, PAGE_SIZE};

/// Whether the fault at `ipa` in `slot` may be mapped by a leaf of `block` bytes (a power of
/// two): the aligned block around `ipa` lies inside the slot, the IPA and the host address
/// have the same offset within a block (so the block maps host memory of the slot only), and
/// the slot is not dirty logging (logging tracks pages). A page inside the slot is always
/// allowed (`fault_supports_stage2_huge_mapping`, and `logging_active` forcing a PTE).
pub fn block_allowed(slot: &Memslot, ipa: Ipa, block: u64) -> bool {
    if !block.is_power_of_two() || block < PAGE_SIZE || !slot.contains(ipa) {
        return false;
    }
    if block == PAGE_SIZE {
        return true;
    }
    if slot.logging() {
        return false;
    }
    let start = ipa.0 & !(block - 1);
    let Some(end) = start.checked_add(block) else {
        return false;
    };
    let same_offset = (slot.desc.ipa.0 ^ slot.desc.host.0) & (block - 1) == 0;
    start >= slot.desc.ipa.0 && end <= slot.end() && same_offset
}

/// The level of the largest leaf that may map the fault at `ipa` (3 = page): the first level
/// from `min_level` (the level of the invalid entry the walk stopped at, so no table is
/// replaced) and the tree's root level down, where format `F` allows a block and
/// [`block_allowed`] agrees (`user_mem_abort`'s choice between PUD, PMD and PTE).
pub fn leaf_level<F: Format>(geom: &Geometry, slot: &Memslot, ipa: Ipa, min_level: u8) -> u8 {
    (min_level.max(geom.start_level())..3)
        .find(|&l| F::block_allowed(l) && block_allowed(slot, ipa, entry_size(l)))
        .unwrap_or(3)
}
