//! Break-before-make as one primitive.

use crate::format::Format;
use crate::machine::{Maintenance, PageAllocator};
use crate::table::Entries;
use crate::tlb::TlbBatch;

/// Replaces entry `k` of `entries` with the leaf or invalid descriptor `new`, keeping
/// break-before-make: when the old entry is valid it is first made invalid, its TLB entries are
/// invalidated (with the rest of `tlb`'s batch) and the barriers are issued, and only then is
/// `new` written. An invalid old entry is simply overwritten (invalid -> valid needs no
/// invalidation).
///
/// Returns false, changing nothing, when `new` is a table descriptor: safe code cannot link a
/// table into a tree (see [`Entries::set_raw`]).
#[must_use = "false means `new` was a table descriptor and nothing was written"]
pub fn break_before_make<F: Format, P: PageAllocator, M: Maintenance>(
    entries: &mut Entries<'_, F, P>,
    k: usize,
    new: u64,
    tlb: &mut TlbBatch<'_, M>,
) -> bool {
    if F::is_table(new, entries.level()) {
        return false;
    }
    replace(entries, k, new, tlb);
    true
}

/// [`break_before_make`] for any descriptor, tables included (the crate's split links tables
/// it took from its table source).
pub(crate) fn replace<F: Format, P: PageAllocator, M: Maintenance>(
    entries: &mut Entries<'_, F, P>,
    k: usize,
    new: u64,
    tlb: &mut TlbBatch<'_, M>,
) {
    let old = entries.get(k);
    let level = entries.level();
    if F::is_valid(old, level) {
        entries.set(k, F::INVALID);
        if F::is_table(old, level) {
            tlb.table(entries.ia(k), level, true);
        } else {
            tlb.leaf(entries.ia(k), level);
        }
        tlb.sync();
    }
    entries.set(k, new);
}
