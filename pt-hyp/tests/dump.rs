//! `Stage2::dump` and `HypTables::dump`: the exact text for small trees of both
//! architectures (golden strings), so a change of format is a deliberate one.

use pt_core::testkit::Arena;
use pt_hyp::hyp::{HypConfig, HypTables};
use pt_hyp::{Arch, Armv7, Armv8, BlockSize, Ipa, Perms, PhysAddr, Stage1Attrs, Stage2, VirtAddr};

const MIB: u64 = 1 << 20;

/// A device page, a 2 MiB RAM block followed by three pages, one page write-protected by
/// dirty logging and one page aged.
fn small_vm<A: Arch>(arena: &Arena, ipa_bits: u8) -> String {
    let mut vm = Stage2::<A, _>::new(arena, ipa_bits, 3).unwrap();
    vm.map_device(Ipa(0x0900_0000), PhysAddr(0x0900_0000), 0x1000, true)
        .unwrap();
    let ram = (Ipa(0x4000_0000), PhysAddr(0x4800_0000));
    vm.map_ram(
        ram.0,
        ram.1,
        2 * MIB + 0x3000,
        Perms::RWX,
        BlockSize::Block2M,
    )
    .unwrap();
    vm.write_protect_range(Ipa(0x4020_1000), 0x1000).unwrap();
    vm.test_and_clear_age(Ipa(0x4020_2000)).unwrap();
    let mut out = String::new();
    let stats = vm.dump(&mut out).unwrap();
    assert_eq!((stats.lines, stats.leaves), (5, 5));
    assert_eq!(stats.table_pages(), arena.live_pages());
    out
}

#[test]
fn armv8_stage2_dump_of_a_small_vm() {
    let arena = Arena::standard();
    assert_eq!(
        small_vm::<Armv8>(&arena, 40),
        "\
VMID 3: VTTBR 0x0003000080000000, VTCR 0x80023558
---[ armv8-s2: 40-bit input, start level 1, root 0x80000000 (2 pages) ]---
0x0009000000-0x0009001000     4K L3 -> 0x000009000000 RW- DEV/nGnRE  AF
0x0040000000-0x0040200000     2M L2 -> 0x000048000000 RWX MEM/WB     AF
0x0040200000-0x0040201000     4K L3 -> 0x000048200000 RWX MEM/WB     AF
0x0040201000-0x0040202000     4K L3 -> 0x000048201000 R-X MEM/WB     AF logged
0x0040202000-0x0040203000     4K L3 -> 0x000048202000 RWX MEM/WB     --
---[ 5 leaves in 5 ranges, 2064K mapped ]---
---[ table pages: L1 2 (root), L2 2, L3 2; total 6 ]---
"
    );
    assert_eq!(arena.live_pages(), 0);
}

#[test]
fn armv7_stage2_dump_of_a_small_vm() {
    let arena = Arena::standard();
    assert_eq!(
        small_vm::<Armv7>(&arena, 32),
        "\
VMID 3: VTTBR 0x0003000080000000, VTCR 0x80003500
---[ armv7-s2: 32-bit input, start level 2, root 0x80000000 (4 pages) ]---
0x09000000-0x09001000     4K L3 -> 0x0009000000 RW- DEV/nGnRE  AF
0x40000000-0x40200000     2M L2 -> 0x0048000000 RWX MEM/WB     AF
0x40200000-0x40201000     4K L3 -> 0x0048200000 RWX MEM/WB     AF
0x40201000-0x40202000     4K L3 -> 0x0048201000 R-X MEM/WB     AF logged
0x40202000-0x40203000     4K L3 -> 0x0048202000 RWX MEM/WB     --
---[ 5 leaves in 5 ranges, 2064K mapped ]---
---[ table pages: L2 4 (root), L3 2; total 6 ]---
"
    );
    assert_eq!(arena.live_pages(), 0);
}

#[test]
fn hyp_dump_merges_pages_and_blocks_separately() {
    let arena = Arena::standard();
    let config = HypConfig::new(39, 40, VirtAddr(0x40_0000_0000), 1 << 30);
    let mut hyp = HypTables::<Armv8, _>::new(&arena, config).unwrap();
    let text = Stage1Attrs::normal(Perms::RX);
    hyp.map_range(VirtAddr(0x4000_0000), PhysAddr(0x4000_0000), 0x4000, text)
        .unwrap();
    let data = Stage1Attrs::normal(Perms::RW);
    hyp.map_range(
        VirtAddr(0x4000_4000),
        PhysAddr(0x4000_4000),
        4 * MIB - 0x4000,
        data,
    )
    .unwrap();
    hyp.create_io_mappings(PhysAddr(0x0900_0000), 0x1000)
        .unwrap();
    let mut out = String::new();
    hyp.dump(&mut out).unwrap();
    assert_eq!(
        out,
        "\
---[ armv8-el2: 39-bit input, start level 1, root 0x80000000 (1 page) ]---
0x0040000000-0x0040004000    16K L3 -> 0x000040000000 R-X MEM/WB
0x0040004000-0x0040200000  2032K L3 -> 0x000040004000 RW- MEM/WB
0x0040200000-0x0040400000     2M L2 -> 0x000040200000 RW- MEM/WB
0x4000000000-0x4000001000     4K L3 -> 0x000009000000 RW- DEV/nGnRE
---[ 514 leaves in 4 ranges, 4100K mapped ]---
---[ table pages: L1 1 (root), L2 2, L3 2; total 5 ]---
"
    );
    hyp.free();
    assert_eq!(arena.live_pages(), 0);
}
