//! The project's MMIO test device, emulated at [`BASE`] for the Linux guest, which drives it
//! from its `/init` with busybox `devmem` (see `xtask/guest/init`).
//!
//! | offset | access | register                                                          |
//! |--------|--------|-------------------------------------------------------------------|
//! | 0x00   | R      | `ID`: [`ID_VALUE`]                                                 |
//! | 0x08   | R/W    | `SCRATCH`: any size 1/2/4/8; a read returns the last write, truncated to the read's size |
//! | 0x10   | W      | `REPORT`: bits [7:0] what ([`Report`]), bit 8 passed                |
//! | 0x14   | W      | `MIGRATE`: 1 asks the hypervisor to migrate the guest               |
//! | 0x18   | R      | `STATUS`: migration state ([`STATUS_IDLE`] ...)                     |
//!
//! Everything else in the page reads as zero and ignores writes.

/// IPA of the device (a hole in the guest's address map, not in its device tree).
pub const BASE: u64 = 0x0b00_0000;
/// Size of its register page.
pub const SIZE: u64 = 0x1000;
/// Value of the ID register.
pub const ID_VALUE: u64 = 0x5eed_0015;
const ID: u64 = 0x00;
const SCRATCH: u64 = 0x08;
const REPORT: u64 = 0x10;
const MIGRATE: u64 = 0x14;
const STATUS: u64 = 0x18;

/// `STATUS` values.
pub const STATUS_IDLE: u64 = 0;
pub const STATUS_RUNNING: u64 = 1;
pub const STATUS_DONE: u64 = 2;
pub const STATUS_FAILED: u64 = 3;

/// What a `REPORT` write reports (its low byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// `/init` started.
    Init = 1,
    /// The guest read back every value it wrote to `SCRATCH`, at every size.
    Device = 2,
    /// Its data (files and their checksums) was written and checked before the migration.
    DataBefore = 3,
    /// The same data checked again after the migration.
    DataAfter = 4,
    /// A virtio-mmio transport's magic register (outside every slot, not passed through)
    /// read as zero after a write to it.
    ReadAsZero = 5,
    /// The guest saw as many CPUs as its device tree gives it (`nproc`).
    Cpus = 6,
    /// One writer pinned to every CPU ran during the migration and finished.
    Writers = 7,
}

/// Reports kept at most.
const MAX_REPORTS: usize = 12;

/// Device state and what the guest did with it.
#[derive(Default)]
pub struct TestDevice {
    scratch: u64,
    /// Access sizes seen on `SCRATCH`, bit `n` = `1 << n` bytes, for reads and writes.
    pub read_sizes: u8,
    pub write_sizes: u8,
    /// A `SCRATCH` read returned something else than the last write of the same size (only
    /// possible if a write of another size came in between).
    pub mismatched_reads: u32,
    last_write: Option<(u8, u64)>,
    /// Reports received: `(what, passed)` in arrival order (at most [`MAX_REPORTS`] kept).
    reports: [Option<(u8, bool)>; MAX_REPORTS],
    /// Set by a `MIGRATE` write, cleared by [`Self::take_migration_request`].
    migrate_requested: bool,
    /// Value of `STATUS`.
    pub status: u64,
}

impl TestDevice {
    /// A device in its reset state (nothing written, status idle), for a `static`.
    pub const fn new() -> Self {
        Self {
            scratch: 0,
            read_sizes: 0,
            write_sizes: 0,
            mismatched_reads: 0,
            last_write: None,
            reports: [None; MAX_REPORTS],
            migrate_requested: false,
            status: STATUS_IDLE,
        }
    }

    /// Whether `ipa` is in the device's page.
    pub fn contains(ipa: u64) -> bool {
        ipa.wrapping_sub(BASE) < SIZE
    }

    /// A guest load of `size` bytes at `ipa` (in the device page).
    pub fn read(&mut self, ipa: u64, size: u8) -> u64 {
        let mask = size_mask(size);
        match ipa - BASE {
            ID => ID_VALUE & mask,
            SCRATCH => {
                self.read_sizes |= size;
                let v = self.scratch & mask;
                if self.last_write.is_some_and(|(s, w)| s == size && w != v) {
                    self.mismatched_reads += 1;
                }
                v
            }
            STATUS => self.status & mask,
            _ => 0,
        }
    }

    /// A guest store of `size` bytes of `value` at `ipa` (in the device page).
    pub fn write(&mut self, ipa: u64, size: u8, value: u64) {
        let value = value & size_mask(size);
        match ipa - BASE {
            SCRATCH => {
                self.write_sizes |= size;
                self.scratch = value;
                self.last_write = Some((size, value));
            }
            REPORT => {
                if let Some(slot) = self.reports.iter_mut().find(|r| r.is_none()) {
                    *slot = Some(((value & 0xff) as u8, value & 0x100 != 0));
                }
            }
            MIGRATE if value == 1 => self.migrate_requested = true,
            _ => {}
        }
    }

    /// The last report of `what`, if any: whether it passed.
    pub fn report(&self, what: Report) -> Option<bool> {
        self.reports
            .iter()
            .flatten()
            .rev()
            .find(|(w, _)| *w == what as u8)
            .map(|&(_, ok)| ok)
    }

    /// Whether the guest asked for a migration since the last call.
    pub fn take_migration_request(&mut self) -> bool {
        core::mem::take(&mut self.migrate_requested)
    }
}

fn size_mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * size)) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_round_trips_at_every_size() {
        let mut d = TestDevice::default();
        for (size, v) in [
            (1u8, 0xa5u64),
            (2, 0xbeef),
            (4, 0x1234_5678),
            (8, 0x0123_4567_89ab_cdef),
        ] {
            d.write(BASE + 8, size, v);
            assert_eq!(d.read(BASE + 8, size), v);
        }
        assert_eq!(
            (d.read_sizes, d.write_sizes, d.mismatched_reads),
            (15, 15, 0)
        );
        // A write is truncated to its size.
        d.write(BASE + 8, 1, 0x1ff);
        assert_eq!(d.read(BASE + 8, 4), 0xff);
    }

    #[test]
    fn id_reports_migration_and_raz() {
        let mut d = TestDevice::default();
        assert_eq!(d.read(BASE, 4), ID_VALUE);
        assert_eq!(d.read(BASE + 0x100, 4), 0);
        d.write(BASE + 0x10, 4, 0x100 | Report::Device as u64);
        d.write(BASE + 0x10, 4, Report::DataAfter as u64);
        assert_eq!(d.report(Report::Device), Some(true));
        assert_eq!(d.report(Report::DataAfter), Some(false));
        assert_eq!(d.report(Report::Init), None);
        assert!(!d.take_migration_request());
        d.write(BASE + 0x14, 4, 1);
        assert!(d.take_migration_request());
        assert!(!d.take_migration_request());
        assert!(TestDevice::contains(BASE + 0xfff) && !TestDevice::contains(BASE + 0x1000));
    }
}
