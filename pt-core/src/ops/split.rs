//! Splitting a live block into a table of smaller leaves, keeping the mapping.

use super::bbm::replace;
use super::{Error, TableSource};
use crate::format::{Entry, Format};
use crate::geometry::ENTRIES_PER_TABLE;
use crate::machine::{Maintenance, PageAllocator};
use crate::table::Entries;
use crate::tlb::TlbBatch;
use crate::walk::{LeafFlow, Visitor, Walker};

struct Split<'s, 't, 'm, S, M: Maintenance> {
    src: &'s mut S,
    tlb: &'t mut TlbBatch<'m, M>,
    result: Result<bool, Error>,
}

impl<F: Format, P: PageAllocator, S: TableSource, M: Maintenance> Visitor<F, P>
    for Split<'_, '_, '_, S, M>
{
    type Error = Error;
    const TABLE_VISITS: bool = false;

    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Error> {
        let level = run.level();
        let Entry::Leaf { oa, attrs } = run.decode(0) else {
            return Err(Error::NotMapped {
                ia: run.covered(0).0,
            });
        };
        if level == 3 {
            self.result = Ok(false);
            return Ok(LeafFlow::Done);
        }
        let available = self.src.available();
        let t = self.src.take().ok_or(Error::CacheExhausted {
            needed: 1,
            available,
        })?;
        let alloc = run.alloc();
        let ia = run.ia(0);
        // SAFETY: `t` is a zeroed page just taken from the source, not yet in any tree, with
        // 512 entries; it is filled before it becomes reachable.
        let mut child = unsafe {
            Entries::<F, P>::new(
                alloc,
                t,
                alloc.phys_to_virt(t),
                0,
                ENTRIES_PER_TABLE,
                level + 1,
                ia,
                ia,
                ia + run.entry_size(),
            )
        };
        child.fill_leaves(0, ENTRIES_PER_TABLE, oa, attrs);
        // Block -> table: a different valid descriptor, so break before make.
        replace(run, 0, F::encode_table(t, level), self.tlb);
        self.result = Ok(true);
        Ok(LeafFlow::Done)
    }
}

/// Replaces the block that maps `ia` with a table of 512 leaves one level down that map the
/// same addresses with the same attributes, with break-before-make (block -> invalid ->
/// invalidate -> table). A 1 GiB block becomes 2 MiB blocks, a 2 MiB block pages. Returns
/// `Ok(false)` when `ia` is already mapped by a page. The new table comes from `src`.
pub fn split_block<F: Format, P: PageAllocator, S: TableSource, M: Maintenance>(
    w: &Walker<'_, F, P>,
    ia: u64,
    src: &mut S,
    tlb: &mut TlbBatch<'_, M>,
) -> Result<bool, Error> {
    if ia >= w.geometry().ia_size() {
        return Err(Error::InputTooLarge {
            end: ia,
            limit: w.geometry().ia_size(),
        });
    }
    let page = ia & !(crate::PAGE_SIZE - 1);
    if src.available() == 0 {
        // Decide before touching anything: is there a block to split at all?
        if let Some(t) = super::translate(w, ia) {
            if t.level < 3 {
                return Err(Error::CacheExhausted {
                    needed: 1,
                    available: 0,
                });
            }
        }
    }
    let mut v = Split {
        src,
        tlb,
        result: Ok(false),
    };
    w.walk(page, page + crate::PAGE_SIZE, &mut v)?;
    if v.result == Ok(true) {
        // The new table is visible to every walker before this returns.
        v.tlb.maint().barrier(crate::Barrier::DsbIshSt);
    }
    v.result
}
