//! Helpers shared by the integration tests: a recording [`Maintenance`], tree set-up, a plain
//! reader of table memory that does not use the walker, and map requests on the fake format.
#![allow(dead_code)]

use pt_core::ops::MapRequest;
use pt_core::testkit::fake::FakeAttrs;
use pt_core::testkit::Arena;
use pt_core::trace::{record, Record};
use pt_core::{
    entry_size, Barrier, CacheOp, Format, Geometry, Maintenance, PageAllocator, PhysAddr, TlbOp,
    VirtAddr,
};

/// VTTBR value used by every stage-2 test (VMID 5).
pub const VTTBR: u64 = 5 << 48;

/// A [`Maintenance`] that only records, with or without stage-2 invalidation by IPA.
pub struct Rec<const S2_BY_IPA: bool>;

/// ARMv8-like maintenance: stage-2 invalidation by IPA exists.
pub type ByIpa = Rec<true>;
/// ARMv7-like maintenance: no stage-2 invalidation by IPA, every batch is a VMID flush.
pub type VmidOnly = Rec<false>;

impl<const B: bool> Maintenance for Rec<B> {
    const S2_BY_IPA: bool = B;
    fn tlb(&self, op: TlbOp) {
        record(Record::Tlb(op));
    }
    fn barrier(&self, barrier: Barrier) {
        record(Record::Barrier(barrier));
    }
    fn dcache(&self, op: CacheOp, va: usize, len: usize) {
        record(Record::DCache {
            op,
            va: VirtAddr(va as u64),
            len: len as u64,
        });
    }
    fn icache_invalidate_all(&self) {
        record(Record::ICacheInvalidateAll);
    }
}

/// Allocates a zeroed root for `g` (concatenated pages when the geometry asks for them).
pub fn new_root<P: PageAllocator>(alloc: &P, g: Geometry) -> PhysAddr {
    alloc
        .alloc_contiguous_zeroed(g.root_pages())
        .expect("root allocation")
}

/// Reads entry `i` of the table at `pa`, without the walker.
pub fn read_desc<P: PageAllocator>(alloc: &P, pa: PhysAddr, i: usize) -> u64 {
    let base = alloc.phys_to_virt(pa);
    // SAFETY: `pa` is a live table page (or concatenated root) of the arena with more than `i`
    // entries; nothing writes it concurrently (tests are single-threaded per arena).
    unsafe { base.add(i).read_volatile() }
}

/// One entry of a tree, as found by [`dump`]: (level, first input address, raw descriptor).
pub type DumpEntry = (u8, u64, u64);

/// Every valid entry of the tree (tables included), in address order, read without the walker.
pub fn dump<F: Format, P: PageAllocator>(alloc: &P, g: Geometry, root: PhysAddr) -> Vec<DumpEntry> {
    fn rec<F: Format, P: PageAllocator>(
        alloc: &P,
        g: Geometry,
        table: PhysAddr,
        level: u8,
        table_ia: u64,
        out: &mut Vec<DumpEntry>,
    ) {
        for i in 0..g.entries_at(level) {
            let desc = read_desc(alloc, table, i);
            if !F::is_valid(desc, level) {
                continue;
            }
            let ia = table_ia + i as u64 * entry_size(level);
            out.push((level, ia, desc));
            if let pt_core::Entry::Table(child) = F::decode(desc, level) {
                if level < 3 {
                    rec::<F, P>(alloc, g, child, level + 1, ia, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    rec::<F, P>(alloc, g, root, g.start_level(), 0, &mut out);
    out
}

/// A map request on the fake format with 48-bit output addresses.
pub fn req(ia: u64, size: u64, oa: u64, attrs: u8, leaf_level: u8) -> MapRequest<FakeAttrs> {
    MapRequest {
        ia,
        size,
        oa: PhysAddr(oa),
        attrs: FakeAttrs(attrs),
        leaf_level,
        oa_bits: 48,
    }
}

/// An arena big enough for every test: 64 Ki pages at 0x8000_0000 (allocated lazily).
pub fn arena() -> Arena {
    Arena::standard()
}
