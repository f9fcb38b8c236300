//! The CPU's PA and VMID sizes (issue 18, point 3): ARMv8 stage 2 sized by
//! `ID_AA64MMFR0_EL1.PARange` and `ID_AA64MMFR1_EL1.VMIDBits` instead of a constant 40 bits;
//! VMID 0 stays the host's. Register values from the ARM ARM (D13.2 VTCR_EL2, VTTBR_EL2;
//! D13.1 ID_AA64MMFR0_EL1, ID_AA64MMFR1_EL1).

use pt_core::testkit::Arena;
use pt_hyp::{
    Arch, Armv7, Armv8, BlockSize, CpuCaps, Error, Ipa, Perms, PhysAddr, RegisterError, Stage2,
    Stage2Config,
};

const WIDE: CpuCaps = CpuCaps {
    pa_bits: 48,
    vmid_bits: 16,
};

/// VTCR_EL2 field by field: RES1 bit 31, VS bit 19, PS `[18:16]`, TG0 `[15:14]` = 0 (4 KiB),
/// SH0 `[13:12]` = 0b11, ORGN0 `[11:10]` = IRGN0 `[9:8]` = 0b01, SL0 `[7:6]`, T0SZ `[5:0]`.
fn vtcr(vs: u64, ps: u64, sl0: u64, ipa_bits: u64) -> u64 {
    1 << 31 | vs << 19 | ps << 16 | 0b11 << 12 | 0b01 << 10 | 0b01 << 8 | sl0 << 6 | (64 - ipa_bits)
}

#[test]
fn id_registers_decode_to_pa_and_vmid_sizes() {
    // Cortex-A53: PARange 0b0010, VMIDBits 0b0000.
    assert_eq!(
        CpuCaps::from_armv8_id_regs(0x1122, 0),
        Ok(CpuCaps::CORTEX_A53)
    );
    assert_eq!(CpuCaps::CORTEX_A53.max_vmid(), 255);
    // PARange 0b0101 (48 bits), VMIDBits 0b0010 (16 bits) in [7:4].
    assert_eq!(CpuCaps::from_armv8_id_regs(0b0101, 0b0010 << 4), Ok(WIDE));
    assert_eq!(WIDE.max_vmid(), 0xffff);
    // PARange 0b0110 (52 bits, FEAT_LPA) is capped at the descriptors' 48.
    assert_eq!(
        CpuCaps::from_armv8_id_regs(0b0110, 0).map(|c| c.pa_bits),
        Ok(48)
    );
    for (parange, bits) in [(0, 32), (1, 36), (2, 40), (3, 42), (4, 44)] {
        assert_eq!(
            CpuCaps::from_armv8_id_regs(parange, 0).map(|c| c.pa_bits),
            Ok(bits)
        );
    }
    // Reserved values are errors, never a guess.
    assert!(matches!(
        CpuCaps::from_armv8_id_regs(0b0111, 0),
        Err(RegisterError::Armv8(_))
    ));
    assert!(matches!(
        CpuCaps::from_armv8_id_regs(2, 0b0001 << 4),
        Err(RegisterError::Armv8(_))
    ));
    // The host build reads the Cortex-A53's registers; ARMv7 is fixed.
    assert_eq!(Armv8::cpu_caps(), CpuCaps::CORTEX_A53);
    assert_eq!(Armv7::cpu_caps(), CpuCaps::CORTEX_A15);
}

#[test]
fn cortex_a53_keeps_40_bits_and_8_bit_vmids() {
    let arena = Arena::standard();
    let vm = Stage2::<Armv8, _>::new(&arena, 40, 7).unwrap();
    assert_eq!(vm.cpu(), CpuCaps::CORTEX_A53);
    assert_eq!(vm.pa_bits(), 40);
    // 40-bit IPA: T0SZ 24, SL0 0b01 (level 1), PS 0b010, VS 0.
    assert_eq!(vm.vtcr(), vtcr(0, 0b010, 0b01, 40));
    assert_eq!(vm.vtcr(), 0x8002_3558);
    drop(vm);
    // A 41-bit IPA is wider than the A53's 40-bit PA: refused by VTCR (IpaExceedsPa).
    assert!(matches!(
        Stage2::<Armv8, _>::new(&arena, 41, 1),
        Err(Error::Register(RegisterError::Armv8(_)))
    ));
    // VMID 256 needs 16-bit VMIDs.
    assert!(matches!(
        Stage2::<Armv8, _>::new(&arena, 40, 256),
        Err(Error::Register(RegisterError::Armv8(_)))
    ));
    assert_eq!(arena.live_pages(), 0);
}

#[test]
fn wider_cpu_takes_41_to_48_bit_ipas() {
    let arena = Arena::standard();
    for bits in 41u8..=48 {
        let vm = Stage2::<Armv8, _>::with_config(&arena, Stage2Config::new(bits, 5, WIDE))
            .unwrap_or_else(|e| panic!("{bits}: {e}"));
        // Up to 43 bits: level 1 with 2^(bits-30) entries, 4/8/16 concatenated tables;
        // from 44 bits: level 0 (which needs PA >= 44), one table.
        let (level, pages, sl0) = if bits <= 43 {
            (1, 1usize << (bits - 39), 0b01)
        } else {
            (0, 1, 0b10)
        };
        assert_eq!(vm.geometry().start_level(), level, "{bits}");
        assert_eq!(vm.geometry().root_pages(), pages, "{bits}");
        assert_eq!(vm.vtcr(), vtcr(1, 0b101, sl0, bits.into()), "{bits}");
        assert_eq!(vm.vttbr(), 5 << 48 | vm.root().0);
    }
    // 48 bits exactly: T0SZ 16, SL0 0b10, PS 0b101, VS 1.
    let vm = Stage2::<Armv8, _>::with_config(&arena, Stage2Config::new(48, 0xabcd, WIDE)).unwrap();
    assert_eq!(vm.vtcr(), 0x800d_3590);
    // 16-bit VMID in VTTBR_EL2[63:48].
    assert_eq!(vm.vttbr(), 0xabcd << 48 | vm.root().0);
    drop(vm);
    // Output addresses up to the PA size: a page at 2^47 maps; past 2^48 does not.
    let mut vm = Stage2::<Armv8, _>::with_config(&arena, Stage2Config::new(46, 1, WIDE)).unwrap();
    vm.map_ram(
        Ipa(1 << 45),
        PhysAddr(1 << 47),
        0x1000,
        Perms::RW,
        BlockSize::Page,
    )
    .unwrap();
    assert_eq!(
        vm.translate(Ipa((1 << 45) + 8)).unwrap().pa,
        PhysAddr((1 << 47) + 8)
    );
    assert_eq!(
        vm.map_ram(
            Ipa(0),
            PhysAddr((1 << 48) - 0x1000),
            0x2000,
            Perms::RW,
            BlockSize::Page
        ),
        Err(Error::OutputTooLarge {
            end: (1 << 48) + 0x1000,
            bits: 48
        })
    );
    drop(vm);
    // A 42-bit PA CPU: PS 0b011; a 43-bit IPA exceeds it.
    let c42 = CpuCaps {
        pa_bits: 42,
        vmid_bits: 8,
    };
    let vm = Stage2::<Armv8, _>::with_config(&arena, Stage2Config::new(42, 1, c42)).unwrap();
    assert_eq!(vm.vtcr(), vtcr(0, 0b011, 0b01, 42));
    drop(vm);
    assert!(Stage2::<Armv8, _>::with_config(&arena, Stage2Config::new(43, 1, c42)).is_err());
    assert_eq!(arena.live_pages(), 0);
}

#[test]
fn vmid_0_stays_the_hosts_unless_insisted() {
    let arena = Arena::standard();
    assert_eq!(
        Stage2::<Armv8, _>::new(&arena, 40, 0).err(),
        Some(Error::HostVmid)
    );
    assert_eq!(
        Stage2::<Armv7, _>::new(&arena, 40, 0).err(),
        Some(Error::HostVmid)
    );
    assert_eq!(arena.allocation_calls(), 0);
    let cfg = Stage2Config::new(40, 0, CpuCaps::CORTEX_A53).with_vmid0();
    let vm = Stage2::<Armv8, _>::with_config(&arena, cfg).unwrap();
    assert_eq!(vm.vmid(), 0);
    assert_eq!(vm.vttbr(), vm.root().0);
}

#[test]
fn armv7_has_one_cpu_shape() {
    let arena = Arena::standard();
    for cpu in [
        WIDE,
        CpuCaps {
            pa_bits: 40,
            vmid_bits: 16,
        },
    ] {
        assert_eq!(
            Stage2::<Armv7, _>::with_config(&arena, Stage2Config::new(40, 1, cpu)).err(),
            Some(Error::Register(RegisterError::UnsupportedCpu(cpu)))
        );
    }
    assert!(
        Stage2::<Armv7, _>::with_config(&arena, Stage2Config::new(40, 1, CpuCaps::CORTEX_A15))
            .is_ok()
    );
    assert_eq!(arena.live_pages(), 0);
}
