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
//! - [`sysreg`]: the CPU's PA and VMID sizes (`ID_AA64MMFR0_EL1`, `ID_AA64MMFR1_EL1`) and the
//!   activation sequences (load a VM's stage 2, turn the EL2 MMU on);
//! - [`Maint`]: TLB maintenance, cache maintenance and barriers, as inline assembly on
//!   `aarch64` and as records of the same instruction sequence everywhere else (the host), so
//!   host tests pin what the hardware would execute.
//!
//! Both formats share one LPAE long-descriptor layout ([`descriptor`]); pt-core's one walker
//! serves both.
//!
//! Most hypervisors use this crate through `pt-hyp` (`pt_hyp::Armv8`). Used alone, it gives the
//! formats to pt-core's walker and operations, and the register values:
//!
//! ```
//! use pt_armv8::{regs, S2Format};
//! use pt_core::{Entry, Format, Geometry, PhysAddr, Perms, Stage2Attrs};
//!
//! // A 40-bit IPA stage 2: starts at level 1 with two concatenated root tables.
//! let geom = Geometry::new(S2Format::LIMITS, 40).unwrap();
//! assert_eq!((geom.start_level(), geom.root_pages()), (1, 2));
//! let vtcr = regs::vtcr_el2(&geom, 40).unwrap();
//! let vttbr = regs::vttbr_el2(&geom, PhysAddr(0x8000_0000), 1).unwrap();
//! assert_eq!(vttbr, (1 << 48) | 0x8000_0000);
//! # let _ = vtcr;
//!
//! // A 2 MiB block of guest RAM, read/write, and back.
//! let attrs = Stage2Attrs::ram(Perms::RW);
//! let desc = S2Format::encode_leaf(PhysAddr(0x4820_0000), attrs, 2);
//! assert_eq!(S2Format::decode(desc, 2), Entry::Leaf { oa: PhysAddr(0x4820_0000), attrs });
//! ```
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
pub mod sysreg;

pub use descriptor::Descriptor;
pub use maint::Maint;
pub use stage1::HypFormat;
pub use stage2::S2Format;
