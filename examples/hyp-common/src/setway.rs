//! Set/way cache maintenance of the guest, as KVM's `kvm_set_way_flush` and
//! `kvm_toggle_cache` handle it.
//!
//! Set/way operations act on the cache of the CPU they run on, not on addresses, so they
//! cannot be virtualized (another CPU, or the hypervisor's own lines, hold the guest's data
//! too). HCR.TSW traps them; the hypervisor does not perform them. Instead, the first one
//! cleans and invalidates everything the VM has mapped to the point of coherency
//! (`Stage2::flush_dcache_vm`, KVM's `stage2_flush_vm`) and turns on HCR.TVM, so that the
//! guest's next change to SCTLR is seen: guests use set/way around turning their caches on or
//! off, and when the cache state changes the VM is flushed again (`kvm_toggle_cache`). Once
//! the caches are on, TVM is turned off again until the next set/way operation. This is
//! correct on hardware with any number of caches: the VM-wide flush by address reaches every
//! level and every CPU's copy, which the guest's own set/way loop would not.

/// What the caller must do after a set/way or TVM trap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Flush the VM's mapped memory (`Stage2::flush_dcache_vm`).
    pub flush: bool,
    /// New state of HCR.TVM, if it changes.
    pub tvm: Option<bool>,
}

/// Set/way state of one vCPU (KVM keeps it per vCPU: HCR.TVM is per vCPU) and the counts for
/// the summary.
#[derive(Default)]
pub struct SetWay {
    tvm: bool,
    /// Set/way instructions trapped.
    pub traps: u32,
    /// VM-wide flushes done for them (first set/way, cache toggles).
    pub flushes: u32,
    /// SCTLR writes seen through TVM.
    pub tvm_traps: u32,
}

/// KVM's `vcpu_has_cache_enabled`: SCTLR.M and SCTLR.C both set (same bits on A64 and A32).
pub fn caches_on(sctlr: u64) -> bool {
    sctlr & 0b101 == 0b101
}

impl SetWay {
    /// A trapped set/way instruction (`kvm_set_way_flush`).
    pub fn on_set_way(&mut self) -> Decision {
        self.traps += 1;
        if self.tvm {
            return Decision::default();
        }
        self.tvm = true;
        self.flushes += 1;
        Decision {
            flush: true,
            tvm: Some(true),
        }
    }

    /// A trapped SCTLR write that changed it from `old` to `new` (`kvm_toggle_cache`).
    pub fn on_sctlr_write(&mut self, old: u64, new: u64) -> Decision {
        self.tvm_traps += 1;
        let (was, now) = (caches_on(old), caches_on(new));
        let flush = was != now;
        if flush {
            self.flushes += 1;
        }
        let tvm = if now && self.tvm {
            self.tvm = false;
            Some(false)
        } else {
            None
        };
        Decision { flush, tvm }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFF: u64 = 0x30d0_0800;
    const ON: u64 = OFF | 0b101;

    #[test]
    fn first_set_way_flushes_and_traps_sctlr() {
        let mut sw = SetWay::default();
        assert_eq!(
            sw.on_set_way(),
            Decision {
                flush: true,
                tvm: Some(true)
            }
        );
        // Further set/way while TVM is on: nothing (kvm_set_way_flush).
        assert_eq!(sw.on_set_way(), Decision::default());
        assert_eq!((sw.traps, sw.flushes), (2, 1));
    }

    #[test]
    fn cache_toggle_flushes_and_caches_on_ends_tvm() {
        let mut sw = SetWay::default();
        sw.on_set_way();
        // SCTLR written with the caches still off: no flush, TVM stays.
        assert_eq!(sw.on_sctlr_write(OFF, OFF), Decision::default());
        // Caches turned on: flush, TVM off (kvm_toggle_cache).
        assert_eq!(
            sw.on_sctlr_write(OFF, ON),
            Decision {
                flush: true,
                tvm: Some(false)
            }
        );
        // The next set/way flushes again and turns TVM back on.
        assert_eq!(
            sw.on_set_way(),
            Decision {
                flush: true,
                tvm: Some(true)
            }
        );
        // Caches turned off: flush, TVM stays on.
        assert_eq!(
            sw.on_sctlr_write(ON, OFF),
            Decision {
                flush: true,
                tvm: None
            }
        );
        assert_eq!((sw.traps, sw.flushes, sw.tvm_traps), (2, 4, 3));
    }

    #[test]
    fn caches_on_needs_m_and_c() {
        assert!(!caches_on(0b001));
        assert!(!caches_on(0b100));
        assert!(caches_on(0b101));
    }
}
