//! Memslots: guest IPA ranges backed by host physical ranges.

use crate::bitmap::Bitmap;
use pt_core::{Ipa, PhysAddr, PAGE_SHIFT};

/// Identifies a memslot of one VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotId(pub u16);

/// Flags of a memslot (`KVM_MEM_READONLY`, `KVM_MEM_LOG_DIRTY_PAGES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SlotFlags {
    /// The guest may read but not write: writes are handed back as MMIO.
    pub readonly: bool,
    /// Dirty logging is on: pages are mapped read-only and each first write is recorded.
    pub log_dirty: bool,
    /// The guest may not execute from the slot: an instruction fetch is refused with
    /// [`InjectReason::ExecuteNever`](crate::InjectReason::ExecuteNever). Off by default: RAM is
    /// mapped executable on the guest's first instruction fetch from it.
    pub noexec: bool,
}

/// A memslot as the caller describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotDesc {
    /// First IPA (page aligned).
    pub ipa: Ipa,
    /// Size in bytes (page aligned, non-zero).
    pub size: u64,
    /// Host physical address backing `ipa` (page aligned).
    pub host: PhysAddr,
    /// Flags.
    pub flags: SlotFlags,
}

/// A registered memslot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memslot {
    /// Its id.
    pub id: SlotId,
    /// Its description (flags as currently set).
    pub desc: SlotDesc,
    pub(crate) dirty: Option<Bitmap>,
}

impl Memslot {
    /// First IPA past the slot (saturating at `u64::MAX`: a registered slot never wraps, but a
    /// copy whose `desc` was changed may).
    pub fn end(&self) -> u64 {
        self.desc.ipa.0.saturating_add(self.desc.size)
    }

    /// True when `ipa` is inside the slot.
    pub fn contains(&self, ipa: Ipa) -> bool {
        ipa.0 >= self.desc.ipa.0 && ipa.0 < self.end()
    }

    /// Number of 4 KiB pages.
    pub fn pages(&self) -> u64 {
        self.desc.size >> PAGE_SHIFT
    }

    /// Host physical address backing `ipa`, or `None` when `ipa` is outside the slot (or the
    /// host address would not fit in 64 bits).
    pub fn host_addr(&self, ipa: Ipa) -> Option<PhysAddr> {
        if !self.contains(ipa) {
            return None;
        }
        self.desc
            .host
            .0
            .checked_add(ipa.0 - self.desc.ipa.0)
            .map(PhysAddr)
    }

    /// Page index of `ipa` inside the slot (the gfn offset, `gfn - base_gfn`), or `None` when
    /// `ipa` is outside the slot.
    pub fn gfn_offset(&self, ipa: Ipa) -> Option<u64> {
        self.contains(ipa)
            .then(|| (ipa.0 - self.desc.ipa.0) >> PAGE_SHIFT)
    }

    /// [`host_addr`](Self::host_addr) for a caller inside pt-hyp that found `ipa` in this
    /// registered slot (no check on the hot path; wrapping, never panicking, if misused).
    pub(crate) fn host_of(&self, ipa: Ipa) -> PhysAddr {
        PhysAddr(
            self.desc
                .host
                .0
                .wrapping_add(ipa.0.wrapping_sub(self.desc.ipa.0)),
        )
    }

    /// [`gfn_offset`](Self::gfn_offset) for a caller inside pt-hyp that found `ipa` in this
    /// registered slot (no check on the hot path; wrapping, never panicking, if misused).
    pub(crate) fn page_index(&self, ipa: Ipa) -> u64 {
        ipa.0.wrapping_sub(self.desc.ipa.0) >> PAGE_SHIFT
    }

    /// True when dirty logging is on.
    pub fn logging(&self) -> bool {
        self.desc.flags.log_dirty
    }
}
