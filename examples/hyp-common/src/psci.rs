//! PSCI for the Linux guest's vCPUs, emulated by the hypervisor: the guest's device tree says
//! `method = "smc"`, HCR.TSC traps its SMCs, and [`Vcpus::call`] answers them (PSCI 1.0, ARM
//! DEN 0022: function IDs, arguments and return codes from its tables; SMC32 and SMC64 IDs
//! alike). The power state of every vCPU lives here, in atomics, because the calls arrive on
//! every CPU at once: `CPU_ON` from one vCPU turns another on, `AFFINITY_INFO` asks about a
//! third, `CPU_OFF` turns the caller off.
//!
//! vCPU `i` runs on physical CPU `i`, whose MPIDR the guest sees through VMPIDR: on QEMU `virt`
//! with at most [`MAX_VCPUS`] CPUs, Aff0 = `i` and the higher affinity fields are 0.

use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// vCPUs (and physical CPUs) at most.
pub const MAX_VCPUS: usize = 4;

/// `PSCI_VERSION`.
pub const VERSION: u32 = 0x8400_0000;
/// `CPU_OFF`.
pub const CPU_OFF: u32 = 0x8400_0002;
/// `CPU_ON`, SMC32 and SMC64.
pub const CPU_ON_32: u32 = 0x8400_0003;
pub const CPU_ON_64: u32 = 0xc400_0003;
/// `AFFINITY_INFO`, SMC32 and SMC64.
pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
pub const AFFINITY_INFO_64: u32 = 0xc400_0004;
/// `MIGRATE_INFO_TYPE`.
pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
/// `SYSTEM_OFF`.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// `SYSTEM_RESET`.
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// `PSCI_FEATURES`.
pub const FEATURES: u32 = 0x8400_000a;

/// PSCI 1.0: major 1 in bits [31:16], minor 0.
pub const VERSION_1_0: u32 = 0x0001_0000;
/// Return codes (DEN 0022 table 6).
pub const SUCCESS: i32 = 0;
pub const NOT_SUPPORTED: i32 = -1;
pub const INVALID_PARAMETERS: i32 = -2;
pub const ALREADY_ON: i32 = -4;
pub const ON_PENDING: i32 = -5;
/// `MIGRATE_INFO_TYPE`: no Trusted OS, nothing to migrate.
pub const TOS_NOT_PRESENT: i32 = 2;
/// `AFFINITY_INFO` answers (DEN 0022 5.7): the affinity instance is on, off, or on pending.
pub const AFF_ON: i32 = 0;
pub const AFF_OFF: i32 = 1;
pub const AFF_ON_PENDING: i32 = 2;

/// What the hypervisor does after a guest SMC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Put this value in x0 / r0 (sign-extended) and resume after the SMC.
    Return(i32),
    /// `CPU_ON` succeeded: vCPU `target` is on pending with its entry point and context id
    /// recorded; the hypervisor starts (or wakes) physical CPU `target`, which takes them with
    /// [`Vcpus::take_pending`]. The caller gets [`SUCCESS`].
    Start {
        /// The vCPU (and physical CPU) index.
        target: usize,
    },
    /// `CPU_OFF`: the calling vCPU is off; it does not return to the guest until a `CPU_ON`.
    Off,
    /// The guest asked to be powered off.
    SystemOff,
    /// The guest asked to be reset.
    SystemReset,
}

/// The calls this emulation implements (what `PSCI_FEATURES` reports as present).
const IMPLEMENTED: [u32; 10] = [
    VERSION,
    FEATURES,
    CPU_OFF,
    CPU_ON_32,
    CPU_ON_64,
    AFFINITY_INFO_32,
    AFFINITY_INFO_64,
    MIGRATE_INFO_TYPE,
    SYSTEM_OFF,
    SYSTEM_RESET,
];

/// Power state values of a vCPU.
const OFF: u8 = 0;
/// `CPU_ON` took the vCPU and is writing its entry point: on pending to everyone else.
const CLAIMED: u8 = 1;
const ON_PENDING_STATE: u8 = 2;
const ON: u8 = 3;

/// One vCPU's power state and the entry point a `CPU_ON` gave it.
struct Power {
    state: AtomicU8,
    entry: AtomicU64,
    context: AtomicU64,
}

/// The power states of a VM's vCPUs, shared by the CPUs that run them.
pub struct Vcpus {
    count: AtomicUsize,
    power: [Power; MAX_VCPUS],
}

impl Default for Vcpus {
    fn default() -> Self {
        Self::new()
    }
}

impl Vcpus {
    /// No vCPU yet (see [`Self::reset`]).
    pub const fn new() -> Self {
        Self {
            count: AtomicUsize::new(0),
            power: [const {
                Power {
                    state: AtomicU8::new(OFF),
                    entry: AtomicU64::new(0),
                    context: AtomicU64::new(0),
                }
            }; MAX_VCPUS],
        }
    }

    /// A VM of `count` vCPUs (at most [`MAX_VCPUS`]): vCPU 0 on (the boot CPU), the others
    /// off, as the boot protocol leaves the secondaries.
    pub fn reset(&self, count: usize) {
        let count = count.clamp(1, MAX_VCPUS);
        self.count.store(count, Ordering::Relaxed);
        for (i, p) in self.power.iter().enumerate() {
            p.state
                .store(if i == 0 { ON } else { OFF }, Ordering::Release);
        }
    }

    /// Number of vCPUs.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// The vCPU whose MPIDR affinity is `mpidr` (Aff0 = index, Aff1..Aff3 = 0), if it exists.
    pub fn index(&self, mpidr: u64) -> Option<usize> {
        let aff = affinity(mpidr);
        (aff < self.count() as u64).then_some(aff as usize)
    }

    /// The `AFFINITY_INFO` value of vCPU `i` (an index that exists).
    pub fn state(&self, i: usize) -> i32 {
        match self.power[i].state.load(Ordering::Acquire) {
            ON => AFF_ON,
            OFF => AFF_OFF,
            _ => AFF_ON_PENDING,
        }
    }

    /// Answers the PSCI call `fid` with arguments `args` (registers 1..=3) from vCPU
    /// `caller`. SMC32 calls see their arguments as 32-bit values.
    pub fn call(&self, caller: usize, fid: u32, args: [u64; 3]) -> Action {
        let smc32 = fid & 0x4000_0000 == 0;
        let arg = |i: usize| {
            if smc32 {
                args[i] & 0xffff_ffff
            } else {
                args[i]
            }
        };
        match fid {
            VERSION => Action::Return(VERSION_1_0 as i32),
            FEATURES => Action::Return(if IMPLEMENTED.contains(&(args[0] as u32)) {
                SUCCESS
            } else {
                NOT_SUPPORTED
            }),
            CPU_ON_32 | CPU_ON_64 => self.cpu_on(arg(0), arg(1), arg(2)),
            CPU_OFF => {
                if let Some(p) = self.power.get(caller) {
                    p.state.store(OFF, Ordering::Release);
                }
                Action::Off
            }
            AFFINITY_INFO_32 | AFFINITY_INFO_64 => {
                // Only level 0 (one CPU) is asked for by PSCI 1.0 callers; a cluster level is
                // not emulated.
                match (self.index(arg(0)), arg(1)) {
                    (Some(i), 0) => Action::Return(self.state(i)),
                    _ => Action::Return(INVALID_PARAMETERS),
                }
            }
            MIGRATE_INFO_TYPE => Action::Return(TOS_NOT_PRESENT),
            SYSTEM_OFF => Action::SystemOff,
            SYSTEM_RESET => Action::SystemReset,
            // CPU_SUSPEND and the rest (and SMCCC's own queries).
            _ => Action::Return(NOT_SUPPORTED),
        }
    }

    /// `CPU_ON(target, entry, context)`: off -> on pending, atomically against other callers.
    fn cpu_on(&self, target: u64, entry: u64, context: u64) -> Action {
        let Some(i) = self.index(target) else {
            return Action::Return(INVALID_PARAMETERS);
        };
        let p = &self.power[i];
        match p
            .state
            .compare_exchange(OFF, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                p.entry.store(entry, Ordering::Relaxed);
                p.context.store(context, Ordering::Relaxed);
                p.state.store(ON_PENDING_STATE, Ordering::Release);
                Action::Start { target: i }
            }
            Err(ON) => Action::Return(ALREADY_ON),
            Err(_) => Action::Return(ON_PENDING),
        }
    }

    /// On physical CPU `i`: if its vCPU is on pending, turns it on and returns the entry point
    /// and context id of its `CPU_ON`.
    pub fn take_pending(&self, i: usize) -> Option<(u64, u64)> {
        let p = self.power.get(i)?;
        p.state
            .compare_exchange(ON_PENDING_STATE, ON, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        Some((
            p.entry.load(Ordering::Relaxed),
            p.context.load(Ordering::Relaxed),
        ))
    }
}

/// The affinity fields Aff3..Aff0 of an MPIDR value.
fn affinity(mpidr: u64) -> u64 {
    mpidr & 0xff_00ff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An MPIDR as the guest's device tree and VMPIDR give it: bit 31 (RES1 on ARMv8, the
    /// multiprocessing-extensions bit on ARMv7) and Aff0 = the CPU.
    const fn mpidr(cpu: u64) -> u64 {
        0x8000_0000 | cpu
    }

    fn four() -> Vcpus {
        let v = Vcpus::new();
        v.reset(4);
        v
    }

    #[test]
    fn version_and_features() {
        let v = four();
        assert_eq!(v.call(0, VERSION, [0; 3]), Action::Return(0x1_0000));
        for f in [SYSTEM_OFF, CPU_ON_64, CPU_OFF, AFFINITY_INFO_32] {
            assert_eq!(v.call(0, FEATURES, [f.into(), 0, 0]), Action::Return(0));
        }
        // CPU_SUSPEND (SMC64) is not implemented.
        assert_eq!(v.call(0, FEATURES, [0xc400_0001, 0, 0]), Action::Return(-1));
    }

    #[test]
    fn cpu_on_then_affinity_info() {
        let v = four();
        // The boot CPU is on; CPU_ON of it is ALREADY_ON (-4).
        assert_eq!(
            v.call(1, CPU_ON_64, [mpidr(0), 0x4020_0000, 7]),
            Action::Return(-4)
        );
        // CPU 2 is off (AFFINITY_INFO 1) until turned on.
        assert_eq!(
            v.call(0, AFFINITY_INFO_64, [mpidr(2), 0, 0]),
            Action::Return(1)
        );
        assert_eq!(
            v.call(0, CPU_ON_64, [mpidr(2), 0x4020_1000, 0x1234]),
            Action::Start { target: 2 }
        );
        // ON_PENDING (2) until CPU 2 takes its entry point; a second CPU_ON is ON_PENDING (-5).
        assert_eq!(
            v.call(0, AFFINITY_INFO_32, [mpidr(2), 0, 0]),
            Action::Return(2)
        );
        assert_eq!(v.call(1, CPU_ON_64, [mpidr(2), 0, 0]), Action::Return(-5));
        assert_eq!(v.take_pending(2), Some((0x4020_1000, 0x1234)));
        assert_eq!(v.take_pending(2), None);
        assert_eq!(
            v.call(0, AFFINITY_INFO_64, [mpidr(2), 0, 0]),
            Action::Return(0)
        );
        // CPU_OFF from CPU 2: off again, and it can be turned on once more.
        assert_eq!(v.call(2, CPU_OFF, [0; 3]), Action::Off);
        assert_eq!(
            v.call(0, AFFINITY_INFO_64, [mpidr(2), 0, 0]),
            Action::Return(1)
        );
        assert_eq!(
            v.call(0, CPU_ON_32, [mpidr(2), 0x4100_0000, 1]),
            Action::Start { target: 2 }
        );
    }

    #[test]
    fn bad_targets() {
        let v = four();
        // No CPU 4, no cluster 1: INVALID_PARAMETERS (-2).
        assert_eq!(v.call(0, CPU_ON_64, [mpidr(4), 0, 0]), Action::Return(-2));
        assert_eq!(
            v.call(0, CPU_ON_64, [mpidr(0x100), 0, 0]),
            Action::Return(-2)
        );
        // AFFINITY_INFO above level 0 is not emulated.
        assert_eq!(
            v.call(0, AFFINITY_INFO_64, [mpidr(1), 1, 0]),
            Action::Return(-2)
        );
        // SMC32 CPU_ON sees only the low halves: the target's high bits are ignored.
        assert_eq!(
            v.call(0, CPU_ON_32, [0xffff_ffff_0000_0001 | mpidr(0), 8, 9]),
            Action::Start { target: 1 }
        );
        assert_eq!(v.take_pending(1), Some((8, 9)));
        // One vCPU: every other CPU is absent.
        let one = Vcpus::new();
        one.reset(1);
        assert_eq!(one.call(0, CPU_ON_64, [mpidr(1), 0, 0]), Action::Return(-2));
    }

    #[test]
    fn power() {
        let v = four();
        assert_eq!(v.call(0, SYSTEM_OFF, [0; 3]), Action::SystemOff);
        assert_eq!(v.call(3, SYSTEM_RESET, [0; 3]), Action::SystemReset);
        assert_eq!(v.call(0, MIGRATE_INFO_TYPE, [0; 3]), Action::Return(2));
        // SMCCC_VERSION is answered NOT_SUPPORTED: the guest assumes SMCCC 1.0.
        assert_eq!(v.call(0, 0x8000_0000, [0; 3]), Action::Return(-1));
    }
}
