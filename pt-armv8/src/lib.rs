//! # pt-armv8
//!
//! The ARMv8-A backend of the pt-arm page-table crates, for a hypervisor running at EL2 (without
//! VHE) on a Cortex-A53 class CPU, with the 4 KiB granule:
//!
//! - [`HypFormat`]: the EL2 stage-1 descriptor format (tables reached through `TTBR0_EL2`), the
//!   regime of KVM's hyp mappings (`create_hyp_mappings`, `kvm_mmu_init`);
//! - [`S2Format`]: the stage-2 descriptor format (tables reached through `VTTBR_EL2`), the regime
//!   of KVM's `kvm_pgd` / `stage2_set_pte`;
//! - [`memattr`]: memory types as `MAIR_EL2` indices and as stage-2 `MemAttr` values;
//! - [`regs`]: the values of `TCR_EL2`, `TTBR0_EL2`, `VTCR_EL2`, `VTTBR_EL2`, `MAIR_EL2` and
//!   `SCTLR_EL2` computed from a [`pt_core::Geometry`];
//! - [`Maint`]: TLB maintenance, cache maintenance and barriers, as inline assembly on
//!   `aarch64` and as records of the same instruction sequence everywhere else (the host), so
//!   host tests pin what the hardware would execute.
//!
//! Both formats share one LPAE long-descriptor layout ([`descriptor`]); pt-core's one walker
//! serves both.
#![no_std]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod descriptor;
pub mod maint;
pub mod memattr;
pub mod regs;
pub mod stage1;
pub mod stage2;

pub use descriptor::Descriptor;
pub use maint::Maint;
pub use stage1::HypFormat;
pub use stage2::S2Format;
