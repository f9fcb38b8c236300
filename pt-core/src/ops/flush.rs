//! Data-cache maintenance of what a tree maps.

use crate::addr::VirtAddr;
use crate::format::{Entry, Format};
use crate::machine::{CacheOp, Maintenance, PageAllocator};
use crate::table::Entries;
use crate::walk::{LeafFlow, Visitor, Walker};

struct Clean<'m, M> {
    maint: &'m M,
    ops: usize,
}

impl<F: Format, P: PageAllocator, M: Maintenance> Visitor<F, P> for Clean<'_, M> {
    type Error = core::convert::Infallible;
    const TABLE_VISITS: bool = false;

    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Self::Error> {
        for k in 0..run.len() {
            if let Entry::Leaf { oa, .. } = run.decode(k) {
                let (s, e) = run.covered(k);
                let pa = crate::PhysAddr(oa.0 + (s - run.ia(k)));
                let va = VirtAddr(run.alloc().phys_to_virt(pa) as usize as u64);
                self.maint.dcache(CacheOp::CleanInvalidate, va, e - s);
                self.ops += 1;
            }
        }
        Ok(LeafFlow::Done)
    }
}

/// Cleans and invalidates the data cache of every mapped byte in `[start, end)`, one range
/// operation per leaf (a whole block at once where a block is mapped): `stage2_flush_vm`.
/// Returns the number of range operations issued. The range must be validated by the caller.
pub fn clean_dcache<F: Format, P: PageAllocator, M: Maintenance>(
    w: &Walker<'_, F, P>,
    start: u64,
    end: u64,
    maint: &M,
) -> usize {
    let mut v = Clean { maint, ops: 0 };
    let Ok(()) = w.walk(start, end, &mut v);
    v.ops
}
