//! The host recorder of maintenance operations.
//!
//! Backends call [`record`] on their host build, where there is no MMU to maintain, instead of
//! executing the instruction; the arena of the test kit records descriptor writes and
//! allocations the same way. With the `testkit` feature the records go to a per-thread log that
//! tests read and that feeds the break-before-make checker; without it, [`record`] compiles to
//! nothing.

use crate::addr::{PhysAddr, VirtAddr};
use crate::machine::{Barrier, CacheOp, TlbOp, TraceEvent};

/// One recorded operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// A descriptor store or tree retirement (from a tracing allocator).
    Table(TraceEvent),
    /// A TLB invalidation as requested by the page-table code.
    Tlb(TlbOp),
    /// A barrier.
    Barrier(Barrier),
    /// Data-cache maintenance by VA range.
    DCache {
        /// Operation.
        op: CacheOp,
        /// Start of the range.
        va: VirtAddr,
        /// Length in bytes.
        len: u64,
    },
    /// Whole instruction-cache invalidation.
    ICacheInvalidateAll,
    /// The instruction a backend would execute for the operation before it (mnemonic and
    /// operand), so tests can check the instruction-level sequence.
    Insn {
        /// Assembly mnemonic, e.g. `"tlbi ipas2e1is"`.
        mnemonic: &'static str,
        /// Register operand (0 when none).
        operand: u64,
    },
    /// Pages handed out by an allocator.
    Alloc {
        /// First page.
        pa: PhysAddr,
        /// Number of pages.
        pages: usize,
    },
    /// Pages given back to an allocator.
    Free {
        /// First page.
        pa: PhysAddr,
        /// Number of pages.
        pages: usize,
    },
}

/// Reports one operation to the recorder of this thread (nothing without `testkit`).
#[inline(always)]
pub fn record(r: Record) {
    #[cfg(feature = "testkit")]
    crate::testkit::log::push(r);
    #[cfg(not(feature = "testkit"))]
    let _ = r;
}

/// The PAR value a host build reports for an address translation instruction (there is no
/// MMU to ask): with `testkit`, what the test queued with `testkit::log::queue_par`; otherwise
/// a failed translation (PAR.F, bit 0, set).
#[inline]
pub fn host_par() -> u64 {
    #[cfg(feature = "testkit")]
    return crate::testkit::log::take_par();
    #[cfg(not(feature = "testkit"))]
    1
}
