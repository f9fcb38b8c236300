//! Address newtypes and checked address ranges.
//!
//! Every address is a `u64`, never a `usize`: a 40-bit IPA or PA must fit on the 32-bit
//! Cortex-A15 as well as on the Cortex-A53. The three newtypes keep a physical address from
//! being passed where an intermediate physical address (a guest address) is meant.

use core::fmt;

/// log2 of the translation granule (4 KiB).
pub const PAGE_SHIFT: u32 = 12;
/// The translation granule in bytes.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// Size of a level-2 block (2 MiB) with the 4 KiB granule.
pub const BLOCK_2M: u64 = 1 << 21;
/// Size of a level-1 block (1 GiB) with the 4 KiB granule.
pub const BLOCK_1G: u64 = 1 << 30;

/// Common behaviour of the address newtypes.
pub trait Address: Copy + Eq + Ord + fmt::Debug {
    /// Wraps a raw value.
    fn new(raw: u64) -> Self;
    /// The raw value.
    fn raw(self) -> u64;
    /// True when the address is a multiple of `align`. An `align` that is not a power of two
    /// (0 included) is no alignment, and nothing is aligned to it: `false`.
    fn is_aligned(self, align: u64) -> bool {
        align.is_power_of_two() && self.raw() & (align - 1) == 0
    }
    /// The address rounded down to a multiple of `align`, or `None` when `align` is not a
    /// power of two (0 included).
    fn align_down(self, align: u64) -> Option<Self> {
        align
            .is_power_of_two()
            .then(|| Self::new(self.raw() & !(align - 1)))
    }
    /// The address plus `off`, or `None` on overflow.
    fn checked_add(self, off: u64) -> Option<Self> {
        self.raw().checked_add(off).map(Self::new)
    }
}

macro_rules! address_type {
    ($(#[$m:meta])* $name:ident, $short:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl Address for $name {
            #[inline]
            fn new(raw: u64) -> Self {
                Self(raw)
            }
            #[inline]
            fn raw(self) -> u64 {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($short, "({:#x})"), self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address_type!(
    /// A physical (output) address: host memory or a device.
    PhysAddr,
    "PA"
);
address_type!(
    /// An intermediate physical address: what a guest believes is physical memory, the input of
    /// stage-2 translation.
    Ipa,
    "IPA"
);
address_type!(
    /// A virtual address of the hypervisor itself, the input of hyp-mode stage-1 translation.
    VirtAddr,
    "VA"
);

/// Why a range was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RangeError {
    /// The range holds no bytes.
    Empty,
    /// The start or the size is not a multiple of the required alignment.
    Unaligned {
        /// The offending start address or size.
        value: u64,
        /// The alignment that was required.
        align: u64,
    },
    /// `start + size` does not fit in 64 bits.
    Wraps,
    /// The alignment asked for is not a power of two (0 included).
    BadAlignment {
        /// The alignment that was asked for.
        align: u64,
    },
}

impl core::error::Error for RangeError {}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeError::Empty => f.write_str("empty range"),
            RangeError::Unaligned { value, align } => {
                write!(f, "{value:#x} is not aligned to {align:#x}")
            }
            RangeError::Wraps => f.write_str("range wraps past the end of the address space"),
            RangeError::BadAlignment { align } => {
                write!(f, "alignment {align:#x} is not a power of two")
            }
        }
    }
}

/// A non-empty, page-aligned, non-wrapping half-open range `[start, end)` of addresses.
///
/// The only way to build one is through a constructor that checks those three properties, so
/// every operation that takes a range can rely on them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrRange<A: Address> {
    start: A,
    end: A,
}

impl<A: Address> AddrRange<A> {
    /// The range `[start, start + size)`, both page aligned.
    pub fn new(start: A, size: u64) -> Result<Self, RangeError> {
        Self::with_align(start, size, PAGE_SIZE)
    }

    /// The range `[start, start + size)` with `start` and `size` multiples of `align`
    /// (a power of two; [`RangeError::BadAlignment`] otherwise).
    pub fn with_align(start: A, size: u64, align: u64) -> Result<Self, RangeError> {
        if !align.is_power_of_two() {
            return Err(RangeError::BadAlignment { align });
        }
        if size == 0 {
            return Err(RangeError::Empty);
        }
        if !start.is_aligned(align) {
            return Err(RangeError::Unaligned {
                value: start.raw(),
                align,
            });
        }
        if size & (align - 1) != 0 {
            return Err(RangeError::Unaligned { value: size, align });
        }
        let end = start.raw().checked_add(size).ok_or(RangeError::Wraps)?;
        Ok(Self {
            start,
            end: A::new(end),
        })
    }

    /// The range `[start, end)`.
    pub fn from_bounds(start: A, end: A) -> Result<Self, RangeError> {
        if end.raw() < start.raw() {
            return Err(RangeError::Wraps);
        }
        Self::new(start, end.raw() - start.raw())
    }

    /// First address of the range.
    pub fn start(&self) -> A {
        self.start
    }

    /// First address past the range.
    pub fn end(&self) -> A {
        self.end
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.end.raw() - self.start.raw()
    }

    /// Number of 4 KiB pages.
    pub fn pages(&self) -> u64 {
        self.size() >> PAGE_SHIFT
    }

    /// True when `addr` lies inside the range.
    pub fn contains(&self, addr: A) -> bool {
        self.start <= addr && addr < self.end
    }

    /// True when the two ranges share at least one byte.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.start < other.end && other.start < self.end
    }
}

impl<A: Address> fmt::Debug for AddrRange<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.start.raw(), self.end.raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_rejects_empty() {
        assert_eq!(AddrRange::new(Ipa(0x1000), 0), Err(RangeError::Empty));
    }

    #[test]
    fn range_rejects_unaligned_start_and_size() {
        assert_eq!(
            AddrRange::new(Ipa(0x1001), 0x1000),
            Err(RangeError::Unaligned {
                value: 0x1001,
                align: 0x1000
            })
        );
        assert_eq!(
            AddrRange::new(Ipa(0x1000), 0x800),
            Err(RangeError::Unaligned {
                value: 0x800,
                align: 0x1000
            })
        );
        assert_eq!(
            AddrRange::with_align(PhysAddr(0x1000), 0x20_0000, BLOCK_2M),
            Err(RangeError::Unaligned {
                value: 0x1000,
                align: BLOCK_2M
            })
        );
    }

    #[test]
    fn range_rejects_wrapping() {
        assert_eq!(
            AddrRange::new(VirtAddr(0xffff_ffff_ffff_f000), 0x2000),
            Err(RangeError::Wraps)
        );
        assert_eq!(
            AddrRange::from_bounds(Ipa(0x2000), Ipa(0x1000)),
            Err(RangeError::Wraps)
        );
    }

    #[test]
    fn range_reaching_the_last_page_is_fine() {
        let r = AddrRange::new(Ipa(0xffff_ffff_ffff_e000), 0x1000).unwrap();
        assert_eq!(r.end(), Ipa(0xffff_ffff_ffff_f000));
        assert_eq!(r.pages(), 1);
    }

    #[test]
    fn overlap_and_contains() {
        let a = AddrRange::new(Ipa(0x1000), 0x2000).unwrap();
        let b = AddrRange::new(Ipa(0x2000), 0x1000).unwrap();
        let c = AddrRange::new(Ipa(0x3000), 0x1000).unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert!(a.contains(Ipa(0x2fff)) && !a.contains(Ipa(0x3000)));
    }

    #[test]
    fn alignment_helpers() {
        assert!(PhysAddr(0x4020_0000).is_aligned(BLOCK_2M));
        assert!(!PhysAddr(0x4020_1000).is_aligned(BLOCK_2M));
        assert_eq!(
            Ipa(0x4020_1234).align_down(PAGE_SIZE),
            Some(Ipa(0x4020_1000))
        );
        assert_eq!(Ipa(u64::MAX).checked_add(1), None);
    }
}
