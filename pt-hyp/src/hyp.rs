//! The hyp-mode manager: the hypervisor's own stage-1 tables (HTTBR on ARMv7 HYP mode,
//! TTBR0_EL2 on ARMv8 EL2), in the manner of KVM/ARM's `create_hyp_mappings`,
//! `create_hyp_io_mappings`, `create_hyp_exec_mappings`, the identity map of `kvm_mmu_init`,
//! and `free_hyp_pgds`.
//!
//! [`HypTables`] owns one tree, walked by pt-core's one walker through its operations
//! ([`pt_core::ops`]); every TLB invalidation goes through a [`TlbBatch`] with
//! [`TlbScope::Hyp`]. Its hyp VA space (`va_bits`, up to 32 on ARMv7 and 48 on ARMv8) holds:
//!
//! - ranges the caller maps ([`HypTables::map_range`], [`HypTables::create_mappings`]), with
//!   [`Stage1Attrs`]: blocks where VA, PA and size allow, pages otherwise;
//! - a private I/O area ([`IoArea`]) from which [`HypTables::create_io_mappings`] and
//!   [`HypTables::create_exec_mappings`] choose VAs;
//! - the identity map ([`HypTables::map_idmap`]): the page(s) of the MMU-enable code at
//!   VA == PA.
//!
//! Writable-and-executable mappings are refused unless asked for by name
//! ([`HypTables::map_range_allow_wx`]). Stage-2 attributes cannot be passed at all:
//!
//! ```compile_fail
//! use pt_core::testkit::Arena;
//! use pt_hyp::hyp::{HypConfig, HypTables};
//! use pt_hyp::{Armv8, Perms, PhysAddr, Stage2Attrs, VirtAddr};
//!
//! let arena = Arena::standard();
//! let config = HypConfig::new(39, 40, VirtAddr(0x7f_c000_0000), 1 << 30);
//! let mut hyp = HypTables::<Armv8, _>::new(&arena, config).unwrap();
//! // A stage-2 attribute in a hyp table: does not compile.
//! hyp.map_range(VirtAddr(0x4000_0000), PhysAddr(0x4000_0000), 0x1000, Stage2Attrs::ram(Perms::RW))
//!     .unwrap();
//! ```
//!
//! The same with hyp attributes:
//!
//! ```
//! use pt_core::testkit::Arena;
//! use pt_hyp::hyp::{HypConfig, HypTables};
//! use pt_hyp::{Armv8, Perms, PhysAddr, Stage1Attrs, VirtAddr};
//!
//! let arena = Arena::standard();
//! let config = HypConfig::new(39, 40, VirtAddr(0x7f_c000_0000), 1 << 30);
//! let mut hyp = HypTables::<Armv8, _>::new(&arena, config).unwrap();
//! hyp.map_range(VirtAddr(0x4000_0000), PhysAddr(0x4000_0000), 0x1000, Stage1Attrs::normal(Perms::RW))
//!     .unwrap();
//! hyp.free();
//! assert_eq!(arena.live_pages(), 0);
//! ```

mod convert;
mod error;
mod io_area;
mod regs;

pub use convert::{LinearMap, VaConversion};
pub use error::HypError;
pub use io_area::IoArea;
pub use regs::{HypArch, HypMmuRegs, HypRegsArch};

/// Turns the hyp MMU of the calling CPU on with `regs`, in the order the architecture requires
/// (KVM's `__do_hyp_init` / `__kvm_hyp_init`): the memory-attribute, translation-control and
/// table-base registers, `ISB`, a local invalidation of the hyp TLB (`TLBIALLH` /
/// `TLBI ALLE2`) and `DSB ISH`, then the whole system control register
/// ([`HypMmuRegs::sctlr`]) and `ISB`. On the host the instructions are recorded.
///
/// Every CPU runs it once, with the same `regs` (keep them: [`HypTables::leak`] gives up
/// the tables, the values stay valid).
///
/// # Safety
///
/// `regs` must come from [`HypTables::mmu_regs`] of architecture `A`, for tables that stay
/// allocated (leaked) for as long as any CPU uses them. Run in HYP mode / at EL2 (without
/// VHE), from code that those tables identity map ([`HypTables::map_idmap`]), with everything
/// the hypervisor touches next (code, stack, data) mapped in them.
pub unsafe fn enable_mmu<A: HypArch>(regs: &HypMmuRegs) {
    // SAFETY: the caller's contract.
    unsafe { A::enable_mmu(regs) }
}

use crate::arch::{Arch, RegisterError};
use core::marker::PhantomData;
use pt_core::ops::{self, MapRequest, PartialBlock, Translation};
use pt_core::{
    entry_size, AddrRange, Barrier, Entries, Entry, Format, Geometry, LeafFlow, Maintenance,
    PageAllocator, Perms, PhysAddr, Stage1Attrs, TlbBatch, TlbScope, VirtAddr, Visitor, Walker,
    PAGE_SIZE,
};

/// The shape of a hyp VA space: its size, the physical-address size, and where the private
/// I/O area lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypConfig {
    /// Hyp VA size in bits: 25..=32 on ARMv7 (HTCR.T0SZ), 25..=48 on ARMv8 (TCR_EL2.T0SZ).
    pub va_bits: u8,
    /// Physical-address size in bits (32..=40 on both supported CPUs; ARMv8 encodes it in
    /// TCR_EL2.PS). Every output address must fit.
    pub pa_bits: u8,
    /// First VA of the private I/O area (page aligned).
    pub io_base: VirtAddr,
    /// Size of the I/O area in bytes (page aligned, non-zero).
    pub io_size: u64,
}

impl HypConfig {
    /// A configuration with every field given.
    pub const fn new(va_bits: u8, pa_bits: u8, io_base: VirtAddr, io_size: u64) -> Self {
        Self {
            va_bits,
            pa_bits,
            io_base,
            io_size,
        }
    }
}

/// Whether a mapping may be writable and executable at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wx {
    Refuse,
    Allow,
}

/// The hypervisor's own translation tables (KVM's `hyp_pgd`): one hyp-mode stage-1 tree of
/// architecture `A`, with its tables from `P`.
///
/// Mapping only ever turns invalid entries valid (a different live mapping is an error), so
/// it needs no TLB maintenance; unmapping invalidates by VA (`HypVa`) up to
/// [`TLB_BATCH_THRESHOLD`](pt_core::TLB_BATCH_THRESHOLD) entries and with one `HypAll` beyond;
/// freeing issues one `HypAll` before giving the tables back. Dropping the value frees the
/// tables like [`free`](Self::free).
pub struct HypTables<A: Arch, P: PageAllocator> {
    alloc: P,
    maint: A::Maint,
    geom: Geometry,
    root: PhysAddr,
    pa_bits: u8,
    io: IoArea,
    idmap: Option<(PhysAddr, u64)>,
    _arch: PhantomData<A>,
}

impl<A: Arch, P: PageAllocator> core::fmt::Debug for HypTables<A, P> {
    /// Geometry, root, PA size, I/O area and identity map (not the tree: see
    /// [`dump`](HypTables::dump) and [`for_each_leaf`](HypTables::for_each_leaf)).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HypTables")
            .field("arch", &A::NAME)
            .field("geometry", &self.geom)
            .field("root", &self.root)
            .field("pa_bits", &self.pa_bits)
            .field("io", &self.io)
            .field("idmap", &self.idmap)
            .finish_non_exhaustive()
    }
}

impl<A: Arch, P: PageAllocator> HypTables<A, P> {
    /// An empty hyp tree for `config`, its root allocated from `alloc` (KVM's `kvm_mmu_init`
    /// allocating `hyp_pgd`). No TLB duty: nothing is mapped yet (invalidate the hyp TLB
    /// before turning the MMU on, see [`HypMmuRegs`]).
    ///
    /// Errors: a VA size the architecture does not allow ([`HypError::Geometry`]), a PA size
    /// the descriptors cannot hold, an I/O area that is empty, unaligned or outside the VA
    /// space, or no page for the root.
    pub fn new(alloc: P, config: HypConfig) -> Result<Self, HypError> {
        let geom = Geometry::new(<A::Hyp as Format>::LIMITS, config.va_bits)
            .map_err(HypError::Geometry)?;
        let max = <A::Hyp as Format>::MAX_OA_BITS;
        if config.pa_bits < 32 || config.pa_bits > max {
            return Err(HypError::UnsupportedPaBits {
                bits: config.pa_bits,
                max,
            });
        }
        let io = IoArea::new(config.io_base, config.io_size, geom.ia_size())?;
        let root = match geom.root_pages() {
            1 => alloc.alloc_zeroed(),
            n => alloc.alloc_contiguous_zeroed(n),
        }
        .ok_or(HypError::OutOfMemory)?;
        Ok(Self {
            alloc,
            maint: A::Maint::default(),
            geom,
            root,
            pa_bits: config.pa_bits,
            io,
            idmap: None,
            _arch: PhantomData,
        })
    }

    /// The root table (the value behind HTTBR / TTBR0_EL2).
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// The geometry of the tree (VA size, start level).
    pub fn geometry(&self) -> Geometry {
        self.geom
    }

    /// The physical-address size mappings must fit in.
    pub fn pa_bits(&self) -> u8 {
        self.pa_bits
    }

    /// The private I/O area and how much of it is handed out.
    pub fn io_area(&self) -> &IoArea {
        &self.io
    }

    /// The identity-mapped range, `(start, size)`, once [`map_idmap`](Self::map_idmap)
    /// succeeded (KVM's `hyp_idmap_start`, `hyp_idmap_end - hyp_idmap_start`).
    pub fn idmap(&self) -> Option<(PhysAddr, u64)> {
        self.idmap
    }

    /// The page allocator the tables come from.
    pub fn alloc(&self) -> &P {
        &self.alloc
    }

    /// The maintenance backend the TLB invalidations go through.
    pub fn maint(&self) -> &A::Maint {
        &self.maint
    }

    pub(crate) fn walker(&self) -> Walker<'_, A::Hyp, P> {
        // SAFETY: `root` is the zeroed root `new` took from `alloc`, written since only through
        // pt-core and freed only on drop; `&mut self` on every changing method serialises the
        // walks that write.
        unsafe { Walker::new(self.geom, self.root, &self.alloc) }
    }

    /// The mapping of hyp VA `va` (page offset included), or `None` when it is unmapped or
    /// outside the VA space: the walk the hardware does. No TLB duty.
    pub fn translate(&self, va: VirtAddr) -> Option<Translation<Stage1Attrs>> {
        ops::translate(&self.walker(), va.0)
    }

    /// Calls `f` for every leaf (block or page) of the hyp tree, in VA order: VA range, level,
    /// output address, decoded attributes and raw descriptor (the records the
    /// [`dump`](Self::dump) is built on). Read only: no TLB duty.
    pub fn for_each_leaf(&self, f: impl FnMut(ops::Leaf<Stage1Attrs>)) {
        ops::for_each_leaf(&self.walker(), 0, self.geom.ia_size(), f);
    }

    /// Maps hyp VAs `[va, va + size)` to `[pa, pa + size)` with `attrs` (the core of
    /// `create_hyp_mappings`, `__create_hyp_mappings`): 1 GiB and 2 MiB blocks where VA, PA
    /// and size are aligned to them, pages elsewhere. Writable together with executable is
    /// refused ([`HypError::WriteExec`]); see [`map_range_allow_wx`](Self::map_range_allow_wx).
    ///
    /// Parts already mapped identically are kept; a different live mapping in the range is a
    /// [`HypError::Conflict`] (or [`HypError::IdmapCollision`] inside the identity map). The
    /// private I/O area is refused ([`HypError::InIoArea`]). On every error the tables are
    /// unchanged. No TLB duty: only invalid entries become valid.
    pub fn map_range(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        size: u64,
        attrs: Stage1Attrs,
    ) -> Result<(), HypError> {
        self.map_checked(va, pa, size, attrs, Wx::Refuse)
    }

    /// [`map_range`](Self::map_range) that accepts writable-and-executable `attrs`: the
    /// explicit opt-in (KVM's `PAGE_HYP_EXEC` is read-only; a hypervisor that patches its own
    /// code asks for this by name). Same TLB duty: none.
    pub fn map_range_allow_wx(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        size: u64,
        attrs: Stage1Attrs,
    ) -> Result<(), HypError> {
        self.map_checked(va, pa, size, attrs, Wx::Allow)
    }

    /// Maps the kernel virtual range `[from, to)` into hyp mode at the hyp VAs and physical
    /// pages `conv` gives it (`create_hyp_mappings(from, to, prot)`: "the same virtual address
    /// as the kernel virtual address is also used in Hyp-mode mapping (modulo
    /// HYP_PAGE_OFFSET) to the same underlying physical pages"). `from` and `to` must be page
    /// aligned. Writable-and-executable `attrs` are refused.
    ///
    /// The range is split into runs that convert linearly (one run for a [`LinearMap`]); every
    /// run is checked (range, VA size, PA size, I/O area, conflicts) before the first is
    /// mapped, so an error leaves the tables unchanged, except when the page allocator runs
    /// out (or two runs of a non-linear conversion collide) after the first run was mapped:
    /// the runs before stay mapped, as in KVM. No TLB duty: only invalid entries become valid.
    pub fn create_mappings<C: VaConversion + ?Sized>(
        &mut self,
        from: u64,
        to: u64,
        conv: &C,
        attrs: Stage1Attrs,
    ) -> Result<(), HypError> {
        let range = AddrRange::from_bounds(VirtAddr(from), VirtAddr(to))?;
        let attrs = self.check_attrs(VirtAddr(from), attrs, Wx::Refuse)?;
        let (start, end) = (range.start().0, range.end().0);
        for_each_run(conv, start, end, |va, pa, size| {
            self.check_run(va, pa, size, attrs)
        })?;
        for_each_run(conv, start, end, |va, pa, size| {
            self.map_raw(va, pa, size, attrs)
        })
    }

    /// Maps the device range `[pa, pa + size)` at hyp VAs chosen from the private I/O area
    /// and returns the first one (`create_hyp_io_mappings`' `haddr`): Device-nGnRE,
    /// read/write, never executable. `pa` and `size` must be page aligned. The VA is aligned
    /// like `pa` to the largest block (1 GiB, 2 MiB) that `pa` and `size` allow when the area
    /// has room for that, so the range maps with blocks; else page aligned.
    ///
    /// Errors: bad `pa`/`size`, [`HypError::IoAreaFull`], out of memory; the area and the
    /// tables are then unchanged. No TLB duty: the chosen VAs were never mapped.
    pub fn create_io_mappings(&mut self, pa: PhysAddr, size: u64) -> Result<VirtAddr, HypError> {
        self.map_private(pa, size, Stage1Attrs::device())
    }

    /// Maps `[pa, pa + size)` read-only and executable (normal write-back memory) at hyp VAs
    /// chosen from the private I/O area and returns the first one (`create_hyp_exec_mappings`,
    /// used for the hardened exception vectors). Same rules, errors and TLB duty as
    /// [`create_io_mappings`](Self::create_io_mappings).
    pub fn create_exec_mappings(&mut self, pa: PhysAddr, size: u64) -> Result<VirtAddr, HypError> {
        self.map_private(pa, size, Stage1Attrs::normal(Perms::RX))
    }

    /// Maps `[pa, pa + size)` at VA == PA, read-only and executable: the identity map that the
    /// code turning the MMU on runs from (KVM's `hyp_idmap_start..hyp_idmap_end`, mapped by
    /// `kvm_mmu_init`). `pa` and `size` must be page aligned and `pa + size` inside the hyp VA
    /// space.
    ///
    /// Collisions with the hyp VA range: where the idmap meets a live mapping that is not
    /// identical (another PA, or other attributes), the idmap is refused with
    /// [`HypError::IdmapCollision`] and nothing is mapped; an identical mapping is shared.
    /// Touching the private I/O area is also an [`HypError::IdmapCollision`]. There is one
    /// idmap: calling again with the same range is a no-op, with another range an
    /// [`HypError::IdmapAlreadyMapped`]. No TLB duty: only invalid entries become valid.
    pub fn map_idmap(&mut self, pa: PhysAddr, size: u64) -> Result<(), HypError> {
        if let Some((start, len)) = self.idmap {
            if (start, len) == (pa, size) {
                return Ok(());
            }
            return Err(HypError::IdmapAlreadyMapped { start, size: len });
        }
        let end = ops::check_input(pa.0, size, self.geom.ia_size()).map_err(HypError::from_op)?;
        if let Some(va) = self.io.overlap(pa.0, end) {
            return Err(HypError::IdmapCollision { va });
        }
        let attrs = normalise(Stage1Attrs::normal(Perms::RX));
        self.map_raw(pa.0, pa, size, attrs).map_err(|e| match e {
            HypError::Conflict { va } => HypError::IdmapCollision { va },
            e => e,
        })?;
        self.idmap = Some((pa, size));
        Ok(())
    }

    /// Unmaps hyp VAs `[va, va + size)` (KVM's `unmap_hyp_range`): clears every leaf and frees
    /// every table that becomes empty. TLB duty, done here: one `HypVa` invalidation per
    /// cleared leaf or emptied table up to the batch threshold, else one `HypAll`, completed by
    /// `DSB ISH; ISB` before any table is freed and before returning.
    ///
    /// A block straddling either end of the range is refused ([`HypError::PartialBlock`])
    /// before anything changes. I/O-area VAs unmapped here are not handed out again.
    /// Unmapping any part of the identity map forgets it (a new one may then be mapped).
    pub fn unmap_range(&mut self, va: VirtAddr, size: u64) -> Result<(), HypError> {
        let w = self.walker();
        let mut tlb = TlbBatch::new(&self.maint, TlbScope::Hyp);
        ops::unmap(&w, va.0, size, PartialBlock::Refuse, &mut tlb).map_err(HypError::from_op)?;
        drop(tlb);
        if let Some((start, len)) = self.idmap {
            if start.0 < va.0 + size && va.0 < start.0 + len {
                self.idmap = None;
            }
        }
        Ok(())
    }

    /// Frees every table of the tree, the identity map's and the root included
    /// (`free_hyp_pgds`): every page goes back to the allocator. TLB duty, done here: one
    /// `HypAll` invalidation and `DSB ISH; ISB` before the first table is freed, so no TLB or
    /// walk cache still refers to one. The hyp MMU must not be using these tables any more.
    pub fn free(self) {
        drop(self);
    }

    /// Keeps the tables for good and returns the root: nothing is freed and no TLB operation
    /// is issued, now or later. This is what a hypervisor does once its MMU runs on these
    /// tables: dropping (or [`free`](Self::free)ing) a `HypTables` gives its pages back to the
    /// allocator, which must never happen while HTTBR / TTBR0_EL2 points at them. The pages
    /// stay allocated; the allocator (owned by the value) is kept alive as well.
    pub fn leak(self) -> PhysAddr {
        let root = self.root;
        core::mem::forget(self);
        root
    }

    fn map_checked(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        size: u64,
        attrs: Stage1Attrs,
        wx: Wx,
    ) -> Result<(), HypError> {
        ops::check_input(va.0, size, self.geom.ia_size()).map_err(HypError::from_op)?;
        let attrs = self.check_attrs(va, attrs, wx)?;
        self.check_run(va.0, pa, size, attrs)?;
        self.map_raw(va.0, pa, size, attrs)
    }

    /// Refuses W+X without the opt-in, and normalises `attrs` to what the descriptor holds.
    fn check_attrs(
        &self,
        va: VirtAddr,
        attrs: Stage1Attrs,
        wx: Wx,
    ) -> Result<Stage1Attrs, HypError> {
        let attrs = normalise(attrs);
        if wx == Wx::Refuse && attrs.perms.contains(Perms::W.with(Perms::X)) {
            return Err(HypError::WriteExec { va });
        }
        Ok(attrs)
    }

    /// Checks one run for everything `map_raw` could refuse, without changing the tree.
    fn check_run(
        &self,
        va: u64,
        pa: PhysAddr,
        size: u64,
        attrs: Stage1Attrs,
    ) -> Result<(), HypError> {
        let end = ops::check_input(va, size, self.geom.ia_size()).map_err(HypError::from_op)?;
        if pa.0 % PAGE_SIZE != 0 {
            return Err(HypError::UnalignedPhys { pa });
        }
        match pa.0.checked_add(size) {
            Some(pend) if pend <= 1u64 << self.pa_bits => {}
            pend => {
                return Err(HypError::OutputTooLarge {
                    end: pend.unwrap_or(u64::MAX),
                    bits: self.pa_bits,
                })
            }
        }
        if let Some(va) = self.io.overlap(va, end) {
            return Err(HypError::InIoArea { va });
        }
        let mut find = FindConflict {
            ia: va,
            oa: pa.0,
            attrs,
        };
        self.walker()
            .walk(va, end, &mut find)
            .map_err(|va| self.conflict_at(va))
    }

    /// The conflict error for `va`: an idmap collision inside the identity map.
    fn conflict_at(&self, va: VirtAddr) -> HypError {
        match self.idmap {
            Some((start, len)) if start.0 <= va.0 && va.0 - start.0 < len => {
                HypError::IdmapCollision { va }
            }
            _ => HypError::Conflict { va },
        }
    }

    /// Maps one run through pt-core (which checks again and keeps the tree unchanged on error).
    fn map_raw(
        &self,
        va: u64,
        pa: PhysAddr,
        size: u64,
        attrs: Stage1Attrs,
    ) -> Result<(), HypError> {
        let req = MapRequest {
            ia: va,
            size,
            oa: pa,
            attrs,
            leaf_level: 1,
            oa_bits: self.pa_bits,
        };
        ops::map(&self.walker(), &req, &self.maint).map_err(|e| match HypError::from_op(e) {
            HypError::Conflict { va } => self.conflict_at(va),
            e => e,
        })?;
        // `ops::map` ended with `DSB ISHST`; the hypervisor uses the mapping right after this
        // returns, from its own instruction stream: `ISB`, or the first access may still take
        // a translation fault at EL2 / in HYP mode.
        self.maint.barrier(Barrier::Isb);
        Ok(())
    }

    /// Allocates VAs from the I/O area and maps `[pa, pa + size)` there, rewinding the area
    /// on error.
    fn map_private(
        &mut self,
        pa: PhysAddr,
        size: u64,
        attrs: Stage1Attrs,
    ) -> Result<VirtAddr, HypError> {
        AddrRange::new(pa, size)?;
        let attrs = normalise(attrs);
        let mark = self.io.next();
        let va = self.io.alloc(size, block_alignment::<A::Hyp>(pa.0, size))?;
        // The area's VAs were never mapped, so only the PA checks and the allocator can fail.
        match self.map_raw(va.0, pa, size, attrs) {
            Ok(()) => Ok(va),
            Err(e) => {
                self.io.rewind(mark);
                Err(e)
            }
        }
    }
}

impl<A: HypArch, P: PageAllocator> HypTables<A, P> {
    /// The register values that turn hyp-mode translation on through this tree (what
    /// `__do_hyp_init` / `__kvm_hyp_init` program: HTCR, HMAIR0/1, HTTBR, HSCTLR on ARMv7;
    /// TCR_EL2, MAIR_EL2, TTBR0_EL2, SCTLR_EL2 on ARMv8). No TLB duty here; the caller
    /// invalidates the hyp TLB before setting them (see [`HypMmuRegs`]).
    pub fn mmu_regs(&self) -> Result<HypMmuRegs, RegisterError> {
        A::hyp_mmu_regs(self.root, &self.geom, self.pa_bits)
    }
}

impl<A: Arch, P: PageAllocator> Drop for HypTables<A, P> {
    /// `free_hyp_pgds`: one `HypAll` invalidation, then every table back to the allocator.
    fn drop(&mut self) {
        let w = self.walker();
        let mut tlb = TlbBatch::new(&self.maint, TlbScope::Hyp);
        ops::free_tree(&w, &mut tlb);
    }
}

/// What the descriptor holds for `attrs`: hyp mappings are always readable, and device
/// memory is never executable (the formats force XN). Comparing normalised attributes is what
/// lets an identical re-map (or an idmap over an identical mapping) be recognised.
fn normalise(mut attrs: Stage1Attrs) -> Stage1Attrs {
    attrs.perms |= Perms::R;
    if attrs.mem.is_device() {
        attrs.perms = attrs.perms.without(Perms::X);
    }
    attrs
}

/// The alignment for a private mapping of `[pa, pa + size)`: the largest block the format
/// allows that `pa` is aligned to and `size` covers, so VA and PA share it and the range maps
/// with blocks; else a page.
fn block_alignment<F: Format>(pa: u64, size: u64) -> u64 {
    (1..=2)
        .filter(|&level| F::block_allowed(level))
        .map(entry_size)
        .find(|&b| pa % b == 0 && size >= b)
        .unwrap_or(PAGE_SIZE)
}

/// Calls `f(hyp_va, pa, size)` for each run of `[start, end)` that `conv` converts linearly.
fn for_each_run<C: VaConversion + ?Sized>(
    conv: &C,
    start: u64,
    end: u64,
    mut f: impl FnMut(u64, PhysAddr, u64) -> Result<(), HypError>,
) -> Result<(), HypError> {
    let linear = |kva: u64| {
        let n = conv.linear_bytes(kva, end - kva);
        n.clamp(PAGE_SIZE, end - kva) & !(PAGE_SIZE - 1)
    };
    let mut kva = start;
    while kva < end {
        let (va, pa) = conv.convert(kva).ok_or(HypError::NotConvertible { kva })?;
        let mut len = linear(kva);
        while kva + len < end {
            let next = kva + len;
            let follows = conv.convert(next).is_some_and(|(v, p)| {
                va.0.checked_add(len) == Some(v.0) && pa.0.checked_add(len) == Some(p.0)
            });
            if !follows {
                break;
            }
            len += linear(next);
        }
        f(va.0, pa, len)?;
        kva += len;
    }
    Ok(())
}

/// Read-only check that `[ia, ...)` holds no leaf other than the one mapping it to
/// `oa + (va - ia)` with `attrs`: the conflict check of the map operation, done for every run
/// before the first is mapped.
struct FindConflict {
    ia: u64,
    oa: u64,
    attrs: Stage1Attrs,
}

impl<F: Format<Attrs = Stage1Attrs>, P: PageAllocator> Visitor<F, P> for FindConflict {
    type Error = VirtAddr;
    const TABLE_VISITS: bool = false;

    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, VirtAddr> {
        for k in 0..run.len() {
            if let Entry::Leaf { oa, attrs } = run.decode(k) {
                let (s, _) = run.covered(k);
                let want = self.oa + (s - self.ia);
                if oa.0 + (s - run.ia(k)) != want || attrs != self.attrs {
                    return Err(VirtAddr(s));
                }
            }
        }
        Ok(LeafFlow::Done)
    }
}
