//! The per-thread recording of operations, in order.

use crate::machine::{Barrier, TlbOp};
use crate::trace::Record;
use std::cell::RefCell;
use std::vec::Vec;

use super::bbm::Checker;

std::thread_local! {
    static LOG: RefCell<Vec<Record>> = const { RefCell::new(Vec::new()) };
    static CHECKER: RefCell<Checker> = RefCell::new(Checker::default());
    /// Every TLB invalidation since the last [`reset`], kept across [`clear`] (for the
    /// simulated TLB, which reads it through a cursor).
    static TLB_HISTORY: RefCell<Vec<TlbOp>> = const { RefCell::new(Vec::new()) };
    /// What the next address translations of the guest's stage 1 (`AT S1E1R`, `ATS1CPR`)
    /// report in PAR on the host, oldest first; empty: the walk fails.
    static PAR: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Queues the PAR value the next host "execution" of a stage-1 address translation
/// (`AT S1E1R` on ARMv8, `ATS1CPR` on ARMv7) reports: a test states what the guest's stage-1
/// tables would give. Without a queued value the translation fails (PAR.F = 1).
pub fn queue_par(par: u64) {
    PAR.with(|p| p.borrow_mut().push(par));
}

/// The PAR value of a host address translation: the oldest queued one, or PAR.F = 1 (the
/// stage-1 walk failed) when none is queued.
pub fn take_par() -> u64 {
    PAR.with(|p| {
        let mut p = p.borrow_mut();
        if p.is_empty() {
            1
        } else {
            p.remove(0)
        }
    })
}

pub(crate) fn push(r: Record) {
    LOG.with(|l| l.borrow_mut().push(r));
    CHECKER.with(|c| c.borrow_mut().feed(&r));
    if let Record::Tlb(op) = r {
        TLB_HISTORY.with(|h| h.borrow_mut().push(op));
    }
}

/// Forgets everything recorded on this thread and resets the checker.
pub fn reset() {
    LOG.with(|l| l.borrow_mut().clear());
    TLB_HISTORY.with(|h| h.borrow_mut().clear());
    PAR.with(|p| p.borrow_mut().clear());
    CHECKER.with(|c| *c.borrow_mut() = Checker::default());
}

/// Forgets the recorded operations but keeps the checker's knowledge of the tables.
pub fn clear() {
    LOG.with(|l| l.borrow_mut().clear());
}

/// A copy of everything recorded on this thread since the last reset or clear.
pub fn records() -> Vec<Record> {
    LOG.with(|l| l.borrow().clone())
}

/// The TLB invalidations recorded since the last reset or clear, in order.
pub fn tlb_ops() -> Vec<TlbOp> {
    LOG.with(|l| {
        l.borrow()
            .iter()
            .filter_map(|r| match r {
                Record::Tlb(op) => Some(*op),
                _ => None,
            })
            .collect()
    })
}

/// Number of TLB invalidations recorded on this thread since the last [`reset`] (not
/// affected by [`clear`]): a cursor for [`tlb_history_from`].
pub fn tlb_history_len() -> usize {
    TLB_HISTORY.with(|h| h.borrow().len())
}

/// The TLB invalidations recorded since the last [`reset`] from position `from` of the history
/// on, in order (empty when `from` is at or past its end).
pub fn tlb_history_from(from: usize) -> Vec<TlbOp> {
    TLB_HISTORY.with(|h| {
        h.borrow()
            .get(from..)
            .map(<[TlbOp]>::to_vec)
            .unwrap_or_default()
    })
}

/// The barriers recorded since the last reset or clear, in order.
pub fn barriers() -> Vec<Barrier> {
    LOG.with(|l| {
        l.borrow()
            .iter()
            .filter_map(|r| match r {
                Record::Barrier(b) => Some(*b),
                _ => None,
            })
            .collect()
    })
}

/// Number of descriptor stores recorded since the last reset or clear.
pub fn writes() -> usize {
    LOG.with(|l| {
        l.borrow()
            .iter()
            .filter(|r| matches!(r, Record::Table(crate::TraceEvent::Write { .. })))
            .count()
    })
}

/// Violations of break-before-make (and of the freeing order) seen so far on this thread.
pub fn violations() -> Vec<std::string::String> {
    CHECKER.with(|c| c.borrow().violations().to_vec())
}

/// Takes the violations seen so far, leaving none.
pub fn take_violations() -> Vec<std::string::String> {
    CHECKER.with(|c| core::mem::take(&mut c.borrow_mut().violations))
}
