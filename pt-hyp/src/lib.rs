//! # pt-hyp
//!
//! The page-table half of a hypervisor on ARM, for Cortex-A15 (ARMv7-A LPAE, HYP mode) and
//! Cortex-A53 (ARMv8-A, EL2), in the manner of Linux KVM/ARM's `virt/kvm/arm/mmu.c`:
//!
//! - [`Stage2`]: a VM's stage-2 tables (32- or 40-bit IPA, or any size ARMv8 allows), its VMID,
//!   memslots and dirty logging;
//! - [`PageCache`]: the top-up cache that lets the fault path map without calling the
//!   allocator;
//! - [`Arch`]: the two architectures, [`Armv7`] and [`Armv8`].
//!
//! Every operation does its own TLB and cache maintenance, keeps break-before-make, frees
//! what it empties and reports bad input as an [`Error`].
#![no_std]
#![deny(missing_docs)]

pub mod arch;
mod bitmap;
pub mod cache;
pub mod error;
pub mod fault;
pub mod memslot;
pub mod stage2;

pub use arch::{Arch, Armv7, Armv8, RegisterError};
pub use cache::{PageCache, FAULT_PAGES};
pub use error::Error;
pub use fault::{
    AbortKind, AbortOutcome, Armv7AbortRegs, Armv8AbortRegs, DecodeError, FaultArch, FaultStatus,
    GuestAbort, InjectReason, Injection, MmioAccess,
};
pub use memslot::{Memslot, SlotDesc, SlotFlags, SlotId};
pub use pt_core::{
    Ipa, MemType, PageAllocator, Perms, PhysAddr, Stage1Attrs, Stage2Attrs, VirtAddr,
};
pub use stage2::{BlockSize, S2Translation, Stage2, MAX_SLOTS};
pub mod hyp;
