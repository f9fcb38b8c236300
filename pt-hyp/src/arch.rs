//! What pt-hyp needs from an architecture backend, and its two implementations.

use crate::cpu::CpuCaps;
use pt_core::{Format, Geometry, Maintenance, PhysAddr, Stage1Attrs, Stage2Attrs};

/// Why an architecture refused to compute a register value (the backend's own error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegisterError {
    /// From the ARMv7 backend.
    Armv7(pt_armv7::regs::RegError),
    /// From the ARMv8 backend.
    Armv8(pt_armv8::regs::RegError),
    /// CPU properties the architecture does not have (ARMv7: anything but a 40-bit PA and
    /// 8-bit VMIDs; ARMv8: a VMID size other than 8 or 16 bits).
    UnsupportedCpu(CpuCaps),
}

impl core::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RegisterError::Armv7(e) => write!(f, "armv7: {e}"),
            RegisterError::Armv8(e) => write!(f, "armv8: {e}"),
            RegisterError::UnsupportedCpu(c) => write!(
                f,
                "no such CPU: {}-bit physical addresses with {}-bit VMIDs",
                c.pa_bits, c.vmid_bits
            ),
        }
    }
}

impl core::error::Error for RegisterError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            RegisterError::Armv7(e) => Some(e),
            RegisterError::Armv8(e) => Some(e),
            RegisterError::UnsupportedCpu(_) => None,
        }
    }
}

/// An architecture: its two descriptor formats, its maintenance instructions and its register
/// values. Implemented by [`Armv7`] (Cortex-A15, HYP mode) and [`Armv8`] (Cortex-A53, EL2).
///
/// **Only the target's own architecture is implemented** on a bare-metal build: on an ARMv7
/// target (`target_arch = "arm"`) `Armv8` is not an `Arch`, on an ARMv8 target
/// (`target_arch = "aarch64"`) `Armv7` is not, so `Stage2<Armv8, _>` built for the Cortex-A15
/// is a compile error instead of tables whose TLB maintenance silently does nothing. Every
/// other target (the host: tests, tools) has both, with the instructions recorded.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an architecture backend of this build target",
    note = "pt-hyp implements `Armv7` only for ARMv7 targets and `Armv8` only for AArch64 \
            targets (both on the host)"
)]
pub trait Arch: 'static {
    /// Hyp-mode stage-1 descriptor format (HTTBR / TTBR0_EL2 trees).
    type Hyp: Format<Attrs = Stage1Attrs>;
    /// Stage-2 descriptor format (VTTBR trees).
    type S2: Format<Attrs = Stage2Attrs>;
    /// TLB, cache and barrier instructions.
    type Maint: Maintenance + Default;

    /// Short name: `"armv7"` or `"armv8"`.
    const NAME: &'static str;
    /// Physical-address size of the reference CPU (40 bits on Cortex-A15 and Cortex-A53). The
    /// size a stage 2 uses is [`CpuCaps::pa_bits`], from [`cpu_caps`](Self::cpu_caps) or
    /// given.
    const PA_BITS: u8;
    /// Largest 8-bit VMID. A CPU with 16-bit VMIDs allows up to [`CpuCaps::max_vmid`].
    const MAX_VMID: u16 = 255;

    /// The CPU this code runs on. ARMv8: on an `aarch64` target, read from
    /// `ID_AA64MMFR0_EL1.PARange` and `ID_AA64MMFR1_EL1.VMIDBits` (both readable at EL2;
    /// reserved values fall back to [`CpuCaps::CORTEX_A53`]); on the host,
    /// [`CpuCaps::CORTEX_A53`]. ARMv7: always [`CpuCaps::CORTEX_A15`] (LPAE has a 40-bit PA
    /// and 8-bit VMIDs).
    fn cpu_caps() -> CpuCaps;

    /// VTTBR value for a stage-2 root at `root` with `geom` and `vmid`, for VMIDs of
    /// `cpu.vmid_bits`.
    fn vttbr(
        root: PhysAddr,
        geom: &Geometry,
        vmid: u16,
        cpu: &CpuCaps,
    ) -> Result<u64, RegisterError>;
    /// VTCR value for `geom` on `cpu` (its PA size in `VTCR_EL2.PS`, its VMID size in
    /// `VTCR_EL2.VS`; ARMv7's VTCR has neither field).
    fn vtcr(geom: &Geometry, cpu: &CpuCaps) -> Result<u64, RegisterError>;

    /// Invalidates the TLB entries of every VM, whatever its VMID, and the instruction caches
    /// (KVM's `__kvm_flush_vm_context`). **Call it when VMIDs roll over**: before a VMID
    /// freed by one VM (or left over from an earlier generation) is given to another, so that
    /// no TLB entry or VMID-tagged I-cache line of the old owner survives. Run it from the
    /// hypervisor (HYP mode / EL2) on one CPU; the invalidations are broadcast to the inner
    /// shareable domain.
    ///
    /// ARMv7: `TLBIALLNSNHIS`, `ICIALLUIS`, `DSB ISH`
    /// ([`pt_armv7::Maint::flush_vm_context`]). ARMv8: `DSB ISHST`, `TLBI ALLE1IS`,
    /// `IC IALLUIS`, `DSB ISH` ([`pt_armv8::Maint::flush_vm_context`]).
    fn flush_vm_context(maint: &Self::Maint);

    /// Loads a VM's stage 2 on this CPU: VTCR, VTTBR, then `ISB`
    /// ([`pt_armv7::sysreg::load_stage2`], [`pt_armv8::sysreg::load_stage2`]). Prefer
    /// [`Stage2::load`](crate::Stage2::load).
    ///
    /// # Safety
    ///
    /// As the backend function says: HYP mode / EL2, `vttbr` and `vtcr` of one live tree that
    /// stays allocated while any CPU runs with it.
    unsafe fn load_stage2(vtcr: u64, vttbr: u64);
}

/// ARMv7-A with LPAE and the Virtualization Extensions (Cortex-A15 in HYP mode). An [`Arch`]
/// on ARMv7 targets and on the host, not on AArch64 targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Armv7;

/// ARMv8-A (Cortex-A53 at EL2). An [`Arch`] on AArch64 targets and on the host, not on ARMv7
/// targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Armv8;

// Not on an ARMv8 target: there the ARMv7 backend's instructions would not exist (point 7 of
// issue 18: the wrong backend is a compile error, not a silent no-op).
#[cfg(not(target_arch = "aarch64"))]
impl Arch for Armv7 {
    type Hyp = pt_armv7::HypFormat;
    type S2 = pt_armv7::S2Format;
    type Maint = pt_armv7::Maint;
    const NAME: &'static str = "armv7";
    const PA_BITS: u8 = 40;

    fn cpu_caps() -> CpuCaps {
        CpuCaps::CORTEX_A15
    }

    fn vttbr(
        root: PhysAddr,
        geom: &Geometry,
        vmid: u16,
        cpu: &CpuCaps,
    ) -> Result<u64, RegisterError> {
        if *cpu != CpuCaps::CORTEX_A15 {
            return Err(RegisterError::UnsupportedCpu(*cpu));
        }
        pt_armv7::regs::vttbr(root, geom, vmid).map_err(RegisterError::Armv7)
    }

    fn vtcr(geom: &Geometry, cpu: &CpuCaps) -> Result<u64, RegisterError> {
        // ARMv7 VTCR has no output-size field: the PA size is fixed at 40 bits, VMIDs at 8.
        if *cpu != CpuCaps::CORTEX_A15 {
            return Err(RegisterError::UnsupportedCpu(*cpu));
        }
        pt_armv7::regs::vtcr(geom)
            .map(u64::from)
            .map_err(RegisterError::Armv7)
    }

    fn flush_vm_context(maint: &pt_armv7::Maint) {
        maint.flush_vm_context();
    }

    unsafe fn load_stage2(vtcr: u64, vttbr: u64) {
        // SAFETY: the caller upholds the backend's contract; ARMv7's VTCR is 32 bits (the
        // value `vtcr` returned, zero-extended).
        unsafe { pt_armv7::sysreg::load_stage2(vtcr as u32, vttbr) }
    }
}

// Not on an ARMv7 target (see the ARMv7 impl).
#[cfg(not(target_arch = "arm"))]
impl Arch for Armv8 {
    type Hyp = pt_armv8::HypFormat;
    type S2 = pt_armv8::S2Format;
    type Maint = pt_armv8::Maint;
    const NAME: &'static str = "armv8";
    const PA_BITS: u8 = 40;

    fn cpu_caps() -> CpuCaps {
        use pt_armv8::sysreg;
        CpuCaps::from_armv8_id_regs(sysreg::id_aa64mmfr0_el1(), sysreg::id_aa64mmfr1_el1())
            .unwrap_or(CpuCaps::CORTEX_A53)
    }

    fn vttbr(
        root: PhysAddr,
        geom: &Geometry,
        vmid: u16,
        cpu: &CpuCaps,
    ) -> Result<u64, RegisterError> {
        pt_armv8::regs::vttbr_el2_vmid(geom, root, vmid, cpu.vmid_bits)
            .map_err(RegisterError::Armv8)
    }

    fn vtcr(geom: &Geometry, cpu: &CpuCaps) -> Result<u64, RegisterError> {
        pt_armv8::regs::vtcr_el2_vmid(geom, cpu.pa_bits, cpu.vmid_bits)
            .map_err(RegisterError::Armv8)
    }

    fn flush_vm_context(maint: &pt_armv8::Maint) {
        maint.flush_vm_context();
    }

    unsafe fn load_stage2(vtcr: u64, vttbr: u64) {
        // SAFETY: the caller upholds the backend's contract.
        unsafe { pt_armv8::sysreg::load_stage2(vtcr, vttbr) }
    }
}
