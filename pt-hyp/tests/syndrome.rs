//! The syndrome builders (issue 18, point 4), checked against the bit positions of the ARM
//! ARM (DDI 0487 D13.2.37 ESR_ELx, data- and instruction-abort ISS; D13.2.55 HPFAR_EL2) and of
//! DDI 0406C (B3.13.6 HSR, B4.1.84 HPFAR), not only against the decoders.

use pt_hyp::fault::{
    decode_armv7, decode_armv8, AbortKind, AbortSyndrome, AccessSize, FaultStatus, SyndromeError,
};
use pt_hyp::Ipa;

// Field positions, spelled out once from the ARM ARM.
const EC: u32 = 26;
const IL: u64 = 1 << 25;
const ISV: u64 = 1 << 24;
const SAS: u32 = 22;
const SSE: u64 = 1 << 21;
const SRT: u32 = 16;
const SF: u64 = 1 << 15;
const AR: u64 = 1 << 14;
const FNV: u64 = 1 << 10;
const EA: u64 = 1 << 9;
const CM: u64 = 1 << 8;
const S1PTW: u64 = 1 << 7;
const WNR: u64 = 1 << 6;

#[test]
fn data_abort_fields_sit_where_the_arm_arm_puts_them() {
    let s = AbortSyndrome::data(FaultStatus::Translation { level: 1 })
        .write()
        .access(AccessSize::Word, 3);
    let want = 0x24 << EC | IL | ISV | 0b10 << SAS | 3 << SRT | WNR | 0b00_0101;
    assert_eq!(want, 0x9383_0045);
    assert_eq!(s.esr(), Ok(want));
    assert_eq!(s.hsr(), Ok(want as u32));

    // ARMv8 only: SRT 30 in [20:16], SF, AR, FnV; a sign-extending 2-byte load, permission
    // fault at level 3 (DFSC 0b001111).
    let s = AbortSyndrome::data(FaultStatus::Permission { level: 3 })
        .access(AccessSize::Halfword, 30)
        .sign_extend()
        .sixty_four()
        .acquire_release()
        .far_not_valid();
    let want = 0x24 << EC | IL | ISV | 0b01 << SAS | SSE | 30 << SRT | SF | AR | FNV | 0b00_1111;
    assert_eq!(s.esr(), Ok(want));
    // XZR (31) is a register on ARMv8, not on ARMv7 (SRT is 4 bits there).
    let xzr = AbortSyndrome::data(FaultStatus::Translation { level: 3 })
        .access(AccessSize::Doubleword, 31);
    assert_eq!(xzr.esr().map(|e| e >> SRT & 0x1f), Ok(31));
    assert_eq!(xzr.hsr(), Err(SyndromeError::BadRegister(31)));
    // ARMv7 leaves SF, AR, FnV out (bits 15, 14, 10 do not exist in HSR's data-abort ISS).
    let v7 = AbortSyndrome::data(FaultStatus::AccessFlag { level: 2 })
        .access(AccessSize::Byte, 15)
        .sixty_four()
        .acquire_release()
        .far_not_valid()
        .thumb16();
    assert_eq!(
        v7.hsr(),
        Ok((0x24 << EC | ISV | 15 << SRT | 0b00_1010) as u32)
    );
    // Cache maintenance (CM with WnR), S1PTW, EA.
    let s = AbortSyndrome::data(FaultStatus::Translation { level: 2 })
        .cache_maintenance()
        .s1ptw()
        .external_abort_type();
    assert_eq!(
        s.esr(),
        Ok(0x24 << EC | IL | EA | CM | S1PTW | WNR | 0b00_0110)
    );
}

#[test]
fn instruction_abort_has_no_data_fields() {
    let s = AbortSyndrome::instruction(FaultStatus::Permission { level: 3 })
        .write()
        .access(AccessSize::Word, 1)
        .sign_extend();
    assert_eq!(s.esr(), Ok(0x8200_000f));
    assert_eq!(s.esr(), Ok(0x20 << EC | IL | 0b00_1111));
    let r = s.armv7(0x8000, Ipa(0x4000_8000)).unwrap();
    assert_eq!((r.hdfar, r.hifar), (0, 0x8000));
}

#[test]
fn fault_codes_are_the_architected_ones() {
    let table = [
        (FaultStatus::AddressSize { level: 0 }, 0b00_0000),
        (FaultStatus::Translation { level: 3 }, 0b00_0111),
        (FaultStatus::AccessFlag { level: 1 }, 0b00_1001),
        (FaultStatus::Permission { level: 2 }, 0b00_1110),
        (FaultStatus::SyncExternal, 0b01_0000),
        (FaultStatus::SyncExternalOnWalk { level: 1 }, 0b01_0101),
        (FaultStatus::Parity, 0b01_1000),
        (FaultStatus::ParityOnWalk { level: 3 }, 0b01_1111),
        (FaultStatus::Alignment, 0b10_0001),
        (FaultStatus::TlbConflict, 0b11_0000),
        (FaultStatus::Other(0b11_0100), 0b11_0100),
    ];
    for (status, fsc) in table {
        assert_eq!(status.fsc(), Some(fsc), "{status:?}");
        assert_eq!(FaultStatus::from_fsc(fsc), status);
    }
    assert_eq!(FaultStatus::Translation { level: 4 }.fsc(), None);
    assert_eq!(FaultStatus::Other(64).fsc(), None);
    let bad = AbortSyndrome::data(FaultStatus::Translation { level: 4 });
    assert_eq!(
        bad.esr(),
        Err(SyndromeError::BadFaultStatus(FaultStatus::Translation {
            level: 4
        }))
    );
}

#[test]
fn hpfar_and_far_per_architecture() {
    let s = AbortSyndrome::data(FaultStatus::Translation { level: 1 });
    // ARMv8 HPFAR_EL2.FIPA [39:4] = IPA[47:12].
    let r = s.armv8(0xffff_0000_1234, Ipa(0xab_cdef_1234)).unwrap();
    assert_eq!(r.hpfar, 0x0abc_def1 << 4);
    assert_eq!(r.far, 0xffff_0000_1234);
    assert_eq!(
        s.armv8(0, Ipa(1 << 48)),
        Err(SyndromeError::IpaTooWide(Ipa(1 << 48)))
    );
    // ARMv7 HPFAR [31:4] = IPA[39:12], FAR in HDFAR for a data abort, 32 bits.
    let r = s.armv7(0x8000_1234, Ipa(0xff_ffff_f000)).unwrap();
    assert_eq!(r.hpfar, 0xffff_fff0);
    assert_eq!((r.hdfar, r.hifar), (0x8000_1234, 0));
    assert_eq!(
        s.armv7(1 << 32, Ipa(0)),
        Err(SyndromeError::FarTooWide(1 << 32))
    );
    assert_eq!(
        s.armv7(0, Ipa(1 << 40)),
        Err(SyndromeError::IpaTooWide(Ipa(1 << 40)))
    );
}

/// The decoders read back every field the builders wrote, on both architectures.
#[test]
fn decoders_read_back_what_was_built() {
    let s = AbortSyndrome::data(FaultStatus::Translation { level: 2 })
        .write()
        .access(AccessSize::Doubleword, 7)
        .sign_extend()
        .sixty_four()
        .thumb16();
    let r8 = s.armv8(0x4020_0010, Ipa(0x4020_0010)).unwrap();
    let a = decode_armv8(r8.esr, r8.far, r8.hpfar).unwrap();
    assert_eq!(a.kind, AbortKind::Data);
    assert_eq!(
        (a.isv, a.sas, a.srt, a.sse, a.sf, a.wnr),
        (true, 3, 7, true, true, true)
    );
    assert_eq!((a.il32, a.insn_len()), (false, 2));
    assert_eq!(a.status, FaultStatus::Translation { level: 2 });
    assert_eq!((a.ipa, a.ipa_valid), (Ipa(0x4020_0010), true));
    let r7 = s.armv7(0x4020_0010, Ipa(0x4020_0010)).unwrap();
    let b = decode_armv7(r7.hsr, r7.hdfar, r7.hifar, r7.hpfar).unwrap();
    assert_eq!((b.srt, b.sf, b.ipa), (7, false, Ipa(0x4020_0010)));
}
