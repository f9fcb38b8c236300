//! The per-VM stage-2 manager.

use crate::arch::Arch;
use crate::bitmap::Bitmap;
use crate::cache::PageCache;
use crate::cpu::CpuCaps;
use crate::error::Error;
use crate::memslot::{Memslot, SlotDesc, SlotId};
use arrayvec::ArrayVec;
use core::marker::PhantomData;
use pt_core::ops::{self, Leaf, MapRequest, PartialBlock, TableSource, UnmapSink};
use pt_core::{
    guest_dcache, AddrRange, CacheOp, Entries, Entry, Format, Geometry, GuestMemory,
    GuestMemoryError, Ipa, LeafFlow, Maintenance, PageAllocator, Perms, PhysAddr, Stage2Attrs,
    TlbBatch, TlbScope, Visitor, Walker, PAGE_SHIFT, PAGE_SIZE,
};

/// Most memslots per VM.
pub const MAX_SLOTS: usize = 32;

/// The largest memslot that can be dirty logged, in bytes: 2 GiB. Its bitmap (one bit per
/// 4 KiB page) takes at most 16 contiguous pages from the allocator, the most
/// [`PageAllocator::alloc_contiguous_zeroed`] hands out. Logging a larger slot (at
/// [`Stage2::add_memslot`] with `log_dirty`, or [`Stage2::enable_dirty_logging`]) is
/// [`Error::SlotTooLarge`]; split guest RAM into slots of at most this size to log it all.
pub const MAX_LOGGED_SLOT: u64 = 16 * crate::bitmap::BITS_PER_PAGE * PAGE_SIZE;

/// The largest leaf a mapping may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockSize {
    /// 4 KiB pages only.
    Page,
    /// 2 MiB blocks where the range and both addresses are aligned, pages elsewhere.
    Block2M,
    /// 1 GiB blocks where aligned, then 2 MiB blocks, then pages.
    Block1G,
}

impl BlockSize {
    /// The lowest level a leaf may be written at.
    pub const fn leaf_level(self) -> u8 {
        match self {
            BlockSize::Page => 3,
            BlockSize::Block2M => 2,
            BlockSize::Block1G => 1,
        }
    }

    /// Bytes of the largest leaf.
    pub const fn bytes(self) -> u64 {
        pt_core::entry_size(self.leaf_level())
    }
}

/// How to build a [`Stage2`] ([`Stage2::with_config`]): IPA size, VMID, the CPU's properties,
/// and whether VMID 0 may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stage2Config {
    /// IPA size in bits.
    pub ipa_bits: u8,
    /// The VM's VMID.
    pub vmid: u16,
    /// The CPU's PA and VMID sizes.
    pub cpu: CpuCaps,
    /// Allow VMID 0, which otherwise stays the host's.
    pub allow_vmid0: bool,
}

impl Stage2Config {
    /// `ipa_bits`, `vmid` on `cpu`; VMID 0 not allowed.
    pub const fn new(ipa_bits: u8, vmid: u16, cpu: CpuCaps) -> Self {
        Self {
            ipa_bits,
            vmid,
            cpu,
            allow_vmid0: false,
        }
    }

    /// The same, with VMID 0 allowed: the caller takes the host's VMID for this VM (it must
    /// then flush the host's EL1&0 TLB entries itself, [`Arch::flush_vm_context`]).
    pub const fn with_vmid0(self) -> Self {
        Self {
            allow_vmid0: true,
            ..self
        }
    }
}

/// The stage-2 mapping of one IPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S2Translation {
    /// Host physical address of the IPA asked for (page offset included).
    pub pa: PhysAddr,
    /// Attributes of the leaf.
    pub attrs: Stage2Attrs,
    /// Level of the leaf (3 = 4 KiB page, 2 = 2 MiB block, 1 = 1 GiB block).
    pub level: u8,
    /// First IPA of the leaf.
    pub leaf_ipa: Ipa,
    /// Bytes the leaf maps.
    pub size: u64,
    /// The raw leaf descriptor, as the table walker reads it (decode it with the
    /// architecture's format, e.g. `pt_armv8::Descriptor`).
    pub desc: u64,
}

/// The stage-2 tables of one VM, its VMID and memslots: what KVM/ARM keeps in `kvm->arch`
/// (`pgd`, `vmid`, `vttbr`) and `kvm->memslots`.
///
/// Every method issues the TLB and cache maintenance its change needs, batched, before it
/// returns; break-before-make holds throughout. Methods take `&mut self`: the caller's lock
/// around the VM plays the role of KVM's `mmu_lock`. The tree is freed on drop
/// (`kvm_free_stage2_pgd`).
///
/// `P` provides both seams: table pages ([`PageAllocator`]) and virtual addresses of guest
/// memory for its cache maintenance ([`GuestMemory`]), used when RAM is mapped for a guest
/// with its caches off, when execute permission is granted, when RAM is unmapped, by
/// [`flush_dcache_vm`](Self::flush_dcache_vm) and by [`replace_page`](Self::replace_page).
pub struct Stage2<A: Arch, P: PageAllocator + GuestMemory> {
    alloc: P,
    geom: Geometry,
    root: PhysAddr,
    vmid: u16,
    vttbr: u64,
    vtcr: u64,
    pa_bits: u8,
    cpu: CpuCaps,
    maint: A::Maint,
    slots: ArrayVec<Memslot, MAX_SLOTS>,
    next_slot: u16,
    /// False once the tree was freed (by `destroy`, before the drop that follows).
    live: bool,
    _a: PhantomData<A>,
}

impl<A: Arch, P: PageAllocator + GuestMemory> core::fmt::Debug for Stage2<A, P> {
    /// The VM's registers, geometry and memslots (not the tree: see
    /// [`dump`](Stage2::dump) and [`for_each_leaf`](Stage2::for_each_leaf)).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Stage2")
            .field("arch", &A::NAME)
            .field("vmid", &self.vmid)
            .field("geometry", &self.geom)
            .field("root", &self.root)
            .field("vttbr", &format_args!("{:#018x}", self.vttbr))
            .field("vtcr", &format_args!("{:#x}", self.vtcr))
            .field("pa_bits", &self.pa_bits)
            .field("slots", &self.slots.as_slice())
            .finish_non_exhaustive()
    }
}

/// The [`UnmapSink`] of stage 2: cleans and invalidates the data cache of every RAM leaf an
/// unmap removed (KVM's `kvm_flush_dcache_pte/pmd/pud`), never device memory
/// (`kvm_is_device_pfn`). The first failure to reach guest memory is kept; cleaning goes on
/// with the next range.
pub(crate) struct CleanRam<'a, M, G> {
    maint: &'a M,
    mem: &'a G,
    error: Option<GuestMemoryError>,
}

impl<'a, M: Maintenance, G: GuestMemory> CleanRam<'a, M, G> {
    pub(crate) fn new(maint: &'a M, mem: &'a G) -> Self {
        Self {
            maint,
            mem,
            error: None,
        }
    }

    pub(crate) fn result(self) -> Result<(), Error> {
        self.error.map_or(Ok(()), |e| Err(Error::GuestMemory(e)))
    }
}

impl<M: Maintenance, G: GuestMemory> UnmapSink<Stage2Attrs> for CleanRam<'_, M, G> {
    fn unmapped(&mut self, oa: PhysAddr, size: u64, attrs: Stage2Attrs) {
        if attrs.mem.is_device() {
            return;
        }
        if let Err(e) = guest_dcache(self.maint, self.mem, CacheOp::CleanInvalidate, oa, size) {
            self.error.get_or_insert(e);
        }
    }
}

impl<A: Arch, P: PageAllocator + GuestMemory> Stage2<A, P> {
    /// Allocates the zeroed root of a stage-2 tree for `ipa_bits`-bit IPAs (two concatenated,
    /// 8 KiB-aligned tables for 40 bits; one table of four entries for 32 bits; up to the
    /// CPU's PA size on ARMv8) and computes VTTBR and VTCR (`kvm_alloc_stage2_pgd`), for the
    /// CPU [`Arch::cpu_caps`] reports (on an ARMv8 target read from `ID_AA64MMFR0_EL1` and
    /// `ID_AA64MMFR1_EL1`: a Cortex-A53 has a 40-bit PA and 8-bit VMIDs, so 41- to 48-bit
    /// IPAs and VMIDs above 255 need a wider CPU).
    ///
    /// VMID 0 is refused ([`Error::HostVmid`]): it tags the host's own EL1&0 TLB entries
    /// (KVM never gives it to a VM). [`with_config`](Self::with_config) with
    /// [`Stage2Config::with_vmid0`] insists.
    pub fn new(alloc: P, ipa_bits: u8, vmid: u16) -> Result<Self, Error> {
        Self::with_config(alloc, Stage2Config::new(ipa_bits, vmid, A::cpu_caps()))
    }

    /// [`new`](Self::new) with the CPU properties (PA size, VMID size) given rather than read,
    /// and VMID 0 allowed if `config` says so.
    pub fn with_config(alloc: P, config: Stage2Config) -> Result<Self, Error> {
        let Stage2Config {
            ipa_bits,
            vmid,
            cpu,
            allow_vmid0,
        } = config;
        let geom = Geometry::new(<A::S2 as Format>::LIMITS, ipa_bits)?;
        if vmid == 0 && !allow_vmid0 {
            return Err(Error::HostVmid);
        }
        let pa_bits = cpu.pa_bits;
        let vtcr = A::vtcr(&geom, &cpu)?;
        // The VTTBR encoder refuses a VMID beyond the field: ask it before allocating the
        // root, so a refusal needs no undoing (the root address does not matter for that).
        A::vttbr(PhysAddr(0), &geom, vmid, &cpu)?;
        let pages = geom.root_pages();
        let root = if pages == 1 {
            alloc.alloc_zeroed()
        } else {
            alloc.alloc_contiguous_zeroed(pages)
        }
        .ok_or(Error::OutOfMemory)?;
        let vttbr = match A::vttbr(root, &geom, vmid, &cpu) {
            Ok(v) => v,
            Err(e) => {
                alloc.free(root, pages);
                return Err(e.into());
            }
        };
        Ok(Self {
            alloc,
            geom,
            root,
            vmid,
            vttbr,
            vtcr,
            pa_bits,
            cpu,
            maint: A::Maint::default(),
            slots: ArrayVec::new(),
            next_slot: 0,
            live: true,
            _a: PhantomData,
        })
    }

    /// VTTBR value: root address and VMID (`kvm->arch.vttbr`).
    pub fn vttbr(&self) -> u64 {
        self.vttbr
    }

    /// VTCR value for this VM's IPA size.
    pub fn vtcr(&self) -> u64 {
        self.vtcr
    }

    /// The VMID.
    pub fn vmid(&self) -> u16 {
        self.vmid
    }

    /// Loads this VM's stage 2 on the calling CPU: VTCR ([`vtcr`](Self::vtcr)), VTTBR
    /// ([`vttbr`](Self::vttbr)), then the `ISB` that makes them govern what follows
    /// ([`Arch::load_stage2`]; on the host the instructions are recorded). Call it on every
    /// CPU before it runs a vCPU of this VM: VTCR is per CPU, and on ARMv8 it may differ
    /// between VMs (IPA size). Then set `HCR.VM` (with the rest of your HCR) and enter the
    /// guest.
    ///
    /// # Safety
    ///
    /// Run in HYP mode / at EL2 (without VHE), with no vCPU of another VM running on this CPU.
    /// The tree must outlive every CPU's use of it: drop the `Stage2` only after every CPU
    /// stopped running the VM.
    pub unsafe fn load(&self) {
        // SAFETY: the caller's contract; vtcr and vttbr belong to this live tree.
        unsafe { A::load_stage2(self.vtcr, self.vttbr) }
    }

    /// The CPU properties the registers were computed for.
    pub fn cpu(&self) -> CpuCaps {
        self.cpu
    }

    /// The physical-address size output addresses must fit in ([`CpuCaps::pa_bits`]).
    pub fn pa_bits(&self) -> u8 {
        self.pa_bits
    }

    /// The tree's geometry.
    pub fn geometry(&self) -> Geometry {
        self.geom
    }

    /// Physical address of the root table.
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// The page allocator.
    pub fn allocator(&self) -> &P {
        &self.alloc
    }

    /// Pages a fault may take from the top-up cache: one table per level below the root, plus
    /// one for a block split.
    pub fn fault_pages(&self) -> usize {
        self.geom.max_tables_per_map() + 1
    }

    pub(crate) fn walker(&self) -> Walker<'_, A::S2, P> {
        // SAFETY: `root` is the `geom.root_pages()` zeroed pages `new` took from `alloc`,
        // written since only through pt-core, and freed only on drop; `&mut self` on every
        // changing method serialises the walks that write.
        unsafe { Walker::new(self.geom, self.root, &self.alloc) }
    }

    pub(crate) fn tlb(&self) -> TlbBatch<'_, A::Maint> {
        TlbBatch::new(&self.maint, TlbScope::Stage2 { vttbr: self.vttbr })
    }

    /// The maintenance backend (cache maintenance for the fault path).
    pub fn maint(&self) -> &A::Maint {
        &self.maint
    }

    pub(crate) fn checked_request(
        &self,
        ipa: Ipa,
        pa: PhysAddr,
        size: u64,
        attrs: Stage2Attrs,
        blocks: BlockSize,
    ) -> Result<MapRequest<Stage2Attrs>, Error> {
        if attrs.mem.is_device() && attrs.perms.exec() {
            return Err(Error::ExecutableDevice { ipa: ipa.0 });
        }
        Ok(MapRequest {
            ia: ipa.0,
            size,
            oa: pa,
            attrs,
            leaf_level: blocks.leaf_level(),
            oa_bits: self.pa_bits,
        })
    }

    /// Maps `[ipa, ipa + size)` to host memory at `pa` with `attrs`, using leaves up to
    /// `blocks` where alignment allows, tables from the allocator (`stage2_set_pte`,
    /// `stage2_set_pmd_huge`, `stage2_set_pud_huge`). Existing identical leaves are kept; any
    /// other existing mapping is [`Error::Conflict`]. Only invalid entries are written, so no
    /// TLB invalidation is needed; `DSB ISHST` makes the new entries visible to the table
    /// walkers before this returns. No cache maintenance: the caller owns the contents of
    /// what it maps this way (the fault path cleans what it maps). Device memory with execute
    /// permission is [`Error::ExecutableDevice`]. On error the tree is unchanged.
    pub fn map(
        &mut self,
        ipa: Ipa,
        pa: PhysAddr,
        size: u64,
        attrs: Stage2Attrs,
        blocks: BlockSize,
    ) -> Result<(), Error> {
        let req = self.checked_request(ipa, pa, size, attrs, blocks)?;
        ops::map(&self.walker(), &req, &self.maint).map_err(Error::from)
    }

    /// Maps guest RAM with `perms` (normal write-back memory, access flag set).
    pub fn map_ram(
        &mut self,
        ipa: Ipa,
        pa: PhysAddr,
        size: u64,
        perms: Perms,
        blocks: BlockSize,
    ) -> Result<(), Error> {
        self.map(ipa, pa, size, Stage2Attrs::ram(perms), blocks)
    }

    /// Maps a device range page by page with device nGnRE attributes, never executable
    /// (`kvm_phys_addr_ioremap`).
    pub fn map_device(
        &mut self,
        ipa: Ipa,
        pa: PhysAddr,
        size: u64,
        writable: bool,
    ) -> Result<(), Error> {
        self.map(
            ipa,
            pa,
            size,
            Stage2Attrs::device(writable),
            BlockSize::Page,
        )
    }

    /// The tables [`map_cached`](Self::map_cached) with these arguments would take from its
    /// cache, or the error it would return (no change to anything).
    pub fn map_tables_needed(
        &self,
        ipa: Ipa,
        pa: PhysAddr,
        size: u64,
        attrs: Stage2Attrs,
        blocks: BlockSize,
    ) -> Result<usize, Error> {
        let req = self.checked_request(ipa, pa, size, attrs, blocks)?;
        ops::tables_needed(&self.walker(), &req).map_err(Error::from)
    }

    /// Like [`map`](Self::map), but new tables come only from `cache` (the fault path, under
    /// the VM's lock): fails with [`Error::CacheExhausted`] before touching the tree when the
    /// cache holds too few pages, and never calls the allocator.
    pub fn map_cached<const N: usize>(
        &mut self,
        cache: &mut PageCache<N>,
        ipa: Ipa,
        pa: PhysAddr,
        size: u64,
        attrs: Stage2Attrs,
        blocks: BlockSize,
    ) -> Result<(), Error> {
        let req = self.checked_request(ipa, pa, size, attrs, blocks)?;
        ops::map_from(&self.walker(), &req, cache, &self.maint).map_err(Error::from)
    }

    /// Unmaps `[ipa, ipa + size)` (`unmap_stage2_range`): every leaf cleared, every table that
    /// becomes empty freed, the TLB entries invalidated (one by-IPA invalidation per leaf, or
    /// one whole-VMID flush above the batch threshold, always on ARMv7) before any table is
    /// freed. A block the range covers in part is unmapped whole, as KVM does; the guest faults
    /// the rest back in.
    ///
    /// Cache maintenance: once the TLB invalidation has completed, the data cache of every
    /// RAM leaf removed is cleaned and invalidated to the point of coherency through
    /// [`GuestMemory`] (KVM's `kvm_flush_dcache_pte/pmd/pud`: the guest may have written it
    /// with its caches off, and no stale line may survive for the memory's next owner);
    /// device memory is never cleaned. [`Error::GuestMemory`] means the range was unmapped
    /// but part of it could not be cleaned.
    pub fn unmap_range(&mut self, ipa: Ipa, size: u64) -> Result<(), Error> {
        let w = self.walker();
        let mut tlb = self.tlb();
        let mut clean = CleanRam::new(&self.maint, &self.alloc);
        ops::unmap_reporting(&w, ipa.0, size, PartialBlock::Whole, &mut tlb, &mut clean)?;
        clean.result()
    }

    /// Unmaps the RAM of every memslot (`stage2_unmap_vm`).
    pub fn unmap_vm(&mut self) -> Result<(), Error> {
        let ranges: ArrayVec<(Ipa, u64), MAX_SLOTS> = self
            .slots
            .iter()
            .map(|s| (s.desc.ipa, s.desc.size))
            .collect();
        for (ipa, size) in ranges {
            self.unmap_range(ipa, size)?;
        }
        Ok(())
    }

    /// Invalidates every TLB entry of this VM's VMID (`kvm_flush_remote_tlbs`).
    pub fn flush_tlb(&self) {
        let mut tlb = self.tlb();
        tlb.invalidate_all();
        tlb.sync();
    }

    /// The mapping of `ipa`, or `None`.
    #[inline]
    pub fn translate(&self, ipa: Ipa) -> Option<S2Translation> {
        let t = ops::translate(&self.walker(), ipa.0)?;
        Some(S2Translation {
            pa: t.oa,
            attrs: t.attrs,
            level: t.level,
            leaf_ipa: Ipa(t.leaf_ia),
            size: t.size(),
            desc: t.desc,
        })
    }

    /// Calls `f` for every leaf (block or page) of the tree, in IPA order: its IPA range
    /// ([`Leaf::ia`](pt_core::ops::Leaf::ia), [`size`](pt_core::ops::Leaf::size)), level,
    /// output address, decoded attributes and raw descriptor. The structured view of what
    /// [`dump`](Self::dump) prints (the dump is built on the same leaf records), for tools and
    /// tests. Read only: no TLB or cache duty.
    pub fn for_each_leaf(&self, f: impl FnMut(Leaf<Stage2Attrs>)) {
        ops::for_each_leaf(&self.walker(), 0, self.geom.ia_size(), f);
    }

    /// [`for_each_leaf`](Self::for_each_leaf) over `[ipa, ipa + size)` only: a leaf the range
    /// covers in part is reported with the part inside (its `ia`, `oa` and `size` cut to the
    /// range; `leaf_ia` and `desc` are the whole leaf's). A range reaching past the IPA space
    /// (or wrapping) visits nothing past it.
    pub fn for_each_leaf_in(&self, ipa: Ipa, size: u64, f: impl FnMut(Leaf<Stage2Attrs>)) {
        let end = ipa.0.saturating_add(size).min(self.geom.ia_size());
        ops::for_each_leaf(&self.walker(), ipa.0, end, f);
    }

    /// Clears the block that maps `ipa` and invalidates it, so that pages can be mapped in its
    /// place (`stage2_dissolve_pmd`, `stage2_dissolve_pud`). While the block's memslot is dirty
    /// logging, every page of the block is marked dirty (its contents may have changed through
    /// the block). Returns false when `ipa` is not mapped by a block.
    pub fn dissolve_block(&mut self, ipa: Ipa) -> Result<bool, Error> {
        let Some(t) = self.translate(ipa) else {
            return Ok(false);
        };
        if t.level == 3 {
            return Ok(false);
        }
        // No cache maintenance: the memory stays the guest's, mapped again page by page
        // (`stage2_dissolve_pmd` only clears and invalidates).
        let w = self.walker();
        let mut tlb = self.tlb();
        ops::unmap(&w, t.leaf_ipa.0, t.size, PartialBlock::Whole, &mut tlb)?;
        drop(tlb);
        // Every logging slot the block overlaps (a block mapped through `map` may straddle
        // slot boundaries): the pages of the intersection.
        let (lo, hi) = (t.leaf_ipa.0, t.leaf_ipa.0 + t.size);
        for s in &self.slots {
            if let Some(bm) = s.dirty {
                let (from, to) = (lo.max(s.desc.ipa.0), hi.min(s.end()));
                for ipa in (from..to).step_by(PAGE_SIZE as usize) {
                    bm.set(&self.alloc, s.page_index(Ipa(ipa)));
                }
            }
        }
        Ok(true)
    }

    /// Splits the block that maps `ipa`, down to pages, keeping every translation (a 1 GiB
    /// block becomes 2 MiB blocks, the one holding `ipa` then pages): block -> invalid ->
    /// invalidate -> table, with the new tables from `cache`. Returns the number of splits.
    pub fn split_block<const N: usize>(
        &mut self,
        cache: &mut PageCache<N>,
        ipa: Ipa,
    ) -> Result<usize, Error> {
        let needed = match self.translate(ipa) {
            Some(t) if t.level < 3 => (3 - t.level) as usize,
            Some(_) => return Ok(0),
            None => return Err(Error::NotMapped { ia: ipa.0 }),
        };
        if cache.available() < needed {
            return Err(Error::CacheExhausted {
                needed,
                available: cache.available(),
            });
        }
        let mut splits = 0;
        let w = self.walker();
        let mut tlb = self.tlb();
        while ops::split_block(&w, ipa.0, cache, &mut tlb)? {
            splits += 1;
        }
        Ok(splits)
    }

    fn write_protect(&mut self, ipa: u64, size: u64) -> Result<usize, Error> {
        let w = self.walker();
        let mut tlb = self.tlb();
        ops::update_attrs(
            &w,
            ipa,
            size,
            PartialBlock::Whole,
            &mut tlb,
            logged_read_only,
        )
        .map_err(Error::from)
    }

    /// Write-protects every leaf in `[ipa, ipa + size)` for dirty logging (`stage2_wp_range`,
    /// whose per-level helpers `stage2_wp_puds`, `stage2_wp_pmds` and `stage2_wp_ptes` are
    /// the one level-generic visitor [`pt_core::ops::update`]):
    /// each writable leaf loses write permission and gets the software "logged" bit, so the
    /// fault path knows it may give write permission back. One invalidation per changed leaf
    /// (or one VMID flush). Returns the number of leaves changed.
    pub fn write_protect_range(&mut self, ipa: Ipa, size: u64) -> Result<usize, Error> {
        self.write_protect(ipa.0, size)
    }

    /// Write-protects every leaf of memslot `id` (`kvm_mmu_wp_memory_region`).
    pub fn write_protect_slot(&mut self, id: SlotId) -> Result<usize, Error> {
        let s = *self.slot(id).ok_or(Error::NoSuchSlot(id))?;
        self.write_protect(s.desc.ipa.0, s.desc.size)
    }

    /// Write-protects the pages `gfn_offset + i` of memslot `id` for every bit `i` set in
    /// `mask` (`kvm_mmu_write_protect_pt_masked`): one walk over the span of set bits and one
    /// TLB batch for the whole mask, touching only the leaves that map a page of a set bit (a
    /// block whole, when any of its pages is). A bit outside the slot is
    /// [`Error::OutsideSlot`] before anything changes.
    pub fn write_protect_masked(
        &mut self,
        id: SlotId,
        gfn_offset: u64,
        mask: u64,
    ) -> Result<usize, Error> {
        let s = *self.slot(id).ok_or(Error::NoSuchSlot(id))?;
        let mut m = mask;
        while m != 0 {
            let page = gfn_offset.saturating_add(m.trailing_zeros() as u64);
            if page >= s.pages() {
                return Err(Error::OutsideSlot { slot: id, at: page });
            }
            m &= m - 1;
        }
        self.write_protect_bits(&s, gfn_offset, &[mask])
    }

    /// Write-protects, in one walk and one TLB batch, every writable leaf of slot `s` that
    /// maps a page `first_page + 64 * w + i` for a bit `i` set in `bits[w]`; a block counts
    /// when any of its pages does and is protected whole. Every set bit must be a page of the
    /// slot. Returns the number of leaves changed.
    fn write_protect_bits(
        &mut self,
        s: &Memslot,
        first_page: u64,
        bits: &[u64],
    ) -> Result<usize, Error> {
        let Some(lo_w) = bits.iter().position(|&w| w != 0) else {
            return Ok(0);
        };
        let hi_w = bits.iter().rposition(|&w| w != 0).unwrap_or(lo_w);
        let lo = lo_w as u64 * 64 + bits[lo_w].trailing_zeros() as u64;
        let hi = hi_w as u64 * 64 + 64 - bits[hi_w].leading_zeros() as u64;
        let base = s.desc.ipa.0 + (first_page << PAGE_SHIFT);
        let (start, end) = (base + (lo << PAGE_SHIFT), base + (hi << PAGE_SHIFT));
        let set = |i: u64| bits[(i / 64) as usize] >> (i % 64) & 1 != 0;
        let w = self.walker();
        let mut tlb = self.tlb();
        ops::update(
            &w,
            start,
            end - start,
            PartialBlock::Whole,
            &mut tlb,
            |ia, level, _, a: Stage2Attrs| {
                let from = (ia.max(start) - base) >> PAGE_SHIFT;
                let to = ((ia + pt_core::entry_size(level)).min(end) - base) >> PAGE_SHIFT;
                if (from..to).any(set) {
                    logged_read_only(a)
                } else {
                    a
                }
            },
        )
        .map_err(Error::from)
    }

    /// Gives write permission back to the leaf mapping `ipa` if the hypervisor had taken it
    /// (the "logged" bit: dirty logging, or [`replace_page`](Self::replace_page)): the
    /// write-fault path. Returns false when the leaf was not write-protected that way, and
    /// always inside a read-only memslot (whose pages never become writable).
    pub fn make_writable(&mut self, ipa: Ipa) -> Result<bool, Error> {
        if self.find_slot(ipa).is_some_and(|s| s.desc.flags.readonly) {
            return Ok(false);
        }
        let w = self.walker();
        let mut tlb = self.tlb();
        let page = ipa.0 & !(PAGE_SIZE - 1);
        let n = ops::update(
            &w,
            page,
            PAGE_SIZE,
            PartialBlock::Whole,
            &mut tlb,
            |_, _, _, a: Stage2Attrs| {
                if a.logged {
                    Stage2Attrs {
                        perms: a.perms.with(Perms::W),
                        logged: false,
                        ..a
                    }
                } else {
                    a
                }
            },
        )?;
        Ok(n > 0)
    }

    /// Cleans and invalidates to the point of coherency the data cache of all RAM mapped in
    /// every memslot, a whole block at once where a block is mapped, skipping device mappings
    /// (`stage2_flush_vm`, which skips `kvm_is_device_pfn`): what a guest's set/way cache
    /// maintenance and its cache enable/disable need (`kvm_set_way_flush`,
    /// `kvm_toggle_cache`). Returns the number of range operations issued; a range the
    /// guest-memory port cannot lend is [`Error::GuestMemory`] after the others were cleaned.
    pub fn flush_dcache_vm(&self) -> Result<usize, Error> {
        let w = self.walker();
        let mut ops_issued = 0;
        let mut error = None;
        for s in &self.slots {
            ops::for_each_leaf(&w, s.desc.ipa.0, s.end(), |leaf| {
                if leaf.attrs.mem.is_device() {
                    return;
                }
                let r = guest_dcache(
                    &self.maint,
                    &self.alloc,
                    CacheOp::CleanInvalidate,
                    leaf.oa,
                    leaf.size,
                );
                match r {
                    Ok(()) => ops_issued += 1,
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                }
            });
        }
        error.map_or(Ok(ops_issued), |e| Err(Error::GuestMemory(e)))
    }

    /// Whether the leaf mapping `ipa` has its access flag set (`kvm_test_age_hva`).
    pub fn test_age(&self, ipa: Ipa) -> bool {
        self.translate(ipa).is_some_and(|t| t.attrs.accessed)
    }

    fn set_af(&mut self, ipa: Ipa, accessed: bool) -> Result<bool, Error> {
        let w = self.walker();
        let mut tlb = self.tlb();
        let page = ipa.0 & !(PAGE_SIZE - 1);
        let mut was = false;
        ops::update(
            &w,
            page,
            PAGE_SIZE,
            PartialBlock::Whole,
            &mut tlb,
            |_, _, _, a: Stage2Attrs| {
                was = a.accessed;
                Stage2Attrs { accessed, ..a }
            },
        )?;
        Ok(was)
    }

    /// Clears the access flag of the leaf mapping `ipa` and says whether it was set
    /// (`kvm_age_hva`); the next guest access takes an access-flag fault.
    pub fn test_and_clear_age(&mut self, ipa: Ipa) -> Result<bool, Error> {
        self.set_af(ipa, false)
    }

    /// Sets the access flag of the leaf mapping `ipa` (`handle_access_fault`). Returns whether
    /// it was already set. Setting it is a permission-only change: no break, but the old entry
    /// is invalidated.
    pub fn set_access_flag(&mut self, ipa: Ipa) -> Result<bool, Error> {
        if self.translate(ipa).is_none() {
            return Err(Error::NotMapped { ia: ipa.0 });
        }
        self.set_af(ipa, true)
    }

    /// Points the page mapping `ipa` at `new_pa` with break-before-make (`kvm_set_spte_hva`, the
    /// MMU notifier's change_pte): the new page's data cache is cleaned and invalidated to
    /// the point of coherency first (`clean_dcache_guest_page`), and it is mapped as KVM's
    /// `PAGE_S2`: normal memory, read-only, not executable, access flag set, so the guest's
    /// next write faults (the page may be shared, e.g. after a copy-on-write or a merge) and is
    /// made writable again by the fault path (the "logged" bit, outside read-only slots), and
    /// the next instruction fetch grants execute permission with the I-cache maintenance that
    /// needs. A block at `ipa` is dissolved instead and the page left for the next fault, as
    /// KVM does. Returns whether a page was replaced.
    pub fn replace_page(&mut self, ipa: Ipa, new_pa: PhysAddr) -> Result<bool, Error> {
        if new_pa.0 % PAGE_SIZE != 0 {
            return Err(Error::UnalignedOutput { oa: new_pa.0 });
        }
        if new_pa
            .0
            .checked_add(PAGE_SIZE)
            .is_none_or(|e| e > 1u64 << self.pa_bits)
        {
            return Err(Error::OutputTooLarge {
                end: new_pa.0.saturating_add(PAGE_SIZE),
                bits: self.pa_bits,
            });
        }
        match self.translate(ipa) {
            None => Ok(false),
            Some(t) if t.level < 3 => self.dissolve_block(ipa).map(|_| false),
            Some(_) => {
                guest_dcache(
                    &self.maint,
                    &self.alloc,
                    CacheOp::CleanInvalidate,
                    new_pa,
                    PAGE_SIZE,
                )?;
                let readonly_slot = self.find_slot(ipa).is_none_or(|s| s.desc.flags.readonly);
                let attrs = Stage2Attrs {
                    logged: !readonly_slot,
                    ..Stage2Attrs::ram(Perms::R)
                };
                let w = self.walker();
                let mut tlb = self.tlb();
                let page = ipa.0 & !(PAGE_SIZE - 1);
                let mut v = Replace {
                    new_pa,
                    attrs,
                    tlb: &mut tlb,
                };
                let Ok(()) = w.walk(page, page + PAGE_SIZE, &mut v);
                Ok(true)
            }
        }
    }

    // ----- memslots -------------------------------------------------------------------

    /// Registers a memslot (`kvm_arch_prepare_memory_region`): page aligned, inside the IPA
    /// space and the output size, not overlapping another slot. Nothing is mapped: RAM is
    /// demand-paged by the fault handler. With `log_dirty` set, a dirty bitmap is allocated.
    pub fn add_memslot(&mut self, desc: SlotDesc) -> Result<SlotId, Error> {
        let r = AddrRange::new(desc.ipa, desc.size)?;
        if r.end().0 > self.geom.ia_size() {
            return Err(Error::InputTooLarge {
                end: r.end().0,
                limit: self.geom.ia_size(),
            });
        }
        AddrRange::new(desc.host, desc.size)?;
        if desc.host.0 + desc.size > 1u64 << self.pa_bits {
            return Err(Error::OutputTooLarge {
                end: desc.host.0 + desc.size,
                bits: self.pa_bits,
            });
        }
        if let Some(s) = self
            .slots
            .iter()
            .find(|s| AddrRange::new(s.desc.ipa, s.desc.size).is_ok_and(|o| o.overlaps(&r)))
        {
            return Err(Error::SlotOverlap { existing: s.id });
        }
        if self.slots.is_full() {
            return Err(Error::TooManySlots);
        }
        let dirty = if desc.flags.log_dirty {
            Some(Bitmap::alloc(&self.alloc, desc.size >> 12).ok_or(
                if desc.size >> 12 > 16 * crate::bitmap::BITS_PER_PAGE {
                    Error::SlotTooLarge { size: desc.size }
                } else {
                    Error::OutOfMemory
                },
            )?)
        } else {
            None
        };
        // Ids count up and wrap; one still in use is skipped, so a new slot never takes the id
        // of a live one (at most MAX_SLOTS ids are live, so this ends).
        let mut id = SlotId(self.next_slot);
        while self.slots.iter().any(|s| s.id == id) {
            id = SlotId(id.0.wrapping_add(1));
        }
        self.next_slot = id.0.wrapping_add(1);
        self.slots.push(Memslot { id, desc, dirty });
        Ok(id)
    }

    /// Unmaps and forgets memslot `id` (`kvm_arch_flush_shadow_memslot`), freeing its bitmap.
    pub fn remove_memslot(&mut self, id: SlotId) -> Result<(), Error> {
        let i = self
            .slots
            .iter()
            .position(|s| s.id == id)
            .ok_or(Error::NoSuchSlot(id))?;
        let s = self.slots[i];
        self.unmap_range(s.desc.ipa, s.desc.size)?;
        if let Some(bm) = s.dirty {
            bm.free(&self.alloc);
        }
        self.slots.remove(i);
        Ok(())
    }

    /// Memslot `id`.
    pub fn slot(&self, id: SlotId) -> Option<&Memslot> {
        self.slots.iter().find(|s| s.id == id)
    }

    /// Every memslot.
    pub fn slots(&self) -> &[Memslot] {
        &self.slots
    }

    fn slot_index(&self, ipa: Ipa) -> Option<usize> {
        self.slots.iter().position(|s| s.contains(ipa))
    }

    /// The memslot holding `ipa` (`gfn_to_memslot`).
    pub fn find_slot(&self, ipa: Ipa) -> Option<&Memslot> {
        self.slot_index(ipa).map(|i| &self.slots[i])
    }

    /// Starts dirty logging on slot `id`: allocates its bitmap and write-protects what is
    /// mapped (`KVM_MEM_LOG_DIRTY_PAGES` + `kvm_mmu_wp_memory_region`). Blocks stay blocks
    /// until their first write fault dissolves them.
    pub fn enable_dirty_logging(&mut self, id: SlotId) -> Result<(), Error> {
        let i = self
            .slots
            .iter()
            .position(|s| s.id == id)
            .ok_or(Error::NoSuchSlot(id))?;
        if self.slots[i].dirty.is_none() {
            let bits = self.slots[i].pages();
            let bm = Bitmap::alloc(&self.alloc, bits).ok_or(
                if bits > 16 * crate::bitmap::BITS_PER_PAGE {
                    Error::SlotTooLarge {
                        size: self.slots[i].desc.size,
                    }
                } else {
                    Error::OutOfMemory
                },
            )?;
            self.slots[i].dirty = Some(bm);
        }
        self.slots[i].desc.flags.log_dirty = true;
        self.write_protect_slot(id)?;
        Ok(())
    }

    /// Stops dirty logging on slot `id` and frees its bitmap. Pages stay read-only until their
    /// next write fault makes them writable again.
    pub fn disable_dirty_logging(&mut self, id: SlotId) -> Result<(), Error> {
        let i = self
            .slots
            .iter()
            .position(|s| s.id == id)
            .ok_or(Error::NoSuchSlot(id))?;
        self.slots[i].desc.flags.log_dirty = false;
        if let Some(bm) = self.slots[i].dirty.take() {
            bm.free(&self.alloc);
        }
        Ok(())
    }

    /// Records that the guest wrote the page holding `ipa` (`mark_page_dirty`). No-op outside
    /// a logging slot.
    pub fn mark_dirty(&mut self, ipa: Ipa) {
        if let Some(i) = self.slot_index(ipa) {
            if let Some(bm) = self.slots[i].dirty {
                bm.set(&self.alloc, self.slots[i].page_index(ipa));
            }
        }
    }

    /// Whether page `index` of slot `id` is marked dirty.
    pub fn is_dirty(&self, id: SlotId, index: u64) -> Result<bool, Error> {
        let s = self.slot(id).ok_or(Error::NoSuchSlot(id))?;
        let bm = s.dirty.ok_or(Error::NotLogging(id))?;
        if index >= s.pages() {
            return Err(Error::OutsideSlot {
                slot: id,
                at: index,
            });
        }
        Ok(bm.get(&self.alloc, index))
    }

    /// Fetches and clears the dirty log of slot `id` into `out` (one bit per page, bit `i` of
    /// word `w` = page `64 * w + i`), and write-protects the pages that were dirty so their
    /// next write is logged again (`kvm_vm_ioctl_get_dirty_log` with
    /// `kvm_mmu_write_protect_pt_masked`). `out` must hold at least `ceil(pages / 64)` words,
    /// else [`Error::DirtyLogBufferTooSmall`] (nothing read or cleared). Returns the number of
    /// dirty pages.
    pub fn get_dirty_log(&mut self, id: SlotId, out: &mut [u64]) -> Result<u64, Error> {
        let s = *self.slot(id).ok_or(Error::NoSuchSlot(id))?;
        let bm = s.dirty.ok_or(Error::NotLogging(id))?;
        if out.len() < bm.words() {
            return Err(Error::DirtyLogBufferTooSmall {
                slot: id,
                words: out.len(),
                needed: bm.words(),
            });
        }
        let words = bm.words();
        let mut count = 0;
        for (w, o) in out.iter_mut().enumerate().take(words) {
            let v = bm.word(&self.alloc, w);
            *o = v;
            if v != 0 {
                bm.set_word(&self.alloc, w, 0);
                count += v.count_ones() as u64;
            }
        }
        // One walk and one TLB batch for the whole log.
        self.write_protect_bits(&s, 0, &out[..words])?;
        Ok(count)
    }

    /// Frees every table and bitmap (`kvm_free_stage2_pgd`): one whole-VMID invalidation, the
    /// data cache of every RAM leaf cleaned and invalidated (as KVM's `unmap_stage2_range` over
    /// the whole IPA space does), then every page back to the allocator. Dropping the value
    /// does the same; this reports [`Error::GuestMemory`] when part of the RAM could not be
    /// cleaned (every page is freed all the same).
    pub fn destroy(mut self) -> Result<(), Error> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), Error> {
        if !self.live {
            return Ok(());
        }
        self.live = false;
        for s in self.slots.drain(..) {
            if let Some(bm) = s.dirty {
                bm.free(&self.alloc);
            }
        }
        let w = self.walker();
        let mut tlb = TlbBatch::new(&self.maint, TlbScope::Stage2 { vttbr: self.vttbr });
        let mut clean = CleanRam::new(&self.maint, &self.alloc);
        ops::free_tree_reporting(&w, &mut tlb, &mut clean);
        drop(tlb);
        clean.result()
    }
}

impl<A: Arch, P: PageAllocator + GuestMemory> Drop for Stage2<A, P> {
    /// [`destroy`](Stage2::destroy), without the report.
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// The attributes dirty logging gives a writable leaf: read-only, with the software "logged"
/// bit so the fault path may give write permission back. Other leaves are left as they are.
fn logged_read_only(a: Stage2Attrs) -> Stage2Attrs {
    if a.perms.write() {
        Stage2Attrs {
            perms: a.perms.without(Perms::W),
            logged: true,
            ..a
        }
    } else {
        a
    }
}

/// Replaces the page of a one-page walk, with break-before-make.
struct Replace<'t, 'm, M: pt_core::Maintenance> {
    new_pa: PhysAddr,
    attrs: Stage2Attrs,
    tlb: &'t mut TlbBatch<'m, M>,
}

impl<F, P, M> Visitor<F, P> for Replace<'_, '_, M>
where
    F: Format<Attrs = Stage2Attrs>,
    P: PageAllocator,
    M: pt_core::Maintenance,
{
    type Error = core::convert::Infallible;
    const TABLE_VISITS: bool = false;

    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, Self::Error> {
        if let Entry::Leaf { .. } = run.decode(0) {
            let new = F::encode_leaf(self.new_pa, self.attrs, run.level());
            // A leaf descriptor, which break_before_make always writes.
            let written = ops::break_before_make(run, 0, new, self.tlb);
            debug_assert!(written);
        }
        Ok(LeafFlow::Done)
    }
}
