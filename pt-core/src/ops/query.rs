//! Translating one input address.

use crate::addr::PhysAddr;
use crate::format::{Entry, Format};
use crate::geometry::entry_size;
use crate::machine::PageAllocator;
use crate::table::Entries;
use crate::walk::{LeafFlow, Visitor, Walker};

/// The leaf that maps an input address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation<A> {
    /// Output address of the input address asked for (page offset included).
    pub oa: PhysAddr,
    /// Attributes of the leaf.
    pub attrs: A,
    /// Level of the leaf (3 = page, 2 = 2 MiB block, 1 = 1 GiB block).
    pub level: u8,
    /// First input address the leaf maps.
    pub leaf_ia: u64,
    /// Raw descriptor.
    pub desc: u64,
}

impl<A> Translation<A> {
    /// Bytes the leaf maps.
    pub fn size(&self) -> u64 {
        entry_size(self.level)
    }
}

struct Find<A> {
    ia: u64,
    found: Option<Translation<A>>,
}

impl<F: Format, P: PageAllocator> Visitor<F, P> for Find<F::Attrs> {
    type Error = core::convert::Infallible;
    const TABLE_VISITS: bool = false;

    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Self::Error> {
        let desc = run.get(0);
        if let Entry::Leaf { oa, attrs } = F::decode(desc, run.level()) {
            let leaf_ia = run.ia(0);
            self.found = Some(Translation {
                oa: PhysAddr(oa.0 + (self.ia - leaf_ia)),
                attrs,
                level: run.level(),
                leaf_ia,
                desc,
            });
        }
        Ok(LeafFlow::Done)
    }
}

/// The mapping of input address `ia`, or `None` when it is unmapped or outside the tree.
pub fn translate<F: Format, P: PageAllocator>(
    w: &Walker<'_, F, P>,
    ia: u64,
) -> Option<Translation<F::Attrs>> {
    if ia >= w.geometry().ia_size() {
        return None;
    }
    let page = ia & !(crate::PAGE_SIZE - 1);
    let mut v = Find { ia, found: None };
    let Ok(()) = w.walk(page, page + crate::PAGE_SIZE, &mut v);
    v.found
}
