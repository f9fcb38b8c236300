//! Decoding the syndrome of a stage-2 abort: HSR / HDFAR / HIFAR / HPFAR on ARMv7,
//! ESR_EL2 / FAR_EL2 / HPFAR_EL2 on ARMv8.
//!
//! Both architectures use the same exception classes for guest aborts and the same
//! long-descriptor fault status codes; they differ in the width of SRT, in the fields only
//! ARMv8 has (SF, AR, FnV), in which register holds the faulting VA and in the width of HPFAR.

use crate::arch::Arch;
use pt_core::Ipa;

/// Exception class of an instruction abort from the guest (lower EL / non-Hyp mode): KVM's
/// `ESR_ELx_EC_IABT_LOW` / `HSR_EC_IABT`.
pub const EC_IABT_LOW: u8 = 0x20;
/// Exception class of a data abort from the guest (lower EL / non-Hyp mode): KVM's
/// `ESR_ELx_EC_DABT_LOW` / `HSR_EC_DABT`.
pub const EC_DABT_LOW: u8 = 0x24;

/// Why a syndrome is not a guest abort this module can decode
/// (`kvm_handle_guest_abort` is only called for the two abort classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The exception class is neither a data abort (0x24) nor an instruction abort (0x20)
    /// taken from the guest (aborts taken from Hyp/EL2 itself, 0x21/0x25, land here too).
    NotGuestAbort {
        /// The exception class found, `syndrome[31:26]`.
        ec: u8,
    },
}

/// Data or instruction abort (`kvm_vcpu_trap_is_iabt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortKind {
    /// Data abort (EC 0x24).
    Data,
    /// Instruction abort / prefetch abort (EC 0x20).
    Instruction,
}

/// The fault status code (DFSC / IFSC, long-descriptor and AArch64 encoding) decoded
/// (`kvm_vcpu_trap_get_fault_type` and `kvm_vcpu_trap_get_fault_level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultStatus {
    /// Address size fault at `level` (`0b0000LL`).
    AddressSize {
        /// Level of the walk.
        level: u8,
    },
    /// Translation fault at `level` (`0b0001LL`): the entry at that level is invalid.
    Translation {
        /// Level of the walk.
        level: u8,
    },
    /// Access flag fault at `level` (`0b0010LL`).
    AccessFlag {
        /// Level of the walk.
        level: u8,
    },
    /// Permission fault at `level` (`0b0011LL`).
    Permission {
        /// Level of the walk.
        level: u8,
    },
    /// Synchronous external abort, not on a table walk (`0b010000`).
    SyncExternal,
    /// Synchronous external abort on a table walk at `level` (`0b0101LL`).
    SyncExternalOnWalk {
        /// Level of the walk.
        level: u8,
    },
    /// Synchronous parity or ECC error, not on a table walk (`0b011000`).
    Parity,
    /// Synchronous parity or ECC error on a table walk at `level` (`0b0111LL`).
    ParityOnWalk {
        /// Level of the walk.
        level: u8,
    },
    /// Alignment fault (`0b100001`).
    Alignment,
    /// TLB conflict abort (`0b110000`).
    TlbConflict,
    /// Any other code (debug, lockdown, unsupported atomic update, domain, reserved).
    Other(u8),
}

impl FaultStatus {
    /// Decodes a 6-bit DFSC / IFSC.
    pub const fn from_fsc(fsc: u8) -> Self {
        let level = fsc & 0b11;
        match fsc & 0b11_1111 {
            0b00_0000..=0b00_0011 => FaultStatus::AddressSize { level },
            0b00_0100..=0b00_0111 => FaultStatus::Translation { level },
            0b00_1000..=0b00_1011 => FaultStatus::AccessFlag { level },
            0b00_1100..=0b00_1111 => FaultStatus::Permission { level },
            0b01_0000 => FaultStatus::SyncExternal,
            0b01_0100..=0b01_0111 => FaultStatus::SyncExternalOnWalk { level },
            0b01_1000 => FaultStatus::Parity,
            0b01_1100..=0b01_1111 => FaultStatus::ParityOnWalk { level },
            0b10_0001 => FaultStatus::Alignment,
            0b11_0000 => FaultStatus::TlbConflict,
            other => FaultStatus::Other(other),
        }
    }

    /// True for the external aborts and parity/ECC errors, on a walk or not
    /// (`kvm_vcpu_dabt_isextabt`).
    pub const fn is_external(self) -> bool {
        matches!(
            self,
            FaultStatus::SyncExternal
                | FaultStatus::SyncExternalOnWalk { .. }
                | FaultStatus::Parity
                | FaultStatus::ParityOnWalk { .. }
        )
    }
}

/// A decoded guest abort: the syndrome's fields, the faulting IPA and the faulting VA.
///
/// Fields that an instruction abort does not have (ISV, SAS, SSE, SRT, SF, AR, WnR, CM) are
/// zero / false for one; fields ARMv7 does not have (SF, AR, FnV) are false there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestAbort {
    /// Data or instruction abort.
    pub kind: AbortKind,
    /// IL: the trapped instruction is 32 bits long (else a 16-bit Thumb instruction).
    pub il32: bool,
    /// ISV: SAS, SSE, SRT, SF and AR are valid (`kvm_vcpu_dabt_isvalid`).
    pub isv: bool,
    /// SAS: access size is `1 << sas` bytes (`kvm_vcpu_dabt_get_as`).
    pub sas: u8,
    /// SSE: the load sign-extends (`kvm_vcpu_dabt_issext`).
    pub sse: bool,
    /// SRT: the transfer register (`kvm_vcpu_dabt_get_rd`); 0-30 (31 = XZR) on ARMv8, 0-15 on
    /// ARMv7.
    pub srt: u8,
    /// SF: the register is 64 bits wide (`kvm_vcpu_dabt_issf`). ARMv8 only.
    pub sf: bool,
    /// AR: acquire/release semantics. ARMv8 only.
    pub ar: bool,
    /// FnV: the FAR is not valid. ARMv8 only.
    pub fnv: bool,
    /// EA: external abort type (implementation defined).
    pub ea: bool,
    /// CM: the fault came from a cache maintenance or address translation instruction
    /// (`kvm_vcpu_dabt_is_cm`).
    pub cm: bool,
    /// S1PTW: the fault happened on the stage-2 translation of a stage-1 table walk
    /// (`kvm_vcpu_dabt_iss1tw`).
    pub s1ptw: bool,
    /// WnR: the access was a write (`kvm_vcpu_dabt_iswrite`).
    pub wnr: bool,
    /// Raw DFSC / IFSC.
    pub fsc: u8,
    /// The decoded fault status.
    pub status: FaultStatus,
    /// The faulting IPA: the page from HPFAR, the offset within the page from the FAR
    /// (`kvm_vcpu_get_fault_ipa` | `kvm_vcpu_get_hfar & 0xfff`). Meaningful only when
    /// [`ipa_valid`](Self::ipa_valid) is set.
    pub ipa: Ipa,
    /// Whether [`ipa`](Self::ipa) holds the faulting IPA. HPFAR is written only for
    /// translation, access-flag and address-size faults at stage 2 and for faults on the
    /// stage-2 translation of a stage-1 walk (S1PTW); for a stage-2 permission fault of the
    /// access itself it is UNKNOWN (ARM ARM: HPFAR_EL2; DDI 0406C B4.1.84 HPFAR), and decoding
    /// leaves this false. [`FaultArch::resolve_ipa`] then computes the IPA from FAR with an
    /// address translation through the guest's stage 1 (KVM's `__translate_far_to_hpfar`,
    /// `__populate_fault_info`); [`Stage2::handle_abort`](crate::Stage2::handle_abort) does it
    /// itself. A caller that resolved the IPA otherwise sets both fields.
    pub ipa_valid: bool,
    /// The faulting guest virtual address (FAR_EL2; HDFAR or HIFAR on ARMv7).
    pub far: u64,
    /// The guest runs with its stage-1 MMU and data cache on (SCTLR.M and SCTLR.C set,
    /// `vcpu_has_cache_enabled`); when not, new mappings are cleaned from the data cache.
    /// Decoding sets it false (always clean, as KVM does since 4.16); a caller that knows the
    /// guest's SCTLR sets it with [`with_guest_sctlr`](Self::with_guest_sctlr).
    pub guest_caches_on: bool,
}

impl GuestAbort {
    /// Whether the fault counts as a write (`kvm_is_write_fault`), S1PTW checked before the
    /// abort kind: a fault on the stage-2 translation of a stage-1 walk is a write exactly
    /// when it is a permission fault (the walker may update the guest's descriptors), for an
    /// instruction abort too; otherwise an instruction fetch never is, and a data abort is
    /// when WnR says so (a cache maintenance instruction reports WnR set).
    pub const fn is_write(&self) -> bool {
        if self.s1ptw {
            return matches!(self.status, FaultStatus::Permission { .. });
        }
        match self.kind {
            AbortKind::Instruction => false,
            AbortKind::Data => self.wnr,
        }
    }

    /// Whether the fault is an instruction fetch by the guest (`kvm_vcpu_trap_is_exec_fault`):
    /// an instruction abort that is not on a stage-1 walk (the walk is a data access).
    pub const fn is_exec(&self) -> bool {
        matches!(self.kind, AbortKind::Instruction) && !self.s1ptw
    }

    /// Whether HPFAR holds the IPA for this fault: everything but a stage-2 permission fault
    /// of the access itself (see [`ipa_valid`](Self::ipa_valid)).
    pub const fn hpfar_valid(&self) -> bool {
        self.s1ptw || !matches!(self.status, FaultStatus::Permission { .. })
    }

    /// Access size in bytes (1, 2, 4 or 8), meaningful when `isv` is set. SAS is a 2-bit
    /// field: only the two low bits of [`sas`](Self::sas) count (the decoders never set
    /// more), so every value gives one of the four sizes.
    pub const fn access_size(&self) -> u8 {
        1 << (self.sas & 0b11)
    }

    /// This abort with [`guest_caches_on`](Self::guest_caches_on) taken from the guest's
    /// SCTLR (SCTLR_EL1 on ARMv8): M (bit 0) and C (bit 2) both set, the same bits on both
    /// architectures (`vcpu_has_cache_enabled`).
    pub const fn with_guest_sctlr(self, sctlr: u64) -> Self {
        GuestAbort {
            guest_caches_on: sctlr & 0b101 == 0b101,
            ..self
        }
    }

    /// Length of the trapped instruction in bytes (4, or 2 for a 16-bit Thumb instruction):
    /// what to add to the PC to skip it (`kvm_skip_instr`).
    pub const fn insn_len(&self) -> u8 {
        if self.il32 {
            4
        } else {
            2
        }
    }
}

/// The registers an architecture reports a guest abort in, and how it decodes them.
/// Implemented for [`Armv7`](crate::Armv7) and [`Armv8`](crate::Armv8).
pub trait FaultArch: Arch {
    /// The raw register values, as read by the hypervisor's exception vector.
    type Regs: Copy + core::fmt::Debug;

    /// Decodes them (`kvm_vcpu_trap_get_class`, `kvm_vcpu_get_fault_ipa` and the
    /// `kvm_vcpu_dabt_*` accessors). The IPA comes from HPFAR, and is marked valid only where
    /// the architecture writes HPFAR ([`GuestAbort::ipa_valid`]).
    fn decode_abort(regs: &Self::Regs) -> Result<GuestAbort, DecodeError>;

    /// The IPA page (bits `[11:0]` clear) that the guest's current stage 1 translates `far`
    /// to, by an address translation instruction at EL2/HYP as an EL1/PL1 read (`AT S1E1R`
    /// on ARMv8, `ATS1CPR` on ARMv7), the guest's PAR saved and restored; `None` when the
    /// walk fails. On the host the instructions are recorded and the PAR value is what a test
    /// queued (`pt_core::testkit::log::queue_par`).
    fn translate_far(far: u64) -> Option<u64>;

    /// `a` with its IPA resolved: unchanged when [`GuestAbort::ipa_valid`], else with the IPA
    /// from [`translate_far`](Self::translate_far) of FAR (KVM's `__get_fault_info`). `None`
    /// when that fails (or FAR is not valid, FnV): the caller resumes the guest.
    fn resolve_ipa(a: &GuestAbort) -> Option<GuestAbort> {
        if a.ipa_valid {
            return Some(*a);
        }
        if a.fnv {
            return None;
        }
        let page = Self::translate_far(a.far)?;
        Some(GuestAbort {
            ipa: Ipa(page | (a.far & 0xfff)),
            ipa_valid: true,
            ..*a
        })
    }
}

/// The ARMv7 registers of a guest abort taken to HYP mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Armv7AbortRegs {
    /// HSR, the Hyp Syndrome Register.
    pub hsr: u32,
    /// HDFAR, the faulting VA of a data abort.
    pub hdfar: u32,
    /// HIFAR, the faulting VA of a prefetch abort.
    pub hifar: u32,
    /// HPFAR: `IPA[39:12]` in bits `[31:4]`.
    pub hpfar: u32,
}

/// The ARMv8 registers of a guest abort taken to EL2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Armv8AbortRegs {
    /// ESR_EL2, the exception syndrome.
    pub esr: u64,
    /// FAR_EL2, the faulting VA.
    pub far: u64,
    /// HPFAR_EL2: FIPA, `IPA[51:12]` in bits `[43:4]` (`IPA[47:12]` in `[39:4]` without
    /// FEAT_LPA).
    pub hpfar: u64,
}

// Not on an ARMv8 target: there the ARMv7 backend's instructions would not exist (point 7 of
// issue 18: the wrong backend is a compile error, not a silent no-op).
#[cfg(not(target_arch = "aarch64"))]
impl FaultArch for crate::arch::Armv7 {
    type Regs = Armv7AbortRegs;

    fn decode_abort(r: &Armv7AbortRegs) -> Result<GuestAbort, DecodeError> {
        decode_armv7(r.hsr, r.hdfar, r.hifar, r.hpfar)
    }

    /// `ATS1CPR`; with the 64-bit (LPAE) PAR, F is bit 0 and `PA[39:12]` bits `[39:12]`
    /// (DDI 0406C B4.1.113 PAR). A FAR above 32 bits cannot be translated.
    fn translate_far(far: u64) -> Option<u64> {
        let va = u32::try_from(far).ok()?;
        let par = pt_armv7::Maint.translate_guest_read(va);
        (par & 1 == 0).then_some(par & 0x00ff_ffff_f000)
    }
}

// Not on an ARMv7 target (see the ARMv7 impl).
#[cfg(not(target_arch = "arm"))]
impl FaultArch for crate::arch::Armv8 {
    type Regs = Armv8AbortRegs;

    fn decode_abort(r: &Armv8AbortRegs) -> Result<GuestAbort, DecodeError> {
        decode_armv8(r.esr, r.far, r.hpfar)
    }

    /// `AT S1E1R`; `PAR_EL1.F` is bit 0, and on success `PA[51:12]` is in bits `[51:12]`
    /// (`PA[47:12]` without FEAT_LPA; ARM ARM D19 PAR_EL1).
    fn translate_far(far: u64) -> Option<u64> {
        let par = pt_armv8::Maint.translate_guest_read(far);
        (par & 1 == 0).then_some(par & 0x000f_ffff_ffff_f000)
    }
}

const fn bit(v: u64, n: u32) -> bool {
    (v >> n) & 1 != 0
}

/// Fields at the same place on both architectures; `srt_mask` and the ARMv8-only fields are
/// applied by the callers.
fn decode_common(syndrome: u64, far: u64, fipa_page: u64) -> Result<GuestAbort, DecodeError> {
    let ec = ((syndrome >> 26) & 0x3f) as u8;
    let kind = match ec {
        EC_DABT_LOW => AbortKind::Data,
        EC_IABT_LOW => AbortKind::Instruction,
        _ => return Err(DecodeError::NotGuestAbort { ec }),
    };
    let data = kind == AbortKind::Data;
    let fsc = (syndrome & 0x3f) as u8;
    Ok(GuestAbort {
        kind,
        il32: bit(syndrome, 25),
        isv: data && bit(syndrome, 24),
        sas: if data {
            ((syndrome >> 22) & 3) as u8
        } else {
            0
        },
        sse: data && bit(syndrome, 21),
        srt: 0,
        sf: false,
        ar: false,
        fnv: false,
        ea: bit(syndrome, 9),
        cm: data && bit(syndrome, 8),
        s1ptw: bit(syndrome, 7),
        wnr: data && bit(syndrome, 6),
        fsc,
        status: FaultStatus::from_fsc(fsc),
        ipa: Ipa(fipa_page | (far & 0xfff)),
        ipa_valid: false,
        far,
        guest_caches_on: false,
    })
}

/// Decodes an ARMv7 guest abort: HSR (EC `[31:26]`, IL `[25]`, ISV `[24]`, SAS `[23:22]`,
/// SSE `[21]`, SRT `[19:16]`, EA `[9]`, CM `[8]`, S1PTW `[7]`, WnR `[6]`, DFSC/IFSC `[5:0]`),
/// the faulting VA from HDFAR (data) or HIFAR (prefetch), and the IPA from HPFAR `[31:4]` =
/// `IPA[39:12]` (`kvm_handle_guest_abort`'s decode on 32-bit ARM). `guest_caches_on` is
/// false.
pub fn decode_armv7(
    hsr: u32,
    hdfar: u32,
    hifar: u32,
    hpfar: u32,
) -> Result<GuestAbort, DecodeError> {
    let s = u64::from(hsr);
    let ec = ((s >> 26) & 0x3f) as u8;
    let far = if ec == EC_IABT_LOW { hifar } else { hdfar };
    let page = (u64::from(hpfar) & !0xf) << 8;
    let mut a = decode_common(s, u64::from(far), page)?;
    if a.kind == AbortKind::Data {
        a.srt = ((s >> 16) & 0xf) as u8;
    }
    a.ipa_valid = a.hpfar_valid();
    Ok(a)
}

/// Decodes an ARMv8 guest abort: ESR_EL2 (EC `[31:26]`, IL `[25]`, ISV `[24]`, SAS `[23:22]`,
/// SSE `[21]`, SRT `[20:16]`, SF `[15]`, AR `[14]`, FnV `[10]`, EA `[9]`, CM `[8]`,
/// S1PTW `[7]`, WnR `[6]`, DFSC/IFSC `[5:0]`), the faulting VA from FAR_EL2, and the IPA from
/// HPFAR_EL2 `[43:4]` = `IPA[51:12]` (`kvm_handle_guest_abort`'s decode on arm64).
/// `guest_caches_on` is false.
pub fn decode_armv8(esr: u64, far: u64, hpfar: u64) -> Result<GuestAbort, DecodeError> {
    let page = (hpfar & 0x0000_0fff_ffff_fff0) << 8;
    let mut a = decode_common(esr & 0xffff_ffff, far, page)?;
    a.fnv = bit(esr, 10);
    if a.kind == AbortKind::Data {
        a.srt = ((esr >> 16) & 0x1f) as u8;
        a.sf = bit(esr, 15);
        a.ar = bit(esr, 14);
    }
    a.ipa_valid = a.hpfar_valid();
    Ok(a)
}
