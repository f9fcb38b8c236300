//! A structured walk over the leaves of a tree: what cache maintenance, dumps and tools need
//! without parsing text.

use crate::addr::PhysAddr;
use crate::format::{Entry, Format};
use crate::machine::PageAllocator;
use crate::table::Entries;
use crate::walk::{LeafFlow, Visitor, Walker};

/// One leaf (block or page) of a tree, as far as it lies inside the walked range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf<A> {
    /// First input address of the part inside the range.
    pub ia: u64,
    /// Level of the leaf (3 = page).
    pub level: u8,
    /// Output address of `ia`.
    pub oa: PhysAddr,
    /// Bytes of the part inside the range (the whole leaf when the range covers it).
    pub size: u64,
    /// First input address of the whole leaf.
    pub leaf_ia: u64,
    /// Decoded attributes.
    pub attrs: A,
    /// The raw descriptor.
    pub desc: u64,
}

impl<A> Leaf<A> {
    /// First input address past the part inside the range (`ia + size`).
    pub fn end(&self) -> u64 {
        self.ia + self.size
    }

    /// Entry `k` of `run` as a leaf, cut to the walked range, or `None` when it is not a leaf
    /// (the one place a leaf record is built: [`for_each_leaf`] and the dump both use it).
    pub(crate) fn of_entry<F: Format<Attrs = A>, P: PageAllocator>(
        run: &Entries<'_, F, P>,
        k: usize,
    ) -> Option<Self> {
        let desc = run.get(k);
        match F::decode(desc, run.level()) {
            Entry::Leaf { oa, attrs } => {
                let (s, e) = run.covered(k);
                let leaf_ia = run.ia(k);
                Some(Leaf {
                    ia: s,
                    level: run.level(),
                    oa: PhysAddr(oa.0 + (s - leaf_ia)),
                    size: e - s,
                    leaf_ia,
                    attrs,
                    desc,
                })
            }
            _ => None,
        }
    }
}

struct EachLeaf<G> {
    f: G,
}

impl<F: Format, P: PageAllocator, G: FnMut(Leaf<F::Attrs>)> Visitor<F, P> for EachLeaf<G> {
    type Error = core::convert::Infallible;
    const TABLE_VISITS: bool = false;

    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Self::Error> {
        for k in 0..run.len() {
            if let Some(leaf) = Leaf::of_entry(run, k) {
                (self.f)(leaf);
            }
        }
        Ok(LeafFlow::Done)
    }
}

/// Calls `f` for every leaf mapping part of `[start, end)`, in address order, with the part
/// the range covers (`stage2_flush_vm` walks this way; so do tools). An empty range or one
/// reaching past the input space visits nothing.
pub fn for_each_leaf<F: Format, P: PageAllocator>(
    w: &Walker<'_, F, P>,
    start: u64,
    end: u64,
    f: impl FnMut(Leaf<F::Attrs>),
) {
    let Ok(()) = w.walk(start, end, &mut EachLeaf { f });
}
