//! What stage 2 needs to know about the CPU: its physical-address size and its VMID size.

use crate::arch::RegisterError;

/// The CPU properties a stage-2 tree depends on.
///
/// [`Stage2::new`](crate::Stage2::new) takes them from [`Arch::cpu_caps`](crate::Arch::cpu_caps)
/// (read from the CPU on an ARMv8 target, fixed on ARMv7); pass them yourself with
/// [`Stage2::with_config`](crate::Stage2::with_config), e.g. from
/// [`from_armv8_id_regs`](Self::from_armv8_id_regs) of values your boot code read, or to
/// build tables for another CPU on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuCaps {
    /// Physical-address size in bits: the widest output address of stage 2 (and the widest
    /// IPA: an IPA wider than the PA size is refused, the architecture makes it CONSTRAINED
    /// UNPREDICTABLE). ARMv8: `ID_AA64MMFR0_EL1.PARange`, 32..=48 (`VTCR_EL2.PS`); ARMv7
    /// LPAE: always 40.
    pub pa_bits: u8,
    /// VMID size in bits: 8, or 16 on ARMv8.1+ CPUs whose `ID_AA64MMFR1_EL1.VMIDBits` is
    /// `0b0010` (then `VTCR_EL2.VS` is set and the VMID fills `VTTBR_EL2[63:48]`).
    pub vmid_bits: u8,
}

impl CpuCaps {
    /// Cortex-A15: 40-bit PA (LPAE), 8-bit VMID. Every ARMv7 CPU with the Virtualization
    /// Extensions has these.
    pub const CORTEX_A15: CpuCaps = CpuCaps {
        pa_bits: 40,
        vmid_bits: 8,
    };

    /// Cortex-A53: 40-bit PA (`PARange` `0b0010`), 8-bit VMID (ARMv8.0).
    pub const CORTEX_A53: CpuCaps = CpuCaps {
        pa_bits: 40,
        vmid_bits: 8,
    };

    /// The properties `ID_AA64MMFR0_EL1` (PARange, bits `[3:0]`) and `ID_AA64MMFR1_EL1`
    /// (VMIDBits, bits `[7:4]`) report. A 52-bit PARange gives 48 bits (the widest the
    /// descriptors hold); a reserved PARange or VMIDBits value is an error.
    pub fn from_armv8_id_regs(
        id_aa64mmfr0_el1: u64,
        id_aa64mmfr1_el1: u64,
    ) -> Result<CpuCaps, RegisterError> {
        use pt_armv8::regs;
        Ok(CpuCaps {
            pa_bits: regs::parange_to_pa_bits(id_aa64mmfr0_el1).map_err(RegisterError::Armv8)?,
            vmid_bits: regs::vmidbits_to_bits(id_aa64mmfr1_el1).map_err(RegisterError::Armv8)?,
        })
    }

    /// The largest VMID: 255 with 8-bit VMIDs, 65535 with 16-bit ones.
    pub const fn max_vmid(&self) -> u16 {
        if self.vmid_bits >= 16 {
            u16::MAX
        } else {
            (1u16 << self.vmid_bits) - 1
        }
    }
}
