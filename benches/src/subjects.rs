//! The page-table implementations under test, behind one small trait, and the store-loop floor.
//!
//! Every subject maps the same ranges to the same output addresses with the same stage-2
//! attributes (normal write-back memory, read/write/execute, inner shareable, access flag
//! set), takes its tables from the same [`Pool`], and performs no real TLB maintenance on the
//! host (ours: the backends' maintenance calls compile to nothing without pt-core's `testkit`
//! feature; the peers issue TLBIs only on `aarch64`).

use crate::pool::Pool;
use crate::work::Op;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use pt_core::ops::{self, PartialBlock};
use pt_core::{TlbBatch, TlbScope, Walker};
use pt_hyp::fault::FaultArch;
use pt_hyp::{
    AbortOutcome, Armv7, Armv7AbortRegs, Armv8, Armv8AbortRegs, BlockSize, Ipa, PageCache, Perms,
    PhysAddr, SlotDesc, SlotFlags, Stage2,
};

/// Page size.
pub const PAGE: u64 = 4096;
/// 2 MiB.
pub const BLOCK: u64 = 2 << 20;
/// 1 GiB.
pub const GIB: u64 = 1 << 30;
/// Output address of the first mapped byte (inside 40 bits).
pub const OA: u64 = 0x80_0000_0000;

/// One page-table implementation. Teardown is `drop`.
pub trait Subject: Sized {
    /// Name in tables and benchmark ids.
    const NAME: &'static str;
    /// Whether the subject has operation `op` (the peers lack pt-hyp's own operations, and
    /// some peers lack a split).
    fn has(op: Op) -> bool {
        !op.hyp_only()
    }
    /// An empty tree (a VM with no mapping) taking tables from `pool`.
    fn new(pool: &'static Pool) -> Self;
    /// Maps `[ia, ia + size)` to `[pa, pa + size)` with 4 KiB pages only.
    fn map_pages(&mut self, ia: u64, pa: u64, size: u64);
    /// Maps `[ia, ia + size)` with 2 MiB blocks (everything aligned).
    fn map_blocks(&mut self, ia: u64, pa: u64, size: u64);
    /// Unmaps `[ia, ia + size)`, freeing the tables that become empty.
    fn unmap(&mut self, ia: u64, size: u64);
    /// Removes write permission from every leaf in `[ia, ia + size)`.
    fn write_protect(&mut self, ia: u64, size: u64);
    /// Splits the 2 MiB block mapping `ia` into 512 pages, keeping the mapping.
    fn split(&mut self, ia: u64);
    /// Output address of `ia` (0 when unmapped).
    fn translate(&self, ia: u64) -> u64;
    /// Registers a RAM slot `[ia, ia + size)` backed by host `pa` for the fault path.
    fn add_slot(&mut self, ia: u64, pa: u64, size: u64) {
        let _ = (ia, pa, size);
    }
    /// [`unmap`](Subject::unmap) with the data-cache clean of every removed RAM leaf (pt-hyp's
    /// `Stage2::unmap_range`); only for subjects that [`has`](Subject::has) it.
    fn unmap_clean(&mut self, ia: u64, size: u64) {
        let _ = (ia, size);
        unreachable!("{}: callers check `has` first", Self::NAME)
    }
    /// Makes the drop of this subject pt-hyp's teardown with the data-cache clean; only for
    /// subjects that [`has`](Subject::has) [`Op::TeardownClean`].
    fn clean_teardown(&mut self) {
        unreachable!("{}: callers check `has` first", Self::NAME)
    }
    /// Handles a stage-2 translation fault (a guest write) at `ia` from its raw syndrome
    /// registers, with a top-up cache filled first.
    fn fault(&mut self, ia: u64) {
        let _ = ia;
        unreachable!(
            "{} has no fault path: callers check `has` first",
            Self::NAME
        )
    }
}

// ----- ours ------------------------------------------------------------------------------

/// How a benchmark builds the raw abort registers of a guest write translation fault.
pub trait BenchArch: FaultArch {
    /// Registers of a data abort: write, ISV set, 32-bit access to `x1`, translation fault at
    /// level 3, at IPA `ipa`.
    fn write_fault(ipa: u64) -> Self::Regs;
}

const EC_DABT_LOW: u64 = 0x24;
/// IL | ISV | SAS=word | SRT=1 | WnR | DFSC = translation fault, level 3.
const ISS_WRITE_L3: u64 = (1 << 25) | (1 << 24) | (2 << 22) | (1 << 16) | (1 << 6) | 0b00_0111;

impl BenchArch for Armv8 {
    #[inline]
    fn write_fault(ipa: u64) -> Armv8AbortRegs {
        Armv8AbortRegs {
            esr: (EC_DABT_LOW << 26) | ISS_WRITE_L3,
            far: 0xffff_0000_0000_0000 | (ipa & 0xfff),
            hpfar: (ipa >> 12) << 4,
        }
    }
}

impl BenchArch for Armv7 {
    #[inline]
    fn write_fault(ipa: u64) -> Armv7AbortRegs {
        Armv7AbortRegs {
            hsr: ((EC_DABT_LOW << 26) | ISS_WRITE_L3) as u32,
            hdfar: 0x8000_0000 | (ipa as u32 & 0xfff),
            hifar: 0,
            hpfar: ((ipa >> 12) << 4) as u32,
        }
    }
}

/// pt-hyp's per-VM stage-2 manager (40-bit IPA) on one architecture.
///
/// Unmap and teardown, which the peers do without any cache maintenance, are pt-core's
/// operations on the manager's tree (no data-cache clean); [`Op::UnmapPagesClean`],
/// [`Op::UnmapBlocksClean`] and [`Op::TeardownClean`] measure pt-hyp's own, which also clean
/// every removed RAM leaf.
pub struct Ours<A: BenchArch> {
    s2: ManuallyDrop<Stage2<A, &'static Pool>>,
    pool: &'static Pool,
    cache: PageCache<8>,
    /// Drop through pt-hyp's teardown (with the clean) instead of pt-core's `free_tree`.
    clean_teardown: bool,
}

impl<A: BenchArch> Ours<A> {
    /// The manager, for direct calls.
    pub fn stage2(&mut self) -> &mut Stage2<A, &'static Pool> {
        &mut self.s2
    }

    /// A walker and a TLB batch over the manager's tree, for pt-core's operations.
    fn core_op<R>(
        &self,
        f: impl FnOnce(&Walker<'_, A::S2, &'static Pool>, &mut TlbBatch<'_, A::Maint>) -> R,
    ) -> R {
        let s2 = &*self.s2;
        // SAFETY: the manager's own root, geometry and allocator; the bench is single-threaded
        // and the manager is not used during the call.
        let w = unsafe { Walker::new(s2.geometry(), s2.root(), s2.allocator()) };
        let mut tlb = TlbBatch::new(s2.maint(), TlbScope::Stage2 { vttbr: s2.vttbr() });
        f(&w, &mut tlb)
    }
}

impl<A: BenchArch> Drop for Ours<A> {
    fn drop(&mut self) {
        self.cache.release(&self.pool);
        if self.clean_teardown {
            // SAFETY: dropped once, here.
            unsafe { ManuallyDrop::drop(&mut self.s2) };
        } else {
            // pt-core's teardown of the tree. The manager itself is not dropped (its drop
            // would free the tree again); the bench's managers own nothing else (no dirty
            // bitmaps), so nothing leaks, which `tables_used` checks through the pool.
            self.core_op(ops::free_tree);
        }
    }
}

impl<A: BenchArch> Subject for Ours<A> {
    const NAME: &'static str = <A as pt_hyp::Arch>::NAME;

    fn has(_: Op) -> bool {
        true
    }

    fn new(pool: &'static Pool) -> Self {
        Self {
            s2: ManuallyDrop::new(Stage2::new(pool, 40, 1).unwrap()),
            pool,
            cache: PageCache::new(),
            clean_teardown: false,
        }
    }

    #[inline]
    fn map_pages(&mut self, ia: u64, pa: u64, size: u64) {
        self.s2
            .map_ram(Ipa(ia), PhysAddr(pa), size, Perms::RWX, BlockSize::Page)
            .unwrap();
    }

    #[inline]
    fn map_blocks(&mut self, ia: u64, pa: u64, size: u64) {
        self.s2
            .map_ram(Ipa(ia), PhysAddr(pa), size, Perms::RWX, BlockSize::Block2M)
            .unwrap();
    }

    /// pt-core's unmap (no cache maintenance, like the peers).
    #[inline]
    fn unmap(&mut self, ia: u64, size: u64) {
        self.core_op(|w, tlb| ops::unmap(w, ia, size, PartialBlock::Whole, tlb))
            .unwrap();
    }

    #[inline]
    fn unmap_clean(&mut self, ia: u64, size: u64) {
        self.s2.unmap_range(Ipa(ia), size).unwrap();
    }

    fn clean_teardown(&mut self) {
        self.clean_teardown = true;
    }

    #[inline]
    fn write_protect(&mut self, ia: u64, size: u64) {
        self.s2.write_protect_range(Ipa(ia), size).unwrap();
    }

    #[inline]
    fn split(&mut self, ia: u64) {
        self.cache.top_up(&self.pool, 1).unwrap();
        let n = self.s2.split_block(&mut self.cache, Ipa(ia)).unwrap();
        debug_assert_eq!(n, 1);
    }

    #[inline]
    fn translate(&self, ia: u64) -> u64 {
        self.s2.translate(Ipa(ia)).map_or(0, |t| t.pa.0)
    }

    fn add_slot(&mut self, ia: u64, pa: u64, size: u64) {
        self.s2
            .add_memslot(SlotDesc {
                ipa: Ipa(ia),
                size,
                host: PhysAddr(pa),
                flags: SlotFlags::default(),
            })
            .unwrap();
    }

    #[inline]
    fn fault(&mut self, ia: u64) {
        self.cache
            .top_up(&self.pool, self.s2.fault_pages())
            .unwrap();
        let out = self
            .s2
            .handle_guest_abort(&mut self.cache, &A::write_fault(ia))
            .unwrap();
        debug_assert!(matches!(out, AbortOutcome::Mapped { size: PAGE, .. }));
    }
}

/// Our ARMv8 stage 2.
pub type OursV8 = Ours<Armv8>;
/// Our ARMv7 (LPAE) stage 2.
pub type OursV7 = Ours<Armv7>;

/// Stage-2 leaf attribute bits every subject writes: MemAttr normal WB/WB, S2AP RW, SH inner,
/// AF (bits `[10:2]`); what our `Stage2Attrs::ram(Perms::RWX)` encodes on ARMv8.
pub const S2_RAM_ATTRS: u64 = (0xf << 2) | (0b11 << 6) | (0b11 << 8) | (1 << 10);
/// `S2AP[1]`: write permission.
pub const S2AP_W: u64 = 1 << 7;

// ----- aarch64-paging -----------------------------------------------------------------

mod ap {
    use super::*;
    use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
    use aarch64_paging::paging::{
        Constraints, MemoryRegion, PageTable, Stage2 as ApStage2, Translation,
    };
    use aarch64_paging::Mapping;

    /// aarch64-paging's table allocation seam over the pool.
    pub struct PoolTranslation(&'static Pool);

    impl Translation<Stage2Attributes> for PoolTranslation {
        fn allocate_table(&mut self) -> (NonNull<PageTable<Stage2Attributes>>, PhysicalAddress) {
            let pa = self.0.page().expect("pool exhausted");
            let p = NonNull::new(self.0.ptr(pa).cast()).unwrap();
            (p, PhysicalAddress(pa as usize))
        }

        unsafe fn deallocate_table(&mut self, t: NonNull<PageTable<Stage2Attributes>>) {
            self.0.release(self.0.pa_of(t.as_ptr().cast()));
        }

        fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<Stage2Attributes>> {
            NonNull::new(self.0.ptr(pa.0 as u64).cast()).unwrap()
        }
    }

    /// aarch64-paging 0.12, stage-2 regime (`Mapping<_, Stage2>`), root at level 1 (39-bit
    /// IPA: it has no concatenated roots), used inactive (its fastest mode: no BBM checks, no
    /// TLBI walk).
    pub struct AArch64Paging(Mapping<PoolTranslation, ApStage2>);

    const RAM: Stage2Attributes = Stage2Attributes::VALID
        .union(Stage2Attributes::MEMATTR_NORMAL_INNER_WB)
        .union(Stage2Attributes::MEMATTR_NORMAL_OUTER_WB)
        .union(Stage2Attributes::S2AP_ACCESS_RW)
        .union(Stage2Attributes::SH_INNER)
        .union(Stage2Attributes::ACCESS_FLAG);
    const _: () = assert!(RAM.bits() as u64 == S2_RAM_ATTRS | 1);

    fn region(ia: u64, size: u64) -> MemoryRegion {
        MemoryRegion::new(ia as usize, (ia + size) as usize)
    }

    impl Subject for AArch64Paging {
        const NAME: &'static str = "aarch64-paging";

        fn new(pool: &'static Pool) -> Self {
            Self(Mapping::new(PoolTranslation(pool), 1, ApStage2))
        }

        #[inline]
        fn map_pages(&mut self, ia: u64, pa: u64, size: u64) {
            let c = Constraints::NO_BLOCK_MAPPINGS | Constraints::NO_CONTIGUOUS_HINT;
            self.0
                .map_range(&region(ia, size), PhysicalAddress(pa as usize), RAM, c)
                .unwrap();
        }

        #[inline]
        fn map_blocks(&mut self, ia: u64, pa: u64, size: u64) {
            let c = Constraints::NO_CONTIGUOUS_HINT;
            self.0
                .map_range(&region(ia, size), PhysicalAddress(pa as usize), RAM, c)
                .unwrap();
        }

        /// Mapping with invalid attributes: clears the leaves and frees every subtable the
        /// range covers whole (its way to unmap).
        #[inline]
        fn unmap(&mut self, ia: u64, size: u64) {
            self.0
                .map_range(
                    &region(ia, size),
                    PhysicalAddress(0),
                    Stage2Attributes::empty(),
                    Constraints::empty(),
                )
                .unwrap();
        }

        #[inline]
        fn write_protect(&mut self, ia: u64, size: u64) {
            self.0
                .modify_range(&region(ia, size), &|_, d| {
                    if d.is_table() || d.flags().bits() & 1 == 0 {
                        return Ok(());
                    }
                    d.modify_flags(Stage2Attributes::empty(), Stage2Attributes::S2AP_ACCESS_WO)
                })
                .unwrap();
        }

        /// `modify_range` over one page of the block splits the block into pages.
        #[inline]
        fn split(&mut self, ia: u64) {
            self.0
                .modify_range(&region(ia, PAGE), &|_, _| Ok(()))
                .unwrap();
        }

        #[inline]
        fn translate(&self, ia: u64) -> u64 {
            let mut out = 0;
            self.0
                .walk_range(&region(ia & !(PAGE - 1), PAGE), &mut |_, d, level| {
                    if d.is_valid() {
                        let size = PAGE << ((3 - level) * 9);
                        out = d.output_address().0 as u64 + (ia & (size - 1));
                    }
                    Ok(())
                })
                .unwrap();
            out
        }
    }
}

pub use ap::AArch64Paging;

// ----- page-table-generic -------------------------------------------------------------

mod ptg {
    use super::*;
    use page_table_generic::{
        FrameAllocator, MapConfig, PageTable, PageTableEntry, PhysAddr as PtgPa, TableMeta,
        VirtAddr,
    };

    /// The pool as page-table-generic's frame allocator.
    #[derive(Clone, Copy)]
    pub struct PtgAlloc(&'static Pool);

    impl FrameAllocator for PtgAlloc {
        fn alloc_frame(&self) -> Option<PtgPa> {
            self.0.page().map(|pa| PtgPa::from_usize(pa as usize))
        }

        fn dealloc_frame(&self, frame: PtgPa) {
            self.0.release(frame.as_usize() as u64);
        }

        fn phys_to_virt(&self, pa: PtgPa) -> *mut u8 {
            self.0.ptr(pa.as_usize() as u64)
        }

        /// The default frees `frames` pages with a stride that crashes for the root; free page
        /// by page.
        fn dealloc_frames(&self, start: PtgPa, frames: usize, _frame_size: usize) {
            for i in 0..frames {
                self.0.release(start.as_usize() as u64 + i as u64 * PAGE);
            }
        }
    }

    const ADDR: u64 = 0x0000_ffff_ffff_f000;

    /// An ARMv8 stage-2 descriptor for page-table-generic (it has none of its own).
    #[derive(Clone, Copy, Debug)]
    #[repr(transparent)]
    pub struct S2Pte(u64);

    impl PageTableEntry for S2Pte {
        type PteConfig = u64;

        #[inline]
        fn new_page(paddr: PtgPa, config: u64, is_huge: bool) -> Self {
            let kind = if is_huge { 0b01 } else { 0b11 };
            S2Pte((paddr.as_usize() as u64 & ADDR) | config | kind)
        }

        #[inline]
        fn new_table(paddr: PtgPa) -> Self {
            S2Pte((paddr.as_usize() as u64 & ADDR) | 0b11)
        }

        #[inline]
        fn paddr(&self, _is_dir: bool) -> PtgPa {
            PtgPa::from_usize((self.0 & ADDR) as usize)
        }

        #[inline]
        fn config(&self, _is_dir: bool) -> u64 {
            self.0 & !ADDR & !0b11
        }

        #[inline]
        fn present(&self) -> bool {
            self.0 & 1 != 0
        }

        #[inline]
        fn huge(&self, is_dir: bool) -> bool {
            is_dir && self.0 & 0b11 == 0b01
        }

        #[inline]
        fn unused(&self) -> bool {
            self.0 == 0
        }

        #[inline]
        fn clear(&mut self) {
            self.0 = 0;
        }
    }

    /// Three levels of 9 bits (39-bit IPA), 2 MiB blocks at most.
    #[derive(Clone, Copy)]
    pub struct S2Meta;

    impl TableMeta for S2Meta {
        type P = S2Pte;
        const PAGE_SIZE: usize = 4096;
        const LEVEL_BITS: &[usize] = &[9, 9, 9];
        const MAX_BLOCK_LEVEL: usize = 2;
        fn flush(_vaddr: Option<VirtAddr>) {}
    }

    /// page-table-generic 0.9 with the bench's own stage-2 entry type `S2Pte`.
    pub struct PageTableGeneric(PageTable<S2Meta, PtgAlloc>);

    fn map(t: &mut PageTable<S2Meta, PtgAlloc>, ia: u64, pa: u64, size: u64, huge: bool) {
        t.map(&MapConfig {
            vaddr: VirtAddr::from_usize(ia as usize),
            paddr: PtgPa::from_usize(pa as usize),
            size: size as usize,
            pte: S2_RAM_ATTRS,
            allow_huge: huge,
            flush: false,
        })
        .unwrap();
    }

    impl Subject for PageTableGeneric {
        const NAME: &'static str = "page-table-generic";

        fn new(pool: &'static Pool) -> Self {
            Self(PageTable::new(PtgAlloc(pool)).unwrap())
        }

        #[inline]
        fn map_pages(&mut self, ia: u64, pa: u64, size: u64) {
            map(&mut self.0, ia, pa, size, false);
        }

        #[inline]
        fn map_blocks(&mut self, ia: u64, pa: u64, size: u64) {
            map(&mut self.0, ia, pa, size, true);
        }

        #[inline]
        fn unmap(&mut self, ia: u64, size: u64) {
            self.0
                .unmap(VirtAddr::from_usize(ia as usize), size as usize)
                .unwrap();
        }

        #[inline]
        fn write_protect(&mut self, ia: u64, size: u64) {
            self.0
                .protect_region(
                    VirtAddr::from_usize(ia as usize),
                    size as usize,
                    S2_RAM_ATTRS & !S2AP_W,
                )
                .unwrap();
        }

        #[inline]
        fn split(&mut self, ia: u64) {
            self.0
                .split_huge_page(VirtAddr::from_usize(ia as usize))
                .unwrap();
        }

        #[inline]
        fn translate(&self, ia: u64) -> u64 {
            self.0
                .translate_phys(VirtAddr::from_usize(ia as usize))
                .map_or(0, |p| p.as_usize() as u64)
        }
    }
}

pub use ptg::PageTableGeneric;

// ----- page_table_multiarch ----------------------------------------------------------

mod ptm {
    use super::*;
    use core::sync::atomic::{AtomicPtr, Ordering};
    use memory_addr::{PhysAddr as PtmPa, VirtAddr};
    use page_table_multiarch::{
        GenericPTE, MappingFlags, PageTable64, PagingHandler, PagingMetaData,
    };

    /// The pool of the running benchmark: page_table_multiarch's allocation seam is static
    /// functions (no allocator value), so the subject publishes its pool here (single-threaded
    /// bench, one subject at a time).
    static POOL: AtomicPtr<Pool> = AtomicPtr::new(core::ptr::null_mut());

    fn pool() -> &'static Pool {
        // SAFETY: set from a `&'static Pool` in `new` before any use.
        unsafe { &*POOL.load(Ordering::Relaxed) }
    }

    /// The pool as page_table_multiarch's frame handler.
    pub struct PtmAlloc;

    impl PagingHandler for PtmAlloc {
        fn alloc_frames(num: usize, _align: usize) -> Option<PtmPa> {
            assert_eq!(
                num, 1,
                "page_table_multiarch allocates tables one page at a time"
            );
            pool().page().map(|pa| PtmPa::from_usize(pa as usize))
        }

        fn dealloc_frames(paddr: PtmPa, num: usize) {
            for i in 0..num {
                pool().release(paddr.as_usize() as u64 + i as u64 * PAGE);
            }
        }

        fn phys_to_virt(paddr: PtmPa) -> VirtAddr {
            VirtAddr::from_usize(pool().ptr(paddr.as_usize() as u64) as usize)
        }
    }

    /// Three levels of 9 bits (39-bit IPA, root at level 1): the crate has no concatenated
    /// roots.
    pub struct S2Meta;

    impl PagingMetaData for S2Meta {
        const LEVELS: usize = 3;
        const PA_MAX_BITS: usize = 48;
        const VA_MAX_BITS: usize = 39;
        type VirtAddr = VirtAddr;

        fn vaddr_is_valid(vaddr: usize) -> bool {
            vaddr >> Self::VA_MAX_BITS == 0
        }

        fn flush_tlb(_: Option<VirtAddr>) {}
    }

    const ADDR: u64 = 0x0000_ffff_ffff_f000;

    /// An ARMv8 stage-2 descriptor for page_table_multiarch (its own `A64PTE` is stage 1;
    /// the ArceOS hypervisor brings a stage-2 entry type of its own the same way).
    #[derive(Clone, Copy, Debug)]
    #[repr(transparent)]
    pub struct S2Pte(u64);

    fn attrs(flags: MappingFlags) -> u64 {
        let mut a = (0xf << 2) | (0b11 << 8) | (1 << 10); // normal WB, inner shareable, AF
        if flags.contains(MappingFlags::READ) {
            a |= 1 << 6;
        }
        if flags.contains(MappingFlags::WRITE) {
            a |= S2AP_W;
        }
        if !flags.contains(MappingFlags::EXECUTE) {
            a |= 1 << 54;
        }
        a
    }

    impl GenericPTE for S2Pte {
        #[inline]
        fn new_page(paddr: PtmPa, flags: MappingFlags, is_huge: bool) -> Self {
            let kind = if is_huge { 0b01 } else { 0b11 };
            S2Pte((paddr.as_usize() as u64 & ADDR) | attrs(flags) | kind)
        }

        #[inline]
        fn new_table(paddr: PtmPa) -> Self {
            S2Pte((paddr.as_usize() as u64 & ADDR) | 0b11)
        }

        #[inline]
        fn paddr(&self) -> PtmPa {
            PtmPa::from_usize((self.0 & ADDR) as usize)
        }

        fn flags(&self) -> MappingFlags {
            let mut f = MappingFlags::empty();
            if self.0 & (1 << 6) != 0 {
                f |= MappingFlags::READ;
            }
            if self.0 & S2AP_W != 0 {
                f |= MappingFlags::WRITE;
            }
            if self.0 & (1 << 54) == 0 {
                f |= MappingFlags::EXECUTE;
            }
            f
        }

        #[inline]
        fn set_paddr(&mut self, paddr: PtmPa) {
            self.0 = (self.0 & !ADDR) | (paddr.as_usize() as u64 & ADDR);
        }

        #[inline]
        fn set_flags(&mut self, flags: MappingFlags, is_huge: bool) {
            let kind = if is_huge { 0b01 } else { 0b11 };
            self.0 = (self.0 & ADDR) | attrs(flags) | kind;
        }

        #[inline]
        fn bits(self) -> usize {
            self.0 as usize
        }

        #[inline]
        fn is_unused(&self) -> bool {
            self.0 == 0
        }

        #[inline]
        fn is_present(&self) -> bool {
            self.0 & 1 != 0
        }

        #[inline]
        fn is_huge(&self) -> bool {
            self.0 & 0b11 == 0b01
        }

        #[inline]
        fn clear(&mut self) {
            self.0 = 0;
        }
    }

    /// Read, write, execute: what the other subjects map ([`S2_RAM_ATTRS`]).
    const RWX: MappingFlags = MappingFlags::READ
        .union(MappingFlags::WRITE)
        .union(MappingFlags::EXECUTE);

    /// page_table_multiarch 0.6 (`PageTable64` and its cursor) with the bench's stage-2
    /// entry type `S2Pte`.
    pub struct PageTableMultiarch(PageTable64<S2Meta, S2Pte, PtmAlloc>);

    impl Subject for PageTableMultiarch {
        const NAME: &'static str = "page_table_multiarch";

        /// No split: it has no operation that turns a block into a table of pages.
        fn has(op: Op) -> bool {
            !op.hyp_only() && op != Op::Split
        }

        fn new(pool: &'static Pool) -> Self {
            POOL.store(pool as *const Pool as *mut Pool, Ordering::Relaxed);
            Self(PageTable64::try_new().unwrap())
        }

        #[inline]
        fn map_pages(&mut self, ia: u64, pa: u64, size: u64) {
            let base = ia as usize;
            self.0
                .cursor()
                .map_region(
                    VirtAddr::from_usize(base),
                    |va| PtmPa::from_usize(pa as usize + (va.as_usize() - base)),
                    size as usize,
                    RWX,
                    false,
                )
                .unwrap();
        }

        #[inline]
        fn map_blocks(&mut self, ia: u64, pa: u64, size: u64) {
            let base = ia as usize;
            self.0
                .cursor()
                .map_region(
                    VirtAddr::from_usize(base),
                    |va| PtmPa::from_usize(pa as usize + (va.as_usize() - base)),
                    size as usize,
                    RWX,
                    true,
                )
                .unwrap();
        }

        /// `unmap_region` clears every leaf one by one; it frees no table (emptied tables
        /// stay until the tree is dropped).
        #[inline]
        fn unmap(&mut self, ia: u64, size: u64) {
            self.0
                .cursor()
                .unmap_region(VirtAddr::from_usize(ia as usize), size as usize)
                .unwrap();
        }

        #[inline]
        fn write_protect(&mut self, ia: u64, size: u64) {
            self.0
                .cursor()
                .protect_region(
                    VirtAddr::from_usize(ia as usize),
                    size as usize,
                    MappingFlags::READ | MappingFlags::EXECUTE,
                )
                .unwrap();
        }

        fn split(&mut self, _: u64) {
            unreachable!("page_table_multiarch has no split: callers check `has`")
        }

        #[inline]
        fn translate(&self, ia: u64) -> u64 {
            self.0
                .query(VirtAddr::from_usize(ia as usize))
                .map_or(0, |(pa, _, _)| pa.as_usize() as u64)
        }
    }
}

pub use ptm::PageTableMultiarch;

// ----- the floor ----------------------------------------------------------------------

/// The hardware floor: writes `out.len()` descriptors (`first`, `first + step`, ...) into
/// `out` with plain stores, the least any implementation must do.
#[inline(never)]
pub fn floor_fill(out: &mut [u64], first: u64, step: u64) {
    let mut d = first;
    for e in out.iter_mut() {
        *e = d;
        d = d.wrapping_add(step);
    }
}

/// The floor of write-protecting: rewrites every descriptor with write permission cleared.
#[inline(never)]
pub fn floor_clear_bits(out: &mut [u64], bits: u64) {
    for e in out.iter_mut() {
        *e &= !bits;
    }
}
