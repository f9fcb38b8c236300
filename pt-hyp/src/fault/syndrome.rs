//! Building the registers of a guest abort, for a port's own unit tests: an
//! [`AbortSyndrome`] packs ESR_EL2 / HSR, FAR and HPFAR from named fields instead of shifts
//! written by hand, the inverse of [`decode_armv8`](super::decode_armv8) and
//! [`decode_armv7`](super::decode_armv7).
//!
//! ```
//! use pt_hyp::fault::{AbortSyndrome, AccessSize, FaultStatus};
//! use pt_hyp::Ipa;
//!
//! // A 4-byte store from x3 that takes a level-1 translation fault at IPA 0x4000_1234.
//! let s = AbortSyndrome::data(FaultStatus::Translation { level: 1 })
//!     .write()
//!     .access(AccessSize::Word, 3);
//! let regs = s.armv8(0x4000_1234, Ipa(0x4000_1234)).unwrap();
//! assert_eq!(regs.esr, 0x9383_0045);
//! assert_eq!(regs.hpfar, 0x0040_0010); // IPA[47:12] in [39:4]
//! let hsr = s.armv7(0x4000_1234, Ipa(0x4000_1234)).unwrap().hsr;
//! assert_eq!(hsr, 0x9383_0045);
//! ```
//!
//! Bit positions: ARM ARM (DDI 0487) D13.2.37 ESR_ELx with the ISS of a data abort (EC
//! `[31:26]`, IL 25, ISV 24, SAS `[23:22]`, SSE 21, SRT `[20:16]`, SF 15, AR 14, FnV 10, EA 9,
//! CM 8, S1PTW 7, WnR 6, DFSC `[5:0]`) and of an instruction abort (IL, FnV, EA, S1PTW, IFSC),
//! HPFAR_EL2 FIPA `[39:4]` = `IPA[47:12]`; DDI 0406C B3.13.6 HSR (the same, SRT `[19:16]`,
//! no SF, AR or FnV) and B4.1.84 HPFAR (`[31:4]` = `IPA[39:12]`). The same constants as
//! KVM's `ESR_ELx_*` / `HSR_*`.

use super::decode::{
    AbortKind, Armv7AbortRegs, Armv8AbortRegs, FaultStatus, EC_DABT_LOW, EC_IABT_LOW,
};
use core::fmt;
use pt_core::Ipa;

/// The size of a data access, as SAS encodes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessSize {
    /// 1 byte (SAS `0b00`).
    Byte,
    /// 2 bytes (SAS `0b01`).
    Halfword,
    /// 4 bytes (SAS `0b10`).
    Word,
    /// 8 bytes (SAS `0b11`).
    Doubleword,
}

impl AccessSize {
    /// The SAS field value.
    pub const fn sas(self) -> u8 {
        match self {
            AccessSize::Byte => 0,
            AccessSize::Halfword => 1,
            AccessSize::Word => 2,
            AccessSize::Doubleword => 3,
        }
    }

    /// Bytes accessed.
    pub const fn bytes(self) -> u8 {
        1 << self.sas()
    }
}

/// Why an [`AbortSyndrome`] cannot be packed into an architecture's registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyndromeError {
    /// A fault level above 3, or an `Other` code above 6 bits.
    BadFaultStatus(FaultStatus),
    /// The transfer register does not fit SRT (0..=30, 31 = XZR on ARMv8; 0..=15 on ARMv7).
    BadRegister(u8),
    /// The FAR does not fit the architecture's register (32 bits on ARMv7).
    FarTooWide(u64),
    /// The IPA does not fit HPFAR (48 bits on ARMv8, 40 on ARMv7).
    IpaTooWide(Ipa),
}

impl fmt::Display for SyndromeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SyndromeError::BadFaultStatus(s) => write!(f, "fault status {s:?} has no code"),
            SyndromeError::BadRegister(r) => write!(f, "register {r} does not fit SRT"),
            SyndromeError::FarTooWide(far) => write!(f, "FAR {far:#x} too wide"),
            SyndromeError::IpaTooWide(ipa) => write!(f, "IPA {:#x} too wide for HPFAR", ipa.0),
        }
    }
}

impl core::error::Error for SyndromeError {}

impl FaultStatus {
    /// The 6-bit DFSC / IFSC of this status (long-descriptor / AArch64 encoding), the inverse
    /// of [`from_fsc`](Self::from_fsc); `None` for a level above 3 or an `Other` code above
    /// 6 bits.
    pub const fn fsc(self) -> Option<u8> {
        let (base, level) = match self {
            FaultStatus::AddressSize { level } => (0b00_0000, level),
            FaultStatus::Translation { level } => (0b00_0100, level),
            FaultStatus::AccessFlag { level } => (0b00_1000, level),
            FaultStatus::Permission { level } => (0b00_1100, level),
            FaultStatus::SyncExternal => return Some(0b01_0000),
            FaultStatus::SyncExternalOnWalk { level } => (0b01_0100, level),
            FaultStatus::Parity => return Some(0b01_1000),
            FaultStatus::ParityOnWalk { level } => (0b01_1100, level),
            FaultStatus::Alignment => return Some(0b10_0001),
            FaultStatus::TlbConflict => return Some(0b11_0000),
            FaultStatus::Other(code) if code < 64 => return Some(code),
            FaultStatus::Other(_) => return None,
        };
        if level > 3 {
            None
        } else {
            Some(base | level)
        }
    }
}

/// The fields of a guest abort's syndrome, to pack into [`Armv8AbortRegs`] or
/// [`Armv7AbortRegs`]: the inverse of [`decode_armv8`](super::decode_armv8) and
/// [`decode_armv7`](super::decode_armv7). Starts as a 32-bit instruction (IL set) with every
/// flag clear; each method sets one field.
///
/// ```
/// use pt_hyp::fault::{AbortSyndrome, AccessSize, FaultStatus};
/// use pt_hyp::Ipa;
///
/// // A 4-byte store from x3 that takes a level-1 translation fault at IPA 0x4000_1234.
/// let s = AbortSyndrome::data(FaultStatus::Translation { level: 1 })
///     .write()
///     .access(AccessSize::Word, 3);
/// let regs = s.armv8(0x4000_1234, Ipa(0x4000_1234)).unwrap();
/// assert_eq!(regs.esr, 0x9383_0045);
/// assert_eq!(regs.hpfar, 0x0040_0010); // IPA[47:12] in [39:4]
/// let hsr = s.armv7(0x4000_1234, Ipa(0x4000_1234)).unwrap().hsr;
/// assert_eq!(hsr, 0x9383_0045);
/// ```
///
/// Bit positions: ARM ARM (DDI 0487) D13.2.37 ESR_ELx with the ISS of a data abort (EC
/// `[31:26]`, IL 25, ISV 24, SAS `[23:22]`, SSE 21, SRT `[20:16]`, SF 15, AR 14, FnV 10, EA 9,
/// CM 8, S1PTW 7, WnR 6, DFSC `[5:0]`) and of an instruction abort (IL, FnV, EA, S1PTW, IFSC),
/// HPFAR_EL2 FIPA `[39:4]` = `IPA[47:12]`; DDI 0406C B3.13.6 HSR (the same, SRT `[19:16]`,
/// no SF, AR or FnV) and B4.1.84 HPFAR (`[31:4]` = `IPA[39:12]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortSyndrome {
    kind: AbortKind,
    status: FaultStatus,
    il32: bool,
    access: Option<(AccessSize, u8)>,
    sse: bool,
    sf: bool,
    ar: bool,
    fnv: bool,
    ea: bool,
    cm: bool,
    s1ptw: bool,
    wnr: bool,
}

const fn bit(set: bool, n: u32) -> u64 {
    (set as u64) << n
}

impl AbortSyndrome {
    const fn new(kind: AbortKind, status: FaultStatus) -> Self {
        Self {
            kind,
            status,
            il32: true,
            access: None,
            sse: false,
            sf: false,
            ar: false,
            fnv: false,
            ea: false,
            cm: false,
            s1ptw: false,
            wnr: false,
        }
    }

    /// A data abort from the guest (EC `0x24`) with `status` (DFSC), a read without syndrome
    /// (ISV clear) until [`access`](Self::access) says more.
    pub const fn data(status: FaultStatus) -> Self {
        Self::new(AbortKind::Data, status)
    }

    /// An instruction abort from the guest (EC `0x20`) with `status` (IFSC). The data-only
    /// fields (ISV, SAS, SSE, SRT, SF, AR, CM, WnR) are never packed for it.
    pub const fn instruction(status: FaultStatus) -> Self {
        Self::new(AbortKind::Instruction, status)
    }

    /// WnR: the access was a write.
    pub const fn write(self) -> Self {
        Self { wnr: true, ..self }
    }

    /// ISV with SAS = `size` and SRT = `reg`: the instruction syndrome is valid (what the MMIO
    /// path needs).
    pub const fn access(self, size: AccessSize, reg: u8) -> Self {
        Self {
            access: Some((size, reg)),
            ..self
        }
    }

    /// SSE: the load sign-extends.
    pub const fn sign_extend(self) -> Self {
        Self { sse: true, ..self }
    }

    /// SF: the register is 64 bits wide (ARMv8; ignored for ARMv7).
    pub const fn sixty_four(self) -> Self {
        Self { sf: true, ..self }
    }

    /// AR: acquire/release semantics (ARMv8; ignored for ARMv7).
    pub const fn acquire_release(self) -> Self {
        Self { ar: true, ..self }
    }

    /// IL clear: a 16-bit Thumb instruction.
    pub const fn thumb16(self) -> Self {
        Self {
            il32: false,
            ..self
        }
    }

    /// S1PTW: the fault is on the stage-2 translation of a stage-1 table walk.
    pub const fn s1ptw(self) -> Self {
        Self {
            s1ptw: true,
            ..self
        }
    }

    /// CM: a cache maintenance or address translation instruction (which also reports WnR
    /// set, as the architecture does for cache maintenance).
    pub const fn cache_maintenance(self) -> Self {
        Self {
            cm: true,
            wnr: true,
            ..self
        }
    }

    /// EA: the external abort type bit.
    pub const fn external_abort_type(self) -> Self {
        Self { ea: true, ..self }
    }

    /// FnV: the FAR is not valid (ARMv8; ignored for ARMv7).
    pub const fn far_not_valid(self) -> Self {
        Self { fnv: true, ..self }
    }

    /// The syndrome bits common to ESR_EL2 and HSR, with SRT at `[srt_bits + 15:16]`.
    fn common(&self, srt_max: u8) -> Result<u64, SyndromeError> {
        let fsc = match self.status.fsc() {
            Some(f) => f,
            None => return Err(SyndromeError::BadFaultStatus(self.status)),
        };
        let data = matches!(self.kind, AbortKind::Data);
        let ec = if data { EC_DABT_LOW } else { EC_IABT_LOW };
        let mut v = u64::from(ec) << 26
            | bit(self.il32, 25)
            | bit(self.ea, 9)
            | bit(self.s1ptw, 7)
            | u64::from(fsc);
        if data {
            if let Some((size, reg)) = self.access {
                if reg > srt_max {
                    return Err(SyndromeError::BadRegister(reg));
                }
                v |= 1 << 24 | u64::from(size.sas()) << 22 | u64::from(reg) << 16;
            }
            v |= bit(self.sse, 21) | bit(self.cm, 8) | bit(self.wnr, 6);
        }
        Ok(v)
    }

    /// ESR_EL2 (ARMv8): SRT 0..=31 (31 = XZR), SF, AR and FnV as set.
    pub fn esr(&self) -> Result<u64, SyndromeError> {
        let mut v = self.common(31)?;
        if matches!(self.kind, AbortKind::Data) {
            v |= bit(self.sf, 15) | bit(self.ar, 14);
        }
        Ok(v | bit(self.fnv, 10))
    }

    /// HSR (ARMv7): SRT 0..=15 in `[19:16]`; SF, AR and FnV do not exist and are left out.
    pub fn hsr(&self) -> Result<u32, SyndromeError> {
        // Bits [31:0] only: `common` sets nothing above bit 31.
        Ok(self.common(15)? as u32)
    }

    /// The ARMv8 registers: [`esr`](Self::esr), FAR_EL2 = `far`, HPFAR_EL2 with FIPA
    /// `[39:4]` = `ipa[47:12]`.
    pub fn armv8(&self, far: u64, ipa: Ipa) -> Result<Armv8AbortRegs, SyndromeError> {
        if ipa.0 >> 48 != 0 {
            return Err(SyndromeError::IpaTooWide(ipa));
        }
        Ok(Armv8AbortRegs {
            esr: self.esr()?,
            far,
            hpfar: (ipa.0 >> 12) << 4,
        })
    }

    /// The ARMv7 registers: [`hsr`](Self::hsr), `far` in HDFAR (data abort) or HIFAR
    /// (instruction abort, HDFAR then 0), HPFAR `[31:4]` = `ipa[39:12]`.
    pub fn armv7(&self, far: u64, ipa: Ipa) -> Result<Armv7AbortRegs, SyndromeError> {
        let far32 = u32::try_from(far).map_err(|_| SyndromeError::FarTooWide(far))?;
        if ipa.0 >> 40 != 0 {
            return Err(SyndromeError::IpaTooWide(ipa));
        }
        let (hdfar, hifar) = match self.kind {
            AbortKind::Data => (far32, 0),
            AbortKind::Instruction => (0, far32),
        };
        Ok(Armv7AbortRegs {
            hsr: self.hsr()?,
            hdfar,
            hifar,
            hpfar: ((ipa.0 >> 12) << 4) as u32,
        })
    }
}
