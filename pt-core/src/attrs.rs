//! Architecture-neutral meaning of a mapping: permissions and memory type.
//!
//! Backends turn these into descriptor bits. Stage 1 and stage 2 have different attribute
//! types ([`Stage1Attrs`], [`Stage2Attrs`]) and every [`Format`](crate::Format) names one of
//! them, so an attribute of one regime cannot be written into a table of the other.

use core::fmt;
use core::ops::{BitOr, BitOrAssign};

/// Access permissions of a mapping.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Perms(u8);

impl Perms {
    /// No access.
    pub const NONE: Perms = Perms(0);
    /// Readable.
    pub const R: Perms = Perms(1);
    /// Writable.
    pub const W: Perms = Perms(2);
    /// Executable.
    pub const X: Perms = Perms(4);
    /// Read + write.
    pub const RW: Perms = Perms(3);
    /// Read + execute.
    pub const RX: Perms = Perms(5);
    /// Read + write + execute.
    pub const RWX: Perms = Perms(7);

    /// True when every permission of `other` is present.
    #[inline]
    pub const fn contains(self, other: Perms) -> bool {
        self.0 & other.0 == other.0
    }
    /// Readable?
    #[inline]
    pub const fn read(self) -> bool {
        self.contains(Perms::R)
    }
    /// Writable?
    #[inline]
    pub const fn write(self) -> bool {
        self.contains(Perms::W)
    }
    /// Executable?
    #[inline]
    pub const fn exec(self) -> bool {
        self.contains(Perms::X)
    }
    /// These permissions without those of `other`.
    #[inline]
    pub const fn without(self, other: Perms) -> Perms {
        Perms(self.0 & !other.0)
    }
    /// These permissions with those of `other` added.
    #[inline]
    pub const fn with(self, other: Perms) -> Perms {
        Perms(self.0 | other.0)
    }
    /// The raw bits (R = 1, W = 2, X = 4).
    #[inline]
    pub const fn bits(self) -> u8 {
        self.0
    }
}

impl BitOr for Perms {
    type Output = Perms;
    fn bitor(self, rhs: Perms) -> Perms {
        self.with(rhs)
    }
}

impl BitOrAssign for Perms {
    fn bitor_assign(&mut self, rhs: Perms) {
        *self = self.with(rhs);
    }
}

impl fmt::Debug for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = if self.read() { 'R' } else { '-' };
        let w = if self.write() { 'W' } else { '-' };
        let x = if self.exec() { 'X' } else { '-' };
        write!(f, "{r}{w}{x}")
    }
}

/// Memory type of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemType {
    /// Normal memory, inner and outer write-back cacheable, inner shareable.
    NormalWb,
    /// Normal memory, non-cacheable.
    NormalNc,
    /// Device memory, non-gathering, non-reordering, early write acknowledgement (nGnRE).
    DeviceNGnRE,
    /// Device memory, non-gathering, non-reordering, no early write acknowledgement (nGnRnE).
    DeviceNGnRnE,
}

impl MemType {
    /// True for the device types.
    pub const fn is_device(self) -> bool {
        matches!(self, MemType::DeviceNGnRE | MemType::DeviceNGnRnE)
    }
}

/// Attributes of a hyp-mode (EL2 / HYP) stage-1 mapping.
///
/// Stage-1 hyp mappings are always readable; the access flag is always set (the hypervisor
/// takes no access-flag faults on its own tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stage1Attrs {
    /// Permissions; `R` is implied.
    pub perms: Perms,
    /// Memory type, through the MAIR/HMAIR index the backend assigns to it.
    pub mem: MemType,
}

impl Stage1Attrs {
    /// Normal write-back memory with `perms`.
    pub const fn normal(perms: Perms) -> Self {
        Self {
            perms,
            mem: MemType::NormalWb,
        }
    }
    /// Device nGnRE memory, read/write, never executable.
    pub const fn device() -> Self {
        Self {
            perms: Perms::RW,
            mem: MemType::DeviceNGnRE,
        }
    }
}

/// Attributes of a stage-2 mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stage2Attrs {
    /// Guest permissions (S2AP and XN).
    pub perms: Perms,
    /// Memory type (stage-2 MemAttr).
    pub mem: MemType,
    /// Access flag. A clear flag makes the first guest access fault (access-flag fault).
    pub accessed: bool,
    /// Software bit: the mapping was made read-only by dirty logging and may be made
    /// writable again by the fault path (which then marks the page dirty).
    pub logged: bool,
}

impl Stage2Attrs {
    /// Guest RAM with `perms`, access flag set.
    pub const fn ram(perms: Perms) -> Self {
        Self {
            perms,
            mem: MemType::NormalWb,
            accessed: true,
            logged: false,
        }
    }
    /// A device range, read/write (or read-only), never executable.
    pub const fn device(writable: bool) -> Self {
        let perms = if writable { Perms::RW } else { Perms::R };
        Self {
            perms,
            mem: MemType::DeviceNGnRE,
            accessed: true,
            logged: false,
        }
    }
}
