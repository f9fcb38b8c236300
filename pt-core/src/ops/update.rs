//! Changing the attributes of existing leaves (permission-only: no break needed).

use super::unmap::{FindPartial, PartialBlock};
use super::Error;
use crate::addr::PhysAddr;
use crate::format::{Entry, Format};
use crate::machine::{Maintenance, PageAllocator};
use crate::table::Entries;
use crate::tlb::TlbBatch;
use crate::walk::{LeafFlow, Visitor, Walker};

struct Update<'t, 'm, M: Maintenance, G> {
    f: G,
    tlb: &'t mut TlbBatch<'m, M>,
    changed: usize,
}

impl<F, P, M, G> Visitor<F, P> for Update<'_, '_, M, G>
where
    F: Format,
    P: PageAllocator,
    M: Maintenance,
    G: FnMut(u64, u8, PhysAddr, F::Attrs) -> F::Attrs,
{
    type Error = core::convert::Infallible;
    const TABLE_VISITS: bool = false;

    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Self::Error> {
        let level = run.level();
        for k in 0..run.len() {
            if let Entry::Leaf { oa, attrs } = run.decode(k) {
                let ia = run.ia(k);
                let new = (self.f)(ia, level, oa, attrs);
                if new != attrs {
                    // Same output address and size: a permission/attribute change, which
                    // needs no break, only the invalidation of the old entry.
                    run.set(k, F::encode_leaf(oa, new, level));
                    self.tlb.leaf(ia, level);
                    self.changed += 1;
                }
            }
        }
        Ok(LeafFlow::Done)
    }
}

/// Rewrites the attributes of every leaf in `[start, start + size)` with
/// `f(entry_ia, level, oa, old_attrs)` (`stage2_wp_range`, `kvm_mmu_write_protect_pt_masked`,
/// setting or clearing the access flag). Leaves whose attributes do not change are not written.
/// Each changed leaf gets one invalidation in `tlb`'s batch, synced before returning. Returns
/// the number of leaves changed.
///
/// This one visitor, at every level, is what KVM writes as a function per level: the seed's
/// `stage2_wp_ptes`, `stage2_wp_pmds` and `stage2_wp_puds` (write-protect the pages, the
/// 2 MiB blocks and the 1 GiB blocks of a range, each calling the next level down) are folded
/// into it, the walker doing the descent; pt-hyp's `Stage2::write_protect_range` passes the
/// "read-only and logged" change.
pub fn update<F, P, M, G>(
    w: &Walker<'_, F, P>,
    start: u64,
    size: u64,
    partial: PartialBlock,
    tlb: &mut TlbBatch<'_, M>,
    f: G,
) -> Result<usize, Error>
where
    F: Format,
    P: PageAllocator,
    M: Maintenance,
    G: FnMut(u64, u8, PhysAddr, F::Attrs) -> F::Attrs,
{
    let end = checked_end(w, start, size, partial)?;
    let mut v = Update { f, tlb, changed: 0 };
    let Ok(()) = w.walk(start, end, &mut v);
    v.tlb.sync();
    Ok(v.changed)
}

/// Validates `[start, start + size)` and, with [`PartialBlock::Refuse`], that no block straddles
/// it; returns its end.
fn checked_end<F: Format, P: PageAllocator>(
    w: &Walker<'_, F, P>,
    start: u64,
    size: u64,
    partial: PartialBlock,
) -> Result<u64, Error> {
    let end = super::check_input(start, size, w.geometry().ia_size())?;
    if partial == PartialBlock::Refuse {
        w.walk(start, end, &mut FindPartial)?;
    }
    Ok(end)
}

struct UpdateAttrs<'t, 'm, M: Maintenance, G> {
    f: G,
    tlb: &'t mut TlbBatch<'m, M>,
    changed: usize,
}

impl<F, P, M, G> Visitor<F, P> for UpdateAttrs<'_, '_, M, G>
where
    F: Format,
    P: PageAllocator,
    M: Maintenance,
    G: FnMut(F::Attrs) -> F::Attrs,
{
    type Error = core::convert::Infallible;
    const TABLE_VISITS: bool = false;

    #[inline]
    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Self::Error> {
        let level = run.level();
        // `f` sees only the attributes, so a leaf that equals the previous one plus the
        // format's leaf step (same attributes, next output address) gets the previous result
        // plus the step, without decoding, calling `f` or encoding.
        let step = F::leaf_step(level);
        let mut memo: Option<(u64, u64)> = None;
        let len = run.len();
        let mut k = 0;
        while k < len {
            // SAFETY: k < len = run.len().
            let old = unsafe { run.get_unchecked(k) };
            let new = match (memo, step) {
                (Some((prev_old, prev_new)), Some(step)) if old == prev_old.wrapping_add(step) => {
                    prev_new.wrapping_add(step)
                }
                _ => match F::decode(old, level) {
                    Entry::Leaf { oa, attrs } => F::encode_leaf(oa, (self.f)(attrs), level),
                    _ => {
                        memo = None;
                        k += 1;
                        continue;
                    }
                },
            };
            memo = Some((old, new));
            k += 1;
            if new == old {
                continue;
            }
            run.set(k - 1, new);
            self.tlb.leaf(run.ia(k - 1), level);
            self.changed += 1;
            // Once the batch is one whole-regime invalidation, the leaves that continue the
            // same pattern need only their store.
            if let (Some(step), true) = (step, self.tlb.covers_all()) {
                let (mut po, mut pn) = (old, new);
                let start = k;
                while k < len {
                    // SAFETY: k < len = run.len().
                    let o = unsafe { run.get_unchecked(k) };
                    if o != po.wrapping_add(step) {
                        break;
                    }
                    pn = pn.wrapping_add(step);
                    // SAFETY: as above.
                    unsafe { run.set_unchecked(k, pn) };
                    po = o;
                    k += 1;
                }
                self.changed += k - start;
                memo = Some((po, pn));
            }
        }
        Ok(LeafFlow::Done)
    }
}

/// [`update`] for a change that depends on the attributes alone (`stage2_wp_range`,
/// `kvm_mmu_wp_memory_region`): `f(old_attrs)` gives the new attributes. Runs of leaves with
/// the same attributes are rewritten with one add per leaf. Same TLB duty and return value as
/// [`update`].
pub fn update_attrs<F, P, M, G>(
    w: &Walker<'_, F, P>,
    start: u64,
    size: u64,
    partial: PartialBlock,
    tlb: &mut TlbBatch<'_, M>,
    f: G,
) -> Result<usize, Error>
where
    F: Format,
    P: PageAllocator,
    M: Maintenance,
    G: FnMut(F::Attrs) -> F::Attrs,
{
    let end = checked_end(w, start, size, partial)?;
    let mut v = UpdateAttrs { f, tlb, changed: 0 };
    let Ok(()) = w.walk(start, end, &mut v);
    v.tlb.sync();
    Ok(v.changed)
}
