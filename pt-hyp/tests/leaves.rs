//! The structured view of a tree (issue 18, point 6): every leaf with its input range, level,
//! output address, attributes and raw descriptor, for stage 2 and the hyp tables; the raw
//! descriptor in `S2Translation`; the largest dirty-logged slot typed and documented.

use pt_core::testkit::Arena;
use pt_hyp::hyp::{HypConfig, HypTables};
use pt_hyp::{
    Armv7, Armv8, BlockSize, Error, Ipa, Leaf, Perms, PhysAddr, SlotDesc, SlotFlags, Stage1Attrs,
    Stage2, Stage2Attrs, VirtAddr, MAX_LOGGED_SLOT,
};

const MIB: u64 = 1 << 20;

/// ARMv8 stage-2 descriptor bits (ARM ARM D8.3 "VMSAv8-64 translation table format
/// descriptors", stage 2 attributes): valid + block (0b01) or page (0b11) in `[1:0]`,
/// MemAttr `[5:2]` (0b1111 normal write-back, 0b0001 Device-nGnRE), S2AP `[7:6]` (0b11
/// read/write), SH `[9:8]` (0b11 inner shareable), AF bit 10, XN bit 54, OA from bit 12.
fn s2_desc(oa: u64, kind: u64, memattr: u64, xn: bool) -> u64 {
    oa | (xn as u64) << 54 | 1 << 10 | 0b11 << 8 | 0b11 << 6 | memattr << 2 | kind
}

fn leaves_of<A: pt_hyp::Arch>(vm: &Stage2<A, &Arena>) -> Vec<Leaf<Stage2Attrs>> {
    let mut v = Vec::new();
    vm.for_each_leaf(|l| v.push(l));
    v
}

#[test]
fn stage2_leaves_carry_range_level_output_attrs_and_descriptor() {
    let arena = Arena::standard();
    let mut vm = Stage2::<Armv8, _>::new(&arena, 40, 1).unwrap();
    vm.map_device(Ipa(0x0900_0000), PhysAddr(0x0900_0000), 0x1000, true)
        .unwrap();
    vm.map_ram(
        Ipa(0x4000_0000),
        PhysAddr(0x4800_0000),
        2 * MIB + 0x1000,
        Perms::RW,
        BlockSize::Block2M,
    )
    .unwrap();
    let got = leaves_of(&vm);
    let dev = Stage2Attrs::device(true);
    let ram = Stage2Attrs::ram(Perms::RW);
    let want = [
        Leaf {
            ia: 0x0900_0000,
            level: 3,
            oa: PhysAddr(0x0900_0000),
            size: 0x1000,
            leaf_ia: 0x0900_0000,
            attrs: dev,
            desc: s2_desc(0x0900_0000, 0b11, 0b0001, true),
        },
        Leaf {
            ia: 0x4000_0000,
            level: 2,
            oa: PhysAddr(0x4800_0000),
            size: 2 * MIB,
            leaf_ia: 0x4000_0000,
            attrs: ram,
            desc: s2_desc(0x4800_0000, 0b01, 0b1111, true),
        },
        Leaf {
            ia: 0x4020_0000,
            level: 3,
            oa: PhysAddr(0x4820_0000),
            size: 0x1000,
            leaf_ia: 0x4020_0000,
            attrs: ram,
            desc: s2_desc(0x4820_0000, 0b11, 0b1111, true),
        },
    ];
    assert_eq!(got, want);
    assert_eq!(got[2].end(), 0x4020_1000);
    // translate() carries the same raw descriptor.
    let t = vm.translate(Ipa(0x4010_0008)).unwrap();
    assert_eq!(t.desc, want[1].desc);
    assert_eq!(t.pa, PhysAddr(0x4810_0008));
    // Part of a block: cut to the range, the whole leaf's IPA and descriptor kept.
    let mut part = Vec::new();
    vm.for_each_leaf_in(Ipa(0x4010_0000), 0x3000, |l| part.push(l));
    assert_eq!(
        part,
        [Leaf {
            ia: 0x4010_0000,
            oa: PhysAddr(0x4810_0000),
            size: 0x3000,
            ..want[1]
        }]
    );
    // Past the IPA space: nothing past it, no panic.
    let mut n = 0;
    vm.for_each_leaf_in(Ipa(u64::MAX - 0xfff), u64::MAX, |_| n += 1);
    assert_eq!(n, 0);
}

/// The dump is one user of the leaf view: its totals agree with the leaves.
#[test]
fn dump_agrees_with_the_leaf_view() {
    let arena = Arena::standard();
    let mut vm = Stage2::<Armv7, _>::new(&arena, 40, 2).unwrap();
    vm.map_ram(
        Ipa(0x4000_0000),
        PhysAddr(0x4800_0000),
        4 * MIB + 0x3000,
        Perms::RW,
        BlockSize::Block2M,
    )
    .unwrap();
    let leaves = leaves_of(&vm);
    let mut text = String::new();
    let stats = vm.dump(&mut text).unwrap();
    assert_eq!(stats.leaves, leaves.len());
    assert_eq!(stats.bytes, leaves.iter().map(|l| l.size).sum::<u64>());
    assert_eq!((leaves.len(), stats.lines), (5, 2));
}

#[test]
fn hyp_tables_have_the_same_view() {
    let arena = Arena::standard();
    let config = HypConfig::new(39, 40, VirtAddr(0x7f_c000_0000), 1 << 30);
    let mut hyp = HypTables::<Armv8, _>::new(&arena, config).unwrap();
    let attrs = Stage1Attrs::normal(Perms::RW);
    hyp.map_range(VirtAddr(0x4000_0000), PhysAddr(0x8000_0000), 0x2000, attrs)
        .unwrap();
    let mut v = Vec::new();
    hyp.for_each_leaf(|l| v.push(l));
    assert_eq!(v.len(), 2);
    for (i, l) in v.iter().enumerate() {
        let va = 0x4000_0000 + i as u64 * 0x1000;
        assert_eq!((l.ia, l.size, l.level), (va, 0x1000, 3));
        assert_eq!(l.oa, PhysAddr(0x8000_0000 + i as u64 * 0x1000));
        assert_eq!(l.attrs, attrs);
        assert_eq!(Some(l.desc), hyp.translate(VirtAddr(va)).map(|t| t.desc));
        // A valid page descriptor (0b11) with the output address in [47:12].
        assert_eq!(l.desc & 0b11, 0b11);
        assert_eq!(l.desc & 0x0000_ffff_ffff_f000, l.oa.0);
    }
}

#[test]
fn largest_logged_slot_is_2_gib_and_typed() {
    assert_eq!(MAX_LOGGED_SLOT, 2 << 30);
    let arena = Arena::standard();
    let mut vm = Stage2::<Armv8, _>::new(&arena, 40, 1).unwrap();
    let slot = |ipa: u64, size: u64, log_dirty| SlotDesc {
        ipa: Ipa(ipa),
        size,
        host: PhysAddr(0x80_0000_0000 - size - ipa),
        flags: SlotFlags {
            log_dirty,
            ..SlotFlags::default()
        },
    };
    // Exactly the limit: 16 bitmap pages.
    let ok = vm.add_memslot(slot(0, MAX_LOGGED_SLOT, true)).unwrap();
    vm.remove_memslot(ok).unwrap();
    // One page more: the typed error, nothing allocated.
    let before = arena.live_pages();
    assert_eq!(
        vm.add_memslot(slot(0, MAX_LOGGED_SLOT + 0x1000, true)),
        Err(Error::SlotTooLarge {
            size: MAX_LOGGED_SLOT + 0x1000
        })
    );
    assert_eq!(arena.live_pages(), before);
    // A larger slot works without logging; enabling logging on it is the same error.
    let big = vm.add_memslot(slot(0, 4 << 30, false)).unwrap();
    assert_eq!(
        vm.enable_dirty_logging(big),
        Err(Error::SlotTooLarge { size: 4 << 30 })
    );
}
