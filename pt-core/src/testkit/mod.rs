//! Host test kit (feature `testkit`, needs `std`): an arena of fake physical pages (and a
//! `Sync` one, [`SyncArena`], for several threads faulting into one tree), the
//! per-thread recorder of every table write, TLB, cache and barrier operation, a
//! break-before-make checker fed by that recorder, a simulated TLB ([`tlbsim`]) that catches
//! missing invalidations, and a deliberately odd fake [`Format`].
//!
//! Creating an [`Arena`] starts a fresh recording on the current thread; dropping it panics if
//! the checker saw a violation, so every test that uses an arena is checked.
//!
//! [`Format`]: crate::Format

mod arena;
pub mod bbm;
pub mod fake;
pub mod log;
mod sync_arena;
pub mod tlbsim;

pub use arena::{Arena, GuestLending, GUEST_VA_OFFSET};
pub use sync_arena::SyncArena;

/// A [`Maintenance`](crate::Maintenance) that only records what it is asked to do (to the
/// per-thread [`log`]): for tests of visitors and operations on the fake formats, where no
/// architecture backend applies. Stage-2 invalidation by IPA is available, as on ARMv8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordingMaint;

impl crate::Maintenance for RecordingMaint {
    const S2_BY_IPA: bool = true;

    fn tlb(&self, op: crate::TlbOp) {
        crate::trace::record(crate::trace::Record::Tlb(op));
    }

    fn barrier(&self, barrier: crate::Barrier) {
        crate::trace::record(crate::trace::Record::Barrier(barrier));
    }

    fn dcache(&self, op: crate::CacheOp, va: usize, len: usize) {
        crate::trace::record(crate::trace::Record::DCache {
            op,
            va: crate::VirtAddr(va as u64),
            len: len as u64,
        });
    }

    fn icache_invalidate_all(&self) {
        crate::trace::record(crate::trace::Record::ICacheInvalidateAll);
    }
}
