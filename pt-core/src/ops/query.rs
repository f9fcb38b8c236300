//! Translating one input address.

use crate::addr::PhysAddr;
use crate::format::{Entry, Format};
use crate::geometry::entry_size;
use crate::machine::PageAllocator;
use crate::walk::Walker;

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

/// The mapping of input address `ia`, or `None` when it is unmapped or outside the tree.
#[inline]
pub fn translate<F: Format, P: PageAllocator>(
    w: &Walker<'_, F, P>,
    ia: u64,
) -> Option<Translation<F::Attrs>> {
    let (desc, level) = w.lookup(ia)?;
    match F::decode(desc, level) {
        Entry::Leaf { oa, attrs } => {
            let leaf_ia = ia & !(entry_size(level) - 1);
            Some(Translation {
                oa: PhysAddr(oa.0 + (ia - leaf_ia)),
                attrs,
                level,
                leaf_ia,
                desc,
            })
        }
        _ => None,
    }
}
