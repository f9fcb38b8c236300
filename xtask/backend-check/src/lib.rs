//! Built by `cargo xtask test` for each bare-metal target, once with the target's own backend
//! (must compile) and once with the other (must fail with pt-hyp's "not an architecture
//! backend of this build target"): a `Stage2<Armv8, _>` on an ARMv7 target would otherwise
//! build and its TLB maintenance silently do nothing. Without a feature (the host workspace
//! build) the crate is empty.
#![no_std]

#[cfg(feature = "armv7")]
type A = pt_hyp::Armv7;
#[cfg(feature = "armv8")]
type A = pt_hyp::Armv8;

/// A VM's stage 2 with the chosen backend.
#[cfg(any(feature = "armv7", feature = "armv8"))]
pub fn new_vm<P: pt_hyp::PageAllocator + pt_hyp::GuestMemory>(pool: P) -> bool {
    pt_hyp::Stage2::<A, P>::new(pool, 40, 1).is_ok()
}
