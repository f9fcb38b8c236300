//! PSCI for the one-vCPU Linux guest, emulated by the hypervisor: the guest's device tree says
//! `method = "smc"`, HCR.TSC traps its SMCs, and [`call`] answers them (PSCI 1.0, ARM DEN 0022:
//! function IDs and return codes from its tables; SMC32 and SMC64 IDs alike).

/// `PSCI_VERSION`.
pub const VERSION: u32 = 0x8400_0000;
/// `CPU_OFF`.
pub const CPU_OFF: u32 = 0x8400_0002;
/// `CPU_ON`, SMC32 and SMC64.
pub const CPU_ON_32: u32 = 0x8400_0003;
pub const CPU_ON_64: u32 = 0xc400_0003;
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
/// Return codes.
pub const SUCCESS: i32 = 0;
pub const NOT_SUPPORTED: i32 = -1;
pub const INVALID_PARAMETERS: i32 = -2;
pub const ALREADY_ON: i32 = -4;
/// `MIGRATE_INFO_TYPE`: no Trusted OS, nothing to migrate.
pub const TOS_NOT_PRESENT: i32 = 2;

/// What the hypervisor does after a guest SMC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Put this value in x0 / r0 (sign-extended) and resume after the SMC.
    Return(i32),
    /// The guest asked to be powered off.
    SystemOff,
    /// The guest asked to be reset.
    SystemReset,
}

/// The calls this emulation implements (what `PSCI_FEATURES` reports as present).
const IMPLEMENTED: [u32; 7] = [
    VERSION,
    FEATURES,
    CPU_ON_32,
    CPU_ON_64,
    MIGRATE_INFO_TYPE,
    SYSTEM_OFF,
    SYSTEM_RESET,
];

/// Answers the PSCI call `fid` with its first argument `arg0`, for a guest whose only vCPU
/// has affinity `own_mpidr` (MPIDR bits [23:0] and [39:32]).
pub fn call(fid: u32, arg0: u64, own_mpidr: u64) -> Action {
    match fid {
        VERSION => Action::Return(VERSION_1_0 as i32),
        FEATURES => Action::Return(if IMPLEMENTED.contains(&(arg0 as u32)) {
            SUCCESS
        } else {
            NOT_SUPPORTED
        }),
        // One vCPU: the only CPU there is is already on, any other does not exist.
        CPU_ON_32 | CPU_ON_64 => Action::Return(if affinity(arg0) == affinity(own_mpidr) {
            ALREADY_ON
        } else {
            INVALID_PARAMETERS
        }),
        MIGRATE_INFO_TYPE => Action::Return(TOS_NOT_PRESENT),
        SYSTEM_OFF => Action::SystemOff,
        SYSTEM_RESET => Action::SystemReset,
        // CPU_OFF of the last CPU, CPU_SUSPEND and the rest (and SMCCC's own queries).
        _ => Action::Return(NOT_SUPPORTED),
    }
}

/// The affinity fields Aff3..Aff0 of an MPIDR value.
fn affinity(mpidr: u64) -> u64 {
    mpidr & 0xff_00ff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    const MPIDR: u64 = 0x8000_0000;

    #[test]
    fn version_and_features() {
        assert_eq!(call(VERSION, 0, MPIDR), Action::Return(0x1_0000));
        assert_eq!(call(FEATURES, SYSTEM_OFF.into(), MPIDR), Action::Return(0));
        assert_eq!(call(FEATURES, CPU_ON_64.into(), MPIDR), Action::Return(0));
        // CPU_SUSPEND (SMC64) is not implemented.
        assert_eq!(call(FEATURES, 0xc400_0001, MPIDR), Action::Return(-1));
    }

    #[test]
    fn cpu_on_refused() {
        assert_eq!(call(CPU_ON_64, 0, MPIDR), Action::Return(ALREADY_ON));
        assert_eq!(
            call(CPU_ON_32, 1, MPIDR),
            Action::Return(INVALID_PARAMETERS)
        );
    }

    #[test]
    fn power() {
        assert_eq!(call(SYSTEM_OFF, 0, MPIDR), Action::SystemOff);
        assert_eq!(call(SYSTEM_RESET, 0, MPIDR), Action::SystemReset);
        assert_eq!(call(MIGRATE_INFO_TYPE, 0, MPIDR), Action::Return(2));
        // SMCCC_VERSION is answered NOT_SUPPORTED: the guest assumes SMCCC 1.0.
        assert_eq!(call(0x8000_0000, 0, MPIDR), Action::Return(-1));
    }
}
