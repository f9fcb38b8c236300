//! Guest-abort handling: `kvm_handle_guest_abort` and what it calls (`user_mem_abort`,
//! `handle_access_fault`, `io_mem_abort`).
//!
//! The hypervisor's exception vector reads the abort registers (HSR, HDFAR/HIFAR, HPFAR on
//! ARMv7; ESR_EL2, FAR_EL2, HPFAR_EL2 on ARMv8), tops up its [`PageCache`] *before* taking the
//! VM's lock, and calls [`Stage2::handle_guest_abort`]. It gets back one [`AbortOutcome`] to
//! act on: resume the guest, emulate an MMIO access, skip the instruction, or inject an abort.
//!
//! ```text
//! cache.top_up(alloc, stage2.fault_pages())?;          // outside the lock
//! let abort = A::decode_abort(&regs).map(|a| a.with_guest_sctlr(guest_sctlr));
//! match stage2.handle_guest_abort(&mut cache, &regs) { // or handle_abort(&mut cache, &abort?)
//!     Ok(AbortOutcome::Mmio(m)) => emulate(m),          // then m.load_result / skip m.insn_len
//!     Ok(AbortOutcome::Inject(i)) => inject(i),
//!     Ok(o) => debug_assert!(o.resumes_guest()),
//!     Err(Error::CacheExhausted { .. }) => retry(),      // top up again, re-run
//!     Err(e) => fatal(e),
//! }
//! ```

mod decode;
mod mmio;
mod policy;

pub use decode::{
    decode_armv7, decode_armv8, AbortKind, Armv7AbortRegs, Armv8AbortRegs, DecodeError, FaultArch,
    FaultStatus, GuestAbort, EC_DABT_LOW, EC_IABT_LOW,
};
pub use mmio::MmioAccess;
pub use policy::{block_allowed, leaf_level};

use crate::cache::PageCache;
use crate::error::Error;
use crate::memslot::{Memslot, SlotId};
use crate::stage2::{BlockSize, Stage2};
use pt_core::ops::TableSource;
use pt_core::{
    entry_size, CacheOp, Ipa, Maintenance, PageAllocator, Perms, PhysAddr, Stage2Attrs, VirtAddr,
    PAGE_SIZE,
};

/// Why the guest must be given an abort instead of being resumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectReason {
    /// The syndrome is not a guest abort (the injection then reports a data abort at FAR 0).
    Undecodable(DecodeError),
    /// A synchronous external abort or parity/ECC error (`kvm_handle_guest_sea` failed; KVM
    /// injects a virtual SError, `kvm_inject_vabt`).
    ExternalAbort(FaultStatus),
    /// A fault status stage 2 never produces for a sound tree (alignment, address size, TLB
    /// conflict, ...): KVM's "Unsupported FSC".
    UnsupportedFault(FaultStatus),
    /// The IPA lies beyond the VM's IPA size.
    OutsideIpaSpace,
    /// An instruction fetch from outside RAM (`kvm_inject_pabt`: "Prefetch Abort on I/O
    /// address").
    InstructionFetchFromIo,
    /// The guest's stage-1 table walk reached an address outside RAM (`decode_hsr`: "page
    /// table accesses IO mem").
    WalkOutsideRam,
    /// A data access outside RAM whose syndrome carries no instruction decode (ISV clear).
    NoSyndrome,
    /// A permission fault that neither dirty logging nor a read-only slot explains (the
    /// mapping was made without that permission on purpose).
    PermissionDenied,
}

/// An abort to inject into the guest (`kvm_inject_dabt` / `kvm_inject_pabt` /
/// `kvm_inject_vabt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    /// Inject a data abort or a prefetch abort.
    pub kind: AbortKind,
    /// The faulting guest VA, for the guest's FAR / DFAR / IFAR.
    pub far: u64,
    /// Why.
    pub reason: InjectReason,
}

/// What the hypervisor does after a guest abort (`kvm_handle_guest_abort`'s return paths).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortOutcome {
    /// RAM was mapped (`user_mem_abort`): a leaf of `size` bytes at `ipa`, cleaned from the
    /// data cache, the instruction cache invalidated for an instruction fetch. Resume.
    Mapped {
        /// First IPA of the new leaf.
        ipa: Ipa,
        /// Bytes it maps (4 KiB, 2 MiB or 1 GiB).
        size: u64,
        /// Its permissions (RWX; RX in a read-only slot or for a read in a logging slot).
        perms: Perms,
    },
    /// A write to a dirty-logged page: the page is marked dirty in the slot's bitmap and made
    /// writable, a block around it dissolved first (`user_mem_abort` with logging active,
    /// `stage2_dissolve_pmd`, `mark_page_dirty`). Resume.
    Dirtied {
        /// The page.
        ipa: Ipa,
        /// Its memslot.
        slot: SlotId,
        /// Whether a block was dissolved (every page of it marked dirty).
        dissolved: bool,
    },
    /// A write to a page write-protected by dirty logging that has since stopped: write
    /// permission given back (`user_mem_abort`). Resume.
    MadeWritable {
        /// The page.
        ipa: Ipa,
    },
    /// The access flag was set (`handle_access_fault`). Resume.
    AccessFlagSet {
        /// The IPA.
        ipa: Ipa,
    },
    /// The mapping already allows the access (a stale or repeated fault). Resume.
    Spurious,
    /// An access outside RAM (or a write to a read-only slot) to emulate (`io_mem_abort`).
    Mmio(MmioAccess),
    /// A cache maintenance instruction on an address outside RAM: nothing to do, skip the
    /// instruction of `len` bytes (`kvm_skip_instr`).
    SkipInstruction {
        /// Instruction length in bytes.
        len: u8,
    },
    /// Inject an abort into the guest.
    Inject(Injection),
}

impl AbortOutcome {
    /// True when the caller only has to resume the guest at the same instruction.
    pub const fn resumes_guest(&self) -> bool {
        matches!(
            self,
            AbortOutcome::Mapped { .. }
                | AbortOutcome::Dirtied { .. }
                | AbortOutcome::MadeWritable { .. }
                | AbortOutcome::AccessFlagSet { .. }
                | AbortOutcome::Spurious
        )
    }
}

fn inject(a: &GuestAbort, reason: InjectReason) -> AbortOutcome {
    AbortOutcome::Inject(Injection {
        kind: a.kind,
        far: a.far,
        reason,
    })
}

const fn block_size(level: u8) -> BlockSize {
    match level {
        1 => BlockSize::Block1G,
        2 => BlockSize::Block2M,
        _ => BlockSize::Page,
    }
}

impl<A: FaultArch, P: PageAllocator> Stage2<A, P> {
    /// Handles a stage-2 guest abort from its raw registers (`kvm_handle_guest_abort`):
    /// decodes them ([`FaultArch::decode_abort`]) and runs
    /// [`handle_abort`](Self::handle_abort). A syndrome that is not a guest abort becomes
    /// [`InjectReason::Undecodable`]. New mappings are always cleaned from the data cache; to
    /// skip that for a guest running with its caches on, decode, apply
    /// [`GuestAbort::with_guest_sctlr`] and call [`handle_abort`](Self::handle_abort).
    ///
    /// New tables come only from `cache`, topped up by the caller before taking the VM's lock
    /// (`PageCache::top_up(alloc, stage2.fault_pages())`). [`Error::CacheExhausted`] means the
    /// cache was too small: nothing changed, top up and call again.
    pub fn handle_guest_abort<const N: usize>(
        &mut self,
        cache: &mut PageCache<N>,
        regs: &A::Regs,
    ) -> Result<AbortOutcome, Error> {
        match A::decode_abort(regs) {
            Ok(a) => self.handle_abort(cache, &a),
            Err(e) => Ok(AbortOutcome::Inject(Injection {
                kind: AbortKind::Data,
                far: 0,
                reason: InjectReason::Undecodable(e),
            })),
        }
    }

    /// Handles a decoded guest abort (`kvm_handle_guest_abort`), in KVM's order: external
    /// aborts and unsupported fault codes are injected; an IPA beyond the IPA space is
    /// injected; outside every memslot, or a write to a read-only slot, the access is MMIO
    /// (`io_mem_abort`); an access-flag fault sets the flag (`handle_access_fault`); a
    /// translation or permission fault in RAM maps or unprotects (`user_mem_abort`).
    ///
    /// Maintenance: a new mapping is made into invalid entries (no TLB invalidation); its host
    /// memory is cleaned and invalidated from the data cache when the guest runs with its
    /// caches off ([`GuestAbort::guest_caches_on`]), and the whole instruction cache is
    /// invalidated for an instruction fetch;
    /// dissolving a block and setting the access flag invalidate the old entry. On
    /// [`Error::CacheExhausted`] the tree, the dirty bitmaps and the caches are untouched.
    pub fn handle_abort<const N: usize>(
        &mut self,
        cache: &mut PageCache<N>,
        a: &GuestAbort,
    ) -> Result<AbortOutcome, Error> {
        if a.status.is_external() {
            return Ok(inject(a, InjectReason::ExternalAbort(a.status)));
        }
        let fault_level = match a.status {
            FaultStatus::Translation { level }
            | FaultStatus::AccessFlag { level }
            | FaultStatus::Permission { level } => level,
            other => return Ok(inject(a, InjectReason::UnsupportedFault(other))),
        };
        if a.ipa.0 >= self.geometry().ia_size() {
            return Ok(inject(a, InjectReason::OutsideIpaSpace));
        }
        let write = a.is_write();
        let slot = match self.find_slot(a.ipa) {
            Some(s) if !(write && s.desc.flags.readonly) => *s,
            _ => return Ok(io_abort(a)),
        };
        match a.status {
            FaultStatus::AccessFlag { .. } => match self.set_access_flag(a.ipa) {
                Ok(_) => Ok(AbortOutcome::AccessFlagSet { ipa: a.ipa }),
                Err(Error::NotMapped { .. }) => Ok(AbortOutcome::Spurious),
                Err(e) => Err(e),
            },
            FaultStatus::Permission { .. } if write => self.write_fault(cache, &slot, a),
            FaultStatus::Permission { .. } => Ok(self.check_spurious(a)),
            _ => self.map_fault(cache, &slot, a, fault_level),
        }
    }

    /// A permission fault that is not a write: spurious if the mapping allows it by now.
    fn check_spurious(&self, a: &GuestAbort) -> AbortOutcome {
        let need = match a.kind {
            AbortKind::Instruction => Perms::X,
            AbortKind::Data => Perms::R,
        };
        match self.translate(a.ipa) {
            Some(t) if t.attrs.perms.contains(need) => AbortOutcome::Spurious,
            _ => inject(a, InjectReason::PermissionDenied),
        }
    }

    /// Translation fault in RAM: map a leaf as large as [`leaf_level`] allows.
    fn map_fault<const N: usize>(
        &mut self,
        cache: &mut PageCache<N>,
        slot: &Memslot,
        a: &GuestAbort,
        fault_level: u8,
    ) -> Result<AbortOutcome, Error> {
        if self.translate(a.ipa).is_some() {
            return Ok(AbortOutcome::Spurious);
        }
        let write = a.is_write();
        let logging = slot.logging();
        let perms = if slot.desc.flags.readonly || (logging && !write) {
            Perms::RX
        } else {
            Perms::RWX
        };
        let attrs = Stage2Attrs {
            logged: logging && !perms.write(),
            ..Stage2Attrs::ram(perms)
        };
        let geom = self.geometry();
        let mut level = leaf_level::<A::S2>(&geom, slot, a.ipa, fault_level);
        loop {
            let size = entry_size(level);
            let ipa = Ipa(a.ipa.0 & !(size - 1));
            let host = slot.host_of(ipa);
            match self.map_cached(cache, ipa, host, size, attrs, block_size(level)) {
                Ok(()) => {
                    self.clean_new(host, size, a);
                    if logging && write {
                        self.mark_dirty(a.ipa);
                    }
                    return Ok(AbortOutcome::Mapped { ipa, size, perms });
                }
                // Something already maps part of the block: fall back to a page.
                Err(Error::Conflict { .. }) if level < 3 => level = 3,
                Err(e) => return Err(e),
            }
        }
    }

    /// Cache maintenance for a new mapping of host memory at `host`
    /// (`coherent_cache_guest_page`): clean+invalidate it to the point of coherency when the
    /// guest runs with its caches off (it would read memory behind the host's dirty lines),
    /// and invalidate the instruction cache for an instruction fetch.
    fn clean_new(&self, host: PhysAddr, size: u64, a: &GuestAbort) {
        if !a.guest_caches_on {
            let va = VirtAddr(self.allocator().phys_to_virt(host) as usize as u64);
            self.maint().dcache(CacheOp::CleanInvalidate, va, size);
        }
        if a.kind == AbortKind::Instruction {
            self.maint().icache_invalidate_all();
        }
    }

    /// Write permission fault in a writable RAM slot: dirty logging's write-protection.
    fn write_fault<const N: usize>(
        &mut self,
        cache: &mut PageCache<N>,
        slot: &Memslot,
        a: &GuestAbort,
    ) -> Result<AbortOutcome, Error> {
        let Some(t) = self.translate(a.ipa) else {
            // Unmapped since the fault was taken: map it like a translation fault.
            return self.map_fault(cache, slot, a, 3);
        };
        if t.attrs.perms.write() {
            return Ok(AbortOutcome::Spurious);
        }
        let page = Ipa(a.ipa.0 & !(PAGE_SIZE - 1));
        if !t.attrs.logged {
            return Ok(inject(a, InjectReason::PermissionDenied));
        }
        if slot.logging() && t.level < 3 {
            // Dissolve, then map the page writable. Dissolving may free the tables above the
            // block that it empties, so the page may need a table for every level below the
            // root: check for that many first, so a shortage leaves everything as it was.
            let needed = self.geometry().max_tables_per_map();
            if cache.available() < needed {
                return Err(Error::CacheExhausted {
                    needed,
                    available: cache.available(),
                });
            }
            self.dissolve_block(a.ipa)?;
            let attrs = Stage2Attrs::ram(t.attrs.perms.with(Perms::W));
            let host = slot.host_of(page);
            self.map_cached(cache, page, host, PAGE_SIZE, attrs, BlockSize::Page)?;
            self.mark_dirty(page);
            return Ok(AbortOutcome::Dirtied {
                ipa: page,
                slot: slot.id,
                dissolved: true,
            });
        }
        self.make_writable(page)?;
        if slot.logging() {
            self.mark_dirty(page);
            Ok(AbortOutcome::Dirtied {
                ipa: page,
                slot: slot.id,
                dissolved: false,
            })
        } else {
            Ok(AbortOutcome::MadeWritable { ipa: page })
        }
    }
}

/// The MMIO path (`io_mem_abort` with `decode_hsr`).
fn io_abort(a: &GuestAbort) -> AbortOutcome {
    if a.kind == AbortKind::Instruction {
        return inject(a, InjectReason::InstructionFetchFromIo);
    }
    if a.cm {
        return AbortOutcome::SkipInstruction { len: a.insn_len() };
    }
    if a.s1ptw {
        return inject(a, InjectReason::WalkOutsideRam);
    }
    if !a.isv {
        return inject(a, InjectReason::NoSyndrome);
    }
    AbortOutcome::Mmio(MmioAccess::from_abort(a))
}
