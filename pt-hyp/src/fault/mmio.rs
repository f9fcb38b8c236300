//! The MMIO access a guest abort hands back for emulation (`io_mem_abort`, `decode_hsr`) and
//! the completion of an emulated load (`kvm_handle_mmio_return`).

use super::decode::GuestAbort;
use pt_core::Ipa;

/// A decoded MMIO access for the caller to emulate (`io_mem_abort` / `decode_hsr`).
///
/// The value a store writes is not in here: the caller reads register [`reg`](Self::reg) of
/// the vCPU (on ARMv8 register 31 is XZR, the value zero) and passes it through
/// [`store_value`](Self::store_value). A load's result goes back through
/// [`load_result`](Self::load_result). Either way the caller then skips the instruction
/// (`insn_len` bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// The IPA accessed.
    pub ipa: Ipa,
    /// Bytes accessed: 1, 2, 4 or 8.
    pub size: u8,
    /// True for a store, false for a load.
    pub write: bool,
    /// The transfer register (SRT).
    pub reg: u8,
    /// The load sign-extends (SSE).
    pub sign_extend: bool,
    /// The register is 64 bits wide (SF; always false on ARMv7).
    pub sixty_four: bool,
    /// The instruction has acquire/release semantics (AR; ARMv8 only).
    pub acquire_release: bool,
    /// Length of the trapped instruction in bytes (4, or 2 for Thumb), to skip it.
    pub insn_len: u8,
}

impl MmioAccess {
    pub(crate) fn from_abort(a: &GuestAbort) -> Self {
        Self {
            ipa: a.ipa,
            size: a.access_size(),
            write: a.wnr,
            reg: a.srt,
            sign_extend: a.sse,
            sixty_four: a.sf,
            acquire_release: a.ar,
            insn_len: a.insn_len(),
        }
    }

    fn size_mask(&self) -> u64 {
        match self.size {
            8.. => u64::MAX,
            s => (1u64 << (u32::from(s) * 8)) - 1,
        }
    }

    /// The register value a load of `data` produces (`kvm_handle_mmio_return`): `data`
    /// truncated to the access size, sign-extended when SSE is set and the access is narrower
    /// than 64 bits, then truncated to 32 bits unless SF says the register is 64 bits wide.
    ///
    /// Total for every `size` a caller can put in: 0 bytes load 0 (nothing to extend), sizes
    /// of 8 bytes and more load all of `data`.
    pub fn load_result(&self, data: u64) -> u64 {
        let mut v = data & self.size_mask();
        if self.sign_extend && (1..8).contains(&self.size) {
            let m = 1u64 << (u32::from(self.size) * 8 - 1);
            v = (v ^ m).wrapping_sub(m);
        }
        if !self.sixty_four {
            v &= 0xffff_ffff;
        }
        v
    }

    /// The bytes a store of register value `reg_value` writes, as a value of `size` bytes
    /// (`io_mem_abort`'s `vcpu_data_guest_to_host`, little-endian): 0 for a size of 0, all
    /// of `reg_value` for 8 and more.
    pub fn store_value(&self, reg_value: u64) -> u64 {
        reg_value & self.size_mask()
    }
}
