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
mod syndrome;

pub use decode::{
    decode_armv7, decode_armv8, AbortKind, Armv7AbortRegs, Armv8AbortRegs, DecodeError, FaultArch,
    FaultStatus, GuestAbort, EC_DABT_LOW, EC_IABT_LOW,
};
pub use mmio::MmioAccess;
pub use policy::{block_allowed, leaf_level};
pub use syndrome::{AbortSyndrome, AccessSize, SyndromeError};

use crate::cache::PageCache;
use crate::error::Error;
use crate::memslot::{Memslot, SlotId};
use crate::stage2::{BlockSize, Stage2};
use pt_core::ops::{self, PartialBlock, TableSource};
use pt_core::{
    entry_size, guest_dcache, CacheOp, GuestMemory, Ipa, Maintenance, PageAllocator, Perms,
    PhysAddr, Stage2Attrs, PAGE_SIZE,
};

/// Why the guest must be given an abort instead of being resumed. New reasons may be added in a
/// minor release: keep a wildcard arm when matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InjectReason {
    /// A synchronous external abort or parity/ECC error (`kvm_handle_guest_sea` failed; KVM
    /// injects a virtual SError, `kvm_inject_vabt`).
    ExternalAbort(FaultStatus),
    /// A fault status stage 2 never produces for a sound tree (alignment, address size, TLB
    /// conflict, ...): KVM's "Unsupported FSC".
    UnsupportedFault(FaultStatus),
    /// The IPA lies beyond the VM's IPA space.
    OutsideIpaSpace,
    /// An instruction fetch from outside RAM (`kvm_inject_pabt`: "Prefetch Abort on I/O
    /// address").
    InstructionFetchFromIo,
    /// An instruction fetch from a memslot flagged not executable
    /// ([`SlotFlags::noexec`](crate::SlotFlags::noexec)).
    ExecuteNever,
    /// The guest's stage-1 table walk reached an address outside RAM (`decode_hsr`: "page
    /// table accesses IO mem").
    WalkOutsideRam,
    /// A data access outside RAM whose syndrome carries no instruction decode (ISV clear).
    NoSyndrome,
    /// A permission fault that neither dirty logging, a replaced page nor a missing execute
    /// permission explains (the mapping was made without that permission on purpose).
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
///
/// New outcomes may be added in a minor release (`#[non_exhaustive]`): match the ones you act
/// on and send the rest through [`resumes_guest`](Self::resumes_guest), e.g.
/// `o if o.resumes_guest() => resume()`, with a final wildcard arm that treats anything else
/// as fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AbortOutcome {
    /// RAM was mapped (`user_mem_abort`): a leaf of `size` bytes at `ipa`. Its data cache was
    /// cleaned to the point of coherency first when the guest runs with its caches off, and
    /// for an instruction fetch cleaned to the point of unification and the instruction cache
    /// invalidated. Resume.
    Mapped {
        /// First IPA of the new leaf.
        ipa: Ipa,
        /// Bytes it maps (4 KiB, 2 MiB or 1 GiB).
        size: u64,
        /// Its permissions: RW for a data access (R in a read-only slot, and for a read in a
        /// logging slot), with X added for an instruction fetch.
        perms: Perms,
    },
    /// An instruction fetch from a mapped RAM page without execute permission: the page's
    /// data cache was cleaned to the point of unification, the instruction cache invalidated,
    /// and execute permission added to the leaf (a permission-only change, no break;
    /// `user_mem_abort` with `exec_fault` on `FSC_PERM`). Resume.
    ExecGranted {
        /// First IPA of the leaf.
        ipa: Ipa,
        /// Bytes the leaf maps.
        size: u64,
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
    /// The mapping already allows the access (a stale or repeated fault), or a read or
    /// execute permission fault found nothing mapped any more (the next access takes a
    /// translation fault). Resume.
    Spurious,
    /// A stage-2 permission fault, whose IPA the architecture does not report (HPFAR is
    /// UNKNOWN), and the address translation of FAR through the guest's stage 1 failed: the
    /// guest changed its tables since. Resume; the guest faults again if it must (KVM returns
    /// to the guest when `__translate_far_to_hpfar` fails).
    FarUntranslated,
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
                | AbortOutcome::ExecGranted { .. }
                | AbortOutcome::Spurious
                | AbortOutcome::FarUntranslated
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

impl<A: FaultArch, P: PageAllocator + GuestMemory> Stage2<A, P> {
    /// Handles a stage-2 guest abort from its raw registers (`kvm_handle_guest_abort`):
    /// decodes them ([`FaultArch::decode_abort`]) and runs
    /// [`handle_abort`](Self::handle_abort). A syndrome that is not a guest abort is
    /// [`Error::NotGuestAbort`]. New mappings are always cleaned from the data cache; to skip
    /// that for a guest running with its caches on, decode, apply
    /// [`GuestAbort::with_guest_sctlr`] and call [`handle_abort`](Self::handle_abort).
    ///
    /// Call it on the guest-exit path, while the guest's stage-1 translation registers and
    /// VTTBR are still loaded: a stage-2 permission fault takes its IPA from an address
    /// translation of FAR through them (see [`GuestAbort::ipa_valid`]).
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
            Err(DecodeError::NotGuestAbort { ec }) => Err(Error::NotGuestAbort { ec }),
        }
    }

    /// Handles a decoded guest abort (`kvm_handle_guest_abort`), in KVM's order: external
    /// aborts and unsupported fault codes are injected; a permission fault's IPA is resolved
    /// from FAR when HPFAR does not hold it ([`FaultArch::resolve_ipa`], resuming the guest
    /// when that fails); an IPA beyond the IPA space is injected; outside every memslot, or a
    /// write to a read-only slot, the access is MMIO (`io_mem_abort`); an access-flag fault
    /// sets the flag (`handle_access_fault`); a translation or permission fault in RAM maps,
    /// unprotects or grants execute permission (`user_mem_abort`).
    ///
    /// Permissions and maintenance (KVM >= 4.16): a data access maps RAM without execute
    /// permission, an instruction fetch with it. A new mapping's host memory is cleaned and
    /// invalidated to the point of coherency first when the guest runs with its caches off
    /// ([`GuestAbort::guest_caches_on`]); whenever execute permission is granted, the memory
    /// is first cleaned to the point of unification and the instruction cache invalidated.
    /// A new mapping is made into invalid entries (no TLB invalidation); dissolving a block,
    /// adding permissions and setting the access flag invalidate the old entry. On
    /// [`Error::CacheExhausted`] and [`Error::GuestMemory`] the tree and the dirty bitmaps are
    /// untouched.
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
        let Some(resolved) = A::resolve_ipa(a) else {
            return Ok(AbortOutcome::FarUntranslated);
        };
        let a = &resolved;
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
            FaultStatus::Permission { .. } if a.is_exec() => self.exec_fault(&slot, a),
            FaultStatus::Permission { .. } => Ok(self.check_spurious(a)),
            _ => self.map_fault(cache, &slot, a, fault_level),
        }
    }

    /// A read permission fault: spurious if the mapping allows it by now, or if nothing is
    /// mapped any more (the next access takes a translation fault, as in KVM).
    fn check_spurious(&self, a: &GuestAbort) -> AbortOutcome {
        match self.translate(a.ipa) {
            Some(t) if !t.attrs.perms.read() => inject(a, InjectReason::PermissionDenied),
            _ => AbortOutcome::Spurious,
        }
    }

    /// An execute permission fault in RAM: grant execute permission to the leaf, after the
    /// data-cache clean to the point of unification and the instruction-cache invalidation.
    fn exec_fault(&mut self, slot: &Memslot, a: &GuestAbort) -> Result<AbortOutcome, Error> {
        let Some(t) = self.translate(a.ipa) else {
            return Ok(AbortOutcome::Spurious);
        };
        if t.attrs.perms.exec() {
            return Ok(AbortOutcome::Spurious);
        }
        if slot.desc.flags.noexec || t.attrs.mem.is_device() {
            return Ok(inject(a, InjectReason::ExecuteNever));
        }
        let host = PhysAddr(t.pa.0 - (a.ipa.0 - t.leaf_ipa.0));
        self.sync_icache(host, t.size, CacheOp::CleanToPou)?;
        let w = self.walker();
        let mut tlb = self.tlb();
        ops::update(
            &w,
            t.leaf_ipa.0,
            t.size,
            PartialBlock::Whole,
            &mut tlb,
            |_, _, _, attrs: Stage2Attrs| Stage2Attrs {
                perms: attrs.perms.with(Perms::X),
                ..attrs
            },
        )?;
        Ok(AbortOutcome::ExecGranted {
            ipa: t.leaf_ipa,
            size: t.size,
        })
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
        let exec = a.is_exec();
        if exec && slot.desc.flags.noexec {
            return Ok(inject(a, InjectReason::ExecuteNever));
        }
        let logging = slot.logging();
        let readonly = slot.desc.flags.readonly;
        let mut perms = if readonly || (logging && !write) {
            Perms::R
        } else {
            Perms::RW
        };
        if exec {
            perms = perms.with(Perms::X);
        }
        let attrs = Stage2Attrs {
            // The software bit says "write permission may be given back": never in a
            // read-only slot.
            logged: logging && !readonly && !perms.write(),
            ..Stage2Attrs::ram(perms)
        };
        let geom = self.geometry();
        let mut level = leaf_level::<A::S2>(&geom, slot, a.ipa, fault_level);
        loop {
            let size = entry_size(level);
            let ipa = Ipa(a.ipa.0 & !(size - 1));
            let host = slot.host_of(ipa);
            // Check the request and the cache first, so a refusal costs no maintenance; then
            // clean before the mapping exists, so no vCPU can see the memory uncleaned.
            // A page where the lookup above found nothing cannot conflict (no leaf lies on its
            // path) and cannot exhaust a cache of `max_tables_per_map` pages: the plan walk
            // would find nothing, so only the request's own checks are left for it.
            let planned = if level == 3 && cache.available() >= geom.max_tables_per_map() {
                self.checked_request(ipa, host, size, attrs, block_size(level))
                    .map(|_| ())
            } else {
                self.map_tables_needed(ipa, host, size, attrs, block_size(level))
                    .and_then(|needed| match cache.available() {
                        n if n < needed => Err(Error::CacheExhausted {
                            needed,
                            available: n,
                        }),
                        _ => Ok(()),
                    })
            };
            let mapped = planned
                .and_then(|()| self.clean_new(host, size, a))
                .and_then(|()| self.map_cached(cache, ipa, host, size, attrs, block_size(level)));
            match mapped {
                Ok(()) => {
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

    /// Cache maintenance for a new mapping of host memory at `host`, before it is mapped
    /// (`clean_dcache_guest_page`, `invalidate_icache_guest_page`): clean and invalidate it to
    /// the point of coherency when the guest runs with its caches off (it would read memory
    /// behind the host's dirty lines); for an instruction fetch, clean it to the point of
    /// unification (already done by the clean to the point of coherency) and invalidate the
    /// instruction cache.
    fn clean_new(&self, host: PhysAddr, size: u64, a: &GuestAbort) -> Result<(), Error> {
        if !a.guest_caches_on {
            guest_dcache(
                self.maint(),
                self.allocator(),
                CacheOp::CleanInvalidate,
                host,
                size,
            )?;
            if a.is_exec() {
                self.maint().icache_invalidate_all();
            }
            return Ok(());
        }
        if a.is_exec() {
            self.sync_icache(host, size, CacheOp::CleanToPou)?;
        }
        Ok(())
    }

    /// Makes `[host, host + size)` safe to execute: the data cache cleaned with `op` (at least
    /// to the point of unification), then the whole instruction cache invalidated.
    fn sync_icache(&self, host: PhysAddr, size: u64, op: CacheOp) -> Result<(), Error> {
        guest_dcache(self.maint(), self.allocator(), op, host, size)?;
        self.maint().icache_invalidate_all();
        Ok(())
    }

    /// Write permission fault in a writable RAM slot: dirty logging's write-protection, or a
    /// page [`replace_page`](Stage2::replace_page) mapped read-only.
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
            // The block's execute permission stays with the page (KVM keeps X when XN was
            // already clear); its memory was cleaned when the block was mapped.
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
