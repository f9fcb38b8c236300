//! Both formats through pt-core's walker and operations on the test kit's arena: map,
//! translate, unmap, free; with the break-before-make checker watching (the arena panics on
//! drop if it saw a violation) and the instruction sequence `Maint` issues pinned.

use pt_armv8::regs::{vtcr_el2, vttbr_el2};
use pt_armv8::{HypFormat, Maint, S2Format};
use pt_core::ops::{self, MapRequest, PartialBlock};
use pt_core::testkit::{log, Arena};
use pt_core::trace::Record;
use pt_core::{
    Barrier, Geometry, Limits, MemType, PageAllocator, Perms, PhysAddr, Stage1Attrs, Stage2Attrs,
    TlbBatch, TlbOp, TlbScope, Walker, BLOCK_2M, PAGE_SIZE,
};

fn new_root(alloc: &Arena, geom: &Geometry) -> PhysAddr {
    alloc
        .alloc_contiguous_zeroed(geom.root_pages())
        .expect("root")
}

#[test]
fn stage2_40_bit_map_translate_unmap_free_leaves_no_page_behind() {
    let arena = Arena::standard();
    let geom = Geometry::new(Limits::ARMV8_STAGE2, 40).unwrap();
    let alloc = &arena;
    let root = new_root(alloc, &geom);
    let vttbr = vttbr_el2(&geom, root, 3).unwrap();
    assert!(vtcr_el2(&geom, 40).is_ok());
    let w = unsafe { Walker::<S2Format, _>::new(geom, root, &alloc) };

    // 4 pages + one 2 MiB block, high in the second concatenated root table.
    let ram = Stage2Attrs::ram(Perms::RWX);
    let ia = 0x80_4000_0000;
    ops::map(
        &w,
        &MapRequest {
            ia,
            size: 4 * PAGE_SIZE,
            oa: PhysAddr(0x4000_0000),
            attrs: ram,
            leaf_level: 2,
            oa_bits: 40,
        },
        &Maint,
    )
    .unwrap();
    ops::map(
        &w,
        &MapRequest {
            ia: ia + BLOCK_2M,
            size: BLOCK_2M,
            oa: PhysAddr(0x4060_0000),
            attrs: ram,
            leaf_level: 2,
            oa_bits: 40,
        },
        &Maint,
    )
    .unwrap();

    let t = ops::translate(&w, ia + 3 * PAGE_SIZE + 0x10).unwrap();
    assert_eq!((t.oa, t.level, t.attrs), (PhysAddr(0x4000_3010), 3, ram));
    // The raw page descriptor, bit by bit: AF, SH inner, S2AP RW, MemAttr WB, page.
    assert_eq!(
        t.desc,
        (1 << 10) | (0b11 << 8) | (0b11 << 6) | (0b1111 << 2) | 0b11 | 0x4000_3000
    );
    let b = ops::translate(&w, ia + BLOCK_2M + 0x1234).unwrap();
    assert_eq!((b.oa, b.level), (PhysAddr(0x4060_1234), 2));
    assert_eq!(b.desc & 0b11, 0b01, "a block");
    assert_eq!(ops::translate(&w, ia + 4 * PAGE_SIZE), None);

    // Unmapping two pages: one batch of by-IPA invalidations completed by VMALLE1IS.
    log::clear();
    let mut tlb = TlbBatch::new(&Maint, TlbScope::Stage2 { vttbr });
    ops::unmap(&w, ia, 2 * PAGE_SIZE, PartialBlock::Refuse, &mut tlb).unwrap();
    drop(tlb);
    let insns: Vec<(&str, u64)> = log::records()
        .into_iter()
        .filter_map(|r| match r {
            Record::Insn { mnemonic, operand }
                if !mnemonic.contains("vttbr") && mnemonic != "isb" =>
            {
                Some((mnemonic, operand))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        insns,
        [
            ("dsb ishst", 0),
            ("tlbi ipas2e1is", ia >> 12),
            ("tlbi ipas2e1is", (ia + PAGE_SIZE) >> 12),
            ("dsb ish", 0),
            ("tlbi vmalle1is", 0),
            ("dsb ish", 0),
        ]
    );
    assert_eq!(ops::translate(&w, ia), None);
    assert!(ops::translate(&w, ia + 2 * PAGE_SIZE).is_some());

    // Everything else goes, then the tree.
    let mut tlb = TlbBatch::new(&Maint, TlbScope::Stage2 { vttbr });
    ops::unmap(&w, ia, 2 * BLOCK_2M, PartialBlock::Refuse, &mut tlb).unwrap();
    ops::free_tree(&w, &mut tlb);
    drop(tlb);
    assert!(log::tlb_ops().contains(&TlbOp::S2Vmid { vttbr }));
    assert!(alloc.live_pages() == 0 && alloc.freed_pages() > 0);
    assert!(log::violations().is_empty(), "{:?}", log::violations());
}

#[test]
fn hyp_48_bit_map_translate_unmap_free() {
    let arena = Arena::standard();
    let geom = Geometry::new(Limits::ARMV8_STAGE1, 48).unwrap();
    let alloc = &arena;
    let root = new_root(alloc, &geom);
    let w = unsafe { Walker::<HypFormat, _>::new(geom, root, &alloc) };

    let va = 0xffff_8000_0000;
    let text = Stage1Attrs::normal(Perms::RX);
    let dev = Stage1Attrs::device();
    ops::map(
        &w,
        &MapRequest {
            ia: va,
            size: PAGE_SIZE,
            oa: PhysAddr(0x4008_0000),
            attrs: text,
            leaf_level: 3,
            oa_bits: 48,
        },
        &Maint,
    )
    .unwrap();
    ops::map(
        &w,
        &MapRequest {
            ia: va + PAGE_SIZE,
            size: PAGE_SIZE,
            oa: PhysAddr(0x0900_0000),
            attrs: dev,
            leaf_level: 3,
            oa_bits: 48,
        },
        &Maint,
    )
    .unwrap();

    let t = ops::translate(&w, va + 8).unwrap();
    assert_eq!((t.oa, t.attrs, t.level), (PhysAddr(0x4008_0008), text, 3));
    assert_eq!(
        t.desc,
        (1 << 10) | (0b11 << 8) | (0b11 << 6) | 0b11 | 0x4008_0000
    );
    let d = ops::translate(&w, va + PAGE_SIZE).unwrap();
    assert_eq!(d.attrs.mem, MemType::DeviceNGnRE);
    assert_eq!(
        d.desc,
        (1 << 54) | (1 << 10) | (0b11 << 8) | (0b01 << 6) | (2 << 2) | 0b11 | 0x0900_0000
    );

    log::clear();
    let mut tlb = TlbBatch::new(&Maint, TlbScope::Hyp);
    ops::unmap(&w, va, 2 * PAGE_SIZE, PartialBlock::Refuse, &mut tlb).unwrap();
    drop(tlb);
    let recs = log::records();
    let insns: Vec<(&str, u64)> = recs
        .iter()
        .filter_map(|r| match *r {
            Record::Insn { mnemonic, operand } => Some((mnemonic, operand)),
            _ => None,
        })
        .collect();
    assert_eq!(insns.first(), Some(&("dsb ishst", 0)));
    assert_eq!(insns.last(), Some(&("isb", 0)));
    assert!(insns.contains(&("tlbi vae2is", va >> 12)));
    assert!(log::barriers().contains(&Barrier::DsbIsh));
    assert_eq!(ops::translate(&w, va), None);

    let mut tlb = TlbBatch::new(&Maint, TlbScope::Hyp);
    ops::free_tree(&w, &mut tlb);
    drop(tlb);
    assert!(alloc.live_pages() == 0 && alloc.freed_pages() > 0);
}
