//! Mapping: plan (count tables, find conflicts), reserve, then apply without failure.

use super::{check_input, Error, Reserve, TableSource};
use crate::addr::PhysAddr;
use crate::format::{Entry, Format};
use crate::geometry::entry_size;
use crate::machine::{Barrier, Maintenance, PageAllocator};
use crate::table::Entries;
use crate::walk::{LeafFlow, Visitor, Walker};

/// What to map: `[ia, ia + size)` to `[oa, oa + size)` with `attrs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRequest<A> {
    /// First input address (page aligned).
    pub ia: u64,
    /// Size in bytes (page aligned, non-zero).
    pub size: u64,
    /// First output address (page aligned).
    pub oa: PhysAddr,
    /// Attributes of every entry written.
    pub attrs: A,
    /// The lowest level at which a leaf may be written: 1 allows 1 GiB blocks, 2 allows 2 MiB
    /// blocks, 3 maps pages only. A block is written only where the format allows one at that
    /// level and the range covers the whole entry with input and output addresses aligned to it.
    pub leaf_level: u8,
    /// Output-address size of the regime (at most the format's); the output range must fit.
    pub oa_bits: u8,
}

impl<A> MapRequest<A> {
    fn oa_at(&self, ia: u64) -> u64 {
        self.oa.0 + (ia - self.ia)
    }
}

fn leaf_ok<F: Format>(req_leaf_level: u8, level: u8, s: u64, e: u64, oa: u64) -> bool {
    let size = entry_size(level);
    e - s == size
        && (level == 3 || (F::block_allowed(level) && level >= req_leaf_level && oa % size == 0))
}

/// Tables needed to map `[s, e)` (inside one invalid entry of `level`) from `oa`.
fn missing_tables<F: Format>(leaf_level: u8, level: u8, s: u64, e: u64, oa: u64) -> usize {
    if leaf_ok::<F>(leaf_level, level, s, e, oa) {
        return 0;
    }
    if level + 1 == 3 {
        return 1;
    }
    // The children: a partial head, whole children, a partial tail. Every whole child needs
    // the same number of tables (their output addresses differ by multiples of the child size,
    // so they agree on every alignment below it): count one and multiply, so planning costs
    // O(levels) per entry, not one call per child entry.
    let child = entry_size(level + 1);
    let full_start = s.next_multiple_of(child).min(e);
    let full_end = (e - e % child).max(full_start);
    let mut n = 1;
    if s < full_start {
        n += missing_tables::<F>(leaf_level, level + 1, s, full_start, oa);
    }
    if full_start < full_end {
        let whole = ((full_end - full_start) / child) as usize;
        let one = missing_tables::<F>(
            leaf_level,
            level + 1,
            full_start,
            full_start + child,
            oa + (full_start - s),
        );
        n += whole * one;
    }
    if full_end < e {
        n += missing_tables::<F>(leaf_level, level + 1, full_end, e, oa + (full_end - s));
    }
    n
}

struct Plan<'r, A> {
    req: &'r MapRequest<A>,
    needed: usize,
}

impl<F: Format, P: PageAllocator> Visitor<F, P> for Plan<'_, F::Attrs> {
    type Error = Error;
    const TABLE_VISITS: bool = false;

    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Error> {
        let level = run.level();
        for k in 0..run.len() {
            let (s, e) = run.covered(k);
            let want = self.req.oa_at(s);
            match run.decode(k) {
                Entry::Invalid => {
                    self.needed += missing_tables::<F>(self.req.leaf_level, level, s, e, want)
                }
                Entry::Leaf { oa, attrs } => {
                    if oa.0 + (s - run.ia(k)) != want || attrs != self.req.attrs {
                        return Err(Error::Conflict { ia: s });
                    }
                }
                Entry::Table(_) => {}
            }
        }
        Ok(LeafFlow::Done)
    }
}

struct Apply<'r, 's, A, S, M> {
    req: &'r MapRequest<A>,
    src: &'s mut S,
    maint: &'r M,
    /// Level of the first table this walk created: everything below it is known invalid.
    fresh: Option<u8>,
}

impl<F: Format, P: PageAllocator, S: TableSource, M: Maintenance> Visitor<F, P>
    for Apply<'_, '_, F::Attrs, S, M>
{
    type Error = Error;

    #[inline]
    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Error> {
        let level = run.level();
        let fresh = self.fresh.is_some_and(|f| level > f);
        let len = run.len();
        let mut k = 0;
        while k < len {
            if !fresh && F::is_valid(run.get(k), level) {
                // Identical to what we would write (the plan checked).
                k += 1;
                continue;
            }
            let (s, e) = run.covered(k);
            let oa = self.req.oa_at(s);
            if leaf_ok::<F>(self.req.leaf_level, level, s, e, oa) {
                let last_full = if run.fully_covered(len - 1) {
                    len
                } else {
                    len - 1
                };
                let mut n = 1;
                if fresh {
                    n = last_full.max(k + 1) - k;
                } else {
                    while k + n < last_full && !F::is_valid(run.get(k + n), level) {
                        n += 1;
                    }
                }
                run.fill_leaves(k, n, PhysAddr(oa), self.req.attrs);
                k += n;
            } else {
                let available = self.src.available();
                let t = self.src.take().ok_or(Error::CacheExhausted {
                    needed: 1,
                    available,
                })?;
                // The table's zeroing (by the allocator, and the reserve's link word restored
                // to zero just now) must be visible to every table walker before the table
                // is: `DSB ISHST` orders those stores before the descriptor store (KVM 5.10+
                // publishes tables with a store-release for the same reason).
                self.maint.barrier(Barrier::DsbIshSt);
                // Invalid -> table: no break, no invalidation needed.
                run.set(k, F::encode_table(t, level));
                if self.fresh.is_none() {
                    self.fresh = Some(level);
                }
                return Ok(LeafFlow::DescendNew(k));
            }
        }
        Ok(LeafFlow::Done)
    }

    fn table_post(&mut self, entry: &mut Entries<'_, F, P>) -> Result<(), Error> {
        if self.fresh == Some(entry.level()) {
            self.fresh = None;
        }
        Ok(())
    }
}

fn check<F: Format, P: PageAllocator>(
    w: &Walker<'_, F, P>,
    req: &MapRequest<F::Attrs>,
) -> Result<u64, Error> {
    let end = check_input(req.ia, req.size, w.geometry().ia_size())?;
    if req.oa.0 % crate::PAGE_SIZE != 0 {
        return Err(Error::UnalignedOutput { oa: req.oa.0 });
    }
    let bits = req.oa_bits.min(F::MAX_OA_BITS);
    match req.oa.0.checked_add(req.size) {
        Some(oend) if oend <= 1u64 << bits => Ok(end),
        oend => Err(Error::OutputTooLarge {
            end: oend.unwrap_or(u64::MAX),
            bits,
        }),
    }
}

fn plan<F: Format, P: PageAllocator>(
    w: &Walker<'_, F, P>,
    req: &MapRequest<F::Attrs>,
    end: u64,
) -> Result<usize, Error> {
    let mut p = Plan { req, needed: 0 };
    w.walk(req.ia, end, &mut p)?;
    Ok(p.needed)
}

/// Maps `req`, taking new tables from the tree's allocator.
///
/// Identical existing leaves are kept; any other valid mapping in the range is a
/// [`Error::Conflict`]. The tables needed are counted and reserved first, so on
/// [`Error::OutOfMemory`] (and on every other error) the tree is unchanged and nothing leaks.
/// Only invalid entries become valid, so no TLB maintenance is needed.
///
/// Barriers (through `maint`): `DSB ISHST` before each new table is linked (its zeroing
/// visible first), and `DSB ISHST` once after the last store, so the new entries are visible
/// to every table walker of the inner shareable domain when this returns (KVM's `dsb(ishst)`
/// after `kvm_set_pte`). A caller that maps its own (stage-1) tables adds `ISB` before relying
/// on the mapping in its own instruction stream (pt-hyp's hyp tables do).
pub fn map<F: Format, P: PageAllocator, M: Maintenance>(
    w: &Walker<'_, F, P>,
    req: &MapRequest<F::Attrs>,
    maint: &M,
) -> Result<(), Error> {
    let end = check(w, req)?;
    let needed = plan(w, req, end)?;
    let mut reserve = Reserve::fill(w.alloc(), needed).ok_or(Error::OutOfMemory)?;
    apply(w, req, end, &mut reserve, maint)
}

/// The number of new tables mapping `req` would take, after the checks [`map`] makes (range,
/// alignment, output size, conflicts): what a caller checks its table source against before
/// doing work that must not be wasted (the fault path's cache maintenance).
pub fn tables_needed<F: Format, P: PageAllocator>(
    w: &Walker<'_, F, P>,
    req: &MapRequest<F::Attrs>,
) -> Result<usize, Error> {
    let end = check(w, req)?;
    plan(w, req, end)
}

/// Maps `req`, taking new tables only from `src` (a pre-filled cache: the fault path). Fails
/// with [`Error::CacheExhausted`] before touching the tree when `src` holds too few pages.
/// Barriers as for [`map`].
pub fn map_from<F: Format, P: PageAllocator, S: TableSource, M: Maintenance>(
    w: &Walker<'_, F, P>,
    req: &MapRequest<F::Attrs>,
    src: &mut S,
    maint: &M,
) -> Result<(), Error> {
    let end = check(w, req)?;
    let needed = plan(w, req, end)?;
    if src.available() < needed {
        return Err(Error::CacheExhausted {
            needed,
            available: src.available(),
        });
    }
    apply(w, req, end, src, maint)
}

/// The apply walk of a checked and planned request, then the closing `DSB ISHST`.
fn apply<F: Format, P: PageAllocator, S: TableSource, M: Maintenance>(
    w: &Walker<'_, F, P>,
    req: &MapRequest<F::Attrs>,
    end: u64,
    src: &mut S,
    maint: &M,
) -> Result<(), Error> {
    let r = w.walk(
        req.ia,
        end,
        &mut Apply {
            req,
            src,
            maint,
            fresh: None,
        },
    );
    maint.barrier(Barrier::DsbIshSt);
    r
}
