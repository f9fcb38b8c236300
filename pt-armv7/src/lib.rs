//! # pt-armv7
//!
//! The ARMv7-A backend of the pt-arm page-table crates: LPAE long descriptors with the
//! Virtualization Extensions, as on Cortex-A15 running a hypervisor in HYP mode.
//!
//! * [`HypFormat`] — HYP-mode stage-1 descriptors (tables behind HTTBR, configured by HTCR):
//!   the hypervisor's own mappings (`create_hyp_mappings`, `create_hyp_io_mappings`).
//! * [`S2Format`] — stage-2 descriptors (tables behind VTTBR, configured by VTCR): a guest's
//!   IPA space (`stage2_set_pte`, `kvm_phys_addr_ioremap`).
//! * [`memattr`] — HMAIR0/HMAIR1 and the stage-2 MemAttr values of each memory type.
//! * [`regs`] — HTCR, HTTBR, VTCR, VTTBR and HSCTLR values computed from a [`Geometry`],
//!   with a typed [`RegError`](regs::RegError) for what ARMv7 cannot express.
//! * [`sysreg`] — the activation sequences: load a VM's stage 2 (VTCR, VTTBR, `ISB`) and turn
//!   the HYP MMU on (HMAIR0/1, HTCR, HTTBR, TLBIALLH, HSCTLR).
//! * [`Maint`] — the cp15 TLB and cache maintenance and the barriers, as inline assembly on
//!   `target_arch = "arm"` and recorded through [`pt_core::trace`] on the host. ARMv7 has no
//!   stage-2 invalidation by IPA, so every stage-2 batch ends in one whole-VMID flush.
//!
//! Addresses and descriptors are `u64` throughout: a 40-bit IPA or PA fits on the 32-bit CPU.
//!
//! [`Geometry`]: pt_core::Geometry
//!
//! Most hypervisors use this crate through `pt-hyp` (`pt_hyp::Armv7`). Used alone, it gives the
//! formats to pt-core's walker and operations, and the register values:
//!
//! ```
//! use pt_armv7::{regs, S2Format};
//! use pt_core::{Entry, Format, Geometry, PhysAddr, Perms, Stage2Attrs};
//!
//! // A 32-bit IPA stage 2: the shortest walk starts at level 2 with four concatenated tables
//! // (2048 entries): VTCR.T0SZ = 0, SL0 = 0b00; the root is 16 KiB aligned.
//! let geom = Geometry::new(S2Format::LIMITS, 32).unwrap();
//! assert_eq!((geom.start_level(), geom.root_entries()), (2, 2048));
//! assert_eq!(regs::vtcr(&geom), Ok(0x8000_3500));
//! let vttbr = regs::vttbr(PhysAddr(0x8000_0000), &geom, 1).unwrap();
//! assert_eq!(vttbr, (1 << 48) | 0x8000_0000);
//!
//! // A guest page with a 40-bit output address: descriptors are u64 on the 32-bit CPU too.
//! let attrs = Stage2Attrs::ram(Perms::RWX);
//! let desc = S2Format::encode_leaf(PhysAddr(0xff_0000_0000), attrs, 3);
//! assert_eq!(S2Format::decode(desc, 3), Entry::Leaf { oa: PhysAddr(0xff_0000_0000), attrs });
//! ```
#![no_std]
#![deny(missing_docs)]

pub mod descriptor;
pub mod maint;
pub mod memattr;
pub mod regs;
mod stage1;
mod stage2;
pub mod sysreg;

pub use descriptor::Descriptor;
pub use maint::Maint;
pub use stage1::HypFormat;
pub use stage2::S2Format;

#[cfg(test)]
mod tests;
