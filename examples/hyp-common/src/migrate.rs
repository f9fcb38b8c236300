//! Live migration of a VM's RAM to a second VM by pre-copy, the proof of dirty logging: log
//! the source's RAM slot, copy all of it, copy the pages dirtied since round after round while
//! the guest runs, then stop-and-copy (the guest is stopped while the hypervisor runs) and
//! compare both buffers byte for byte. [`crate::linux`] then switches every vCPU to the
//! destination VM and tears the source down.

use crate::alloc::PagePool;
use pt_hyp::{Arch, SlotId, Stage2};

const PAGE: u64 = 4096;
/// Pages of the largest RAM slot this migrates (256 MiB).
pub const MAX_PAGES: usize = 65536;
/// Pre-copy rounds at most before the stop-and-copy.
pub const MAX_ROUNDS: usize = 12;
/// Pre-copy rounds at least (so that dirty logging is exercised under a live workload).
pub const MIN_ROUNDS: usize = 3;
/// Pre-copy lasts at least this long (milliseconds of the generic counter), so the guest's
/// workload runs and writes memory between the rounds.
pub const MIN_PRECOPY_MS: u64 = 1500;
/// A round this small ends the pre-copy (once the minimum time is over).
pub const CONVERGED_PAGES: u64 = 64;
/// Time between rounds, in milliseconds of the generic counter.
pub const ROUND_MS: u64 = 100;

/// Where the migration is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Idle,
    PreCopy,
    Done,
    Failed,
}

/// One migration of a RAM slot from host buffer `src` to host buffer `dst`.
pub struct Migration {
    pub state: State,
    /// Dirty pages copied in each pre-copy round, then the stop-and-copy round last.
    pub rounds: [u64; MAX_ROUNDS + 1],
    pub n_rounds: usize,
    /// Pages that differ between the two buffers after the stop-and-copy.
    pub mismatched_pages: Option<u64>,
    next_round_at: u64,
    interval: u64,
    /// Counter value before which the pre-copy does not end.
    min_end_at: u64,
    /// The pre-copy has converged (or hit its round limit): the next due turn stops the
    /// guest and copies the rest.
    pub stop_due: bool,
    bitmap: [u64; MAX_PAGES / 64],
}

impl Default for Migration {
    fn default() -> Self {
        Self::new()
    }
}

/// Copies `pages` pages from host `src` to host `dst` (identity mapped in the hypervisor).
fn copy_pages(src: u64, dst: u64, pages: u64) {
    // SAFETY: both ranges are RAM slot buffers the hypervisor owns, identity mapped, disjoint.
    unsafe {
        core::ptr::copy_nonoverlapping(
            src as usize as *const u8,
            dst as usize as *mut u8,
            (pages * PAGE) as usize,
        )
    }
}

/// Whether page `i` of the two buffers differs.
fn page_differs(src: u64, dst: u64, i: u64) -> bool {
    let n = (PAGE / 8) as usize;
    // SAFETY: as in `copy_pages`; read only.
    let (a, b) = unsafe {
        (
            core::slice::from_raw_parts((src + i * PAGE) as usize as *const u64, n),
            core::slice::from_raw_parts((dst + i * PAGE) as usize as *const u64, n),
        )
    };
    // OR of the XORs over the whole page, not `a != b`: that becomes a call to the
    // byte-at-a-time `bcmp` of compiler-builtins, ten times slower here.
    a.iter().zip(b).fold(0u64, |acc, (x, y)| acc | (x ^ y)) != 0
}

impl Migration {
    pub const fn new() -> Self {
        Self {
            state: State::Idle,
            rounds: [0; MAX_ROUNDS + 1],
            n_rounds: 0,
            mismatched_pages: None,
            next_round_at: 0,
            interval: 0,
            min_end_at: 0,
            stop_due: false,
            bitmap: [0; MAX_PAGES / 64],
        }
    }

    /// Starts: dirty logging on `slot` of `vm` (write-protects what is mapped). Call with the
    /// VM's lock held, then [`Self::full_copy`] without it.
    pub fn start<A: Arch>(
        &mut self,
        vm: &mut Stage2<A, &PagePool>,
        slot: SlotId,
        pages: u64,
    ) -> Result<(), pt_hyp::Error> {
        if pages as usize > MAX_PAGES {
            self.state = State::Failed;
            return Err(pt_hyp::Error::SlotTooLarge { size: pages * PAGE });
        }
        if let Err(e) = vm.enable_dirty_logging(slot) {
            self.state = State::Failed;
            return Err(e);
        }
        self.state = State::PreCopy;
        Ok(())
    }

    /// The first copy of all `pages` pages from `src` to `dst`, while the vCPUs run (every
    /// write they make meanwhile is in the dirty log). `clock` reads the generic counter
    /// (`freq` Hz): the rounds are timed from the end of the copy.
    pub fn full_copy(
        &mut self,
        src: u64,
        dst: u64,
        pages: u64,
        clock: impl Fn() -> u64,
        freq: u64,
    ) {
        copy_pages(src, dst, pages.min(MAX_PAGES as u64));
        let now = clock();
        self.interval = freq * ROUND_MS / 1000;
        self.next_round_at = now + self.interval;
        self.min_end_at = now + freq * MIN_PRECOPY_MS / 1000;
    }

    /// Whether a pre-copy round is due at counter value `now`.
    pub fn due(&self, now: u64) -> bool {
        self.state == State::PreCopy && now >= self.next_round_at
    }

    /// One round, first half (with the VM's lock held): fetch and clear the dirty log,
    /// re-protecting those pages. Returns the number of pages.
    pub fn fetch_log<A: Arch>(
        &mut self,
        vm: &mut Stage2<A, &PagePool>,
        slot: SlotId,
    ) -> Result<u64, pt_hyp::Error> {
        vm.get_dirty_log(slot, &mut self.bitmap)
    }

    /// One round, second half (without the VM's lock): copy the `n` pages of the fetched log
    /// from `src` to `dst`; the next round is due one interval after this one ends (`clock`).
    /// A page written again while this copies was re-protected by the fetch, so its new
    /// contents are in the next round's log.
    pub fn copy_logged(&mut self, n: u64, src: u64, dst: u64, clock: impl Fn() -> u64) {
        for (w, &word) in self.bitmap.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let i = (w * 64) as u64 + u64::from(bits.trailing_zeros());
                copy_pages(src + i * PAGE, dst + i * PAGE, 1);
                bits &= bits - 1;
            }
        }
        if self.n_rounds < self.rounds.len() {
            self.rounds[self.n_rounds] = n;
            self.n_rounds += 1;
        }
        self.next_round_at = clock() + self.interval;
    }

    /// Whether the pre-copy should end after a round of `last` pages at counter value `now`;
    /// if so, [`Self::stop_due`] is set: the guest runs one more interval, and the next turn
    /// is the stop-and-copy.
    pub fn converged(&mut self, last: u64, now: u64) -> bool {
        self.stop_due = self.n_rounds >= MAX_ROUNDS
            || (self.n_rounds >= MIN_ROUNDS && now >= self.min_end_at && last <= CONVERGED_PAGES);
        self.stop_due
    }

    /// Stop-and-copy (no vCPU is running the guest): the last round, then the byte comparison
    /// of all `pages` pages. Returns the number of mismatched pages.
    pub fn stop_and_copy<A: Arch>(
        &mut self,
        vm: &mut Stage2<A, &PagePool>,
        slot: SlotId,
        src: u64,
        dst: u64,
        pages: u64,
        clock: impl Fn() -> u64,
    ) -> Result<u64, pt_hyp::Error> {
        let n = self.fetch_log(vm, slot)?;
        self.copy_logged(n, src, dst, clock);
        let bad = (0..pages).filter(|&i| page_differs(src, dst, i)).count() as u64;
        self.mismatched_pages = Some(bad);
        self.state = if bad == 0 { State::Done } else { State::Failed };
        Ok(bad)
    }

    /// The pre-copy rounds and the stop-and-copy round.
    pub fn rounds(&self) -> &[u64] {
        &self.rounds[..self.n_rounds]
    }
}
