//! Map, translate, unmap and free through both ARMv7 formats with pt-core's walker and
//! operations, on the host arena (whose checker enforces break-before-make on drop).

use crate::maint::mnemonic as m;
use crate::{regs, HypFormat, Maint, S2Format};
use pt_core::ops::{self, MapRequest, PartialBlock};
use pt_core::testkit::{log, Arena};
use pt_core::trace::Record;
use pt_core::{
    Geometry, Limits, MemType, PageAllocator, Perms, PhysAddr, Stage1Attrs, Stage2Attrs, TlbBatch,
    TlbOp, TlbScope, VirtAddr, Walker,
};

extern crate std;
use std::vec::Vec;

fn insns() -> Vec<&'static str> {
    log::records()
        .into_iter()
        .filter_map(|r| match r {
            Record::Insn { mnemonic, .. } => Some(mnemonic),
            _ => None,
        })
        .collect()
}

#[test]
fn stage2_40_bit_map_translate_unmap_free() {
    let arena = Arena::standard();
    let geom = Geometry::new(Limits::ARMV7_STAGE2, 40).unwrap();
    let root = arena.alloc_contiguous_zeroed(geom.root_pages()).unwrap();
    let vttbr = regs::vttbr(root, &geom, 3).unwrap();
    let w: Walker<'_, S2Format, Arena> = unsafe { Walker::new(geom, root, &arena) };

    // 4 MiB + 8 KiB at IPA 0x80_4000_0000 (above 4 GiB: only a 40-bit IPA reaches it):
    // two 2 MiB blocks and two pages.
    let req = MapRequest {
        ia: 0x80_4000_0000,
        size: (4 << 20) + 0x2000,
        oa: PhysAddr(0x1_2000_0000),
        attrs: Stage2Attrs::ram(Perms::RW),
        leaf_level: 2,
        oa_bits: 40,
    };
    ops::map(&w, &req, &Maint).unwrap();

    let t = ops::translate(&w, 0x80_4020_1234).unwrap();
    assert_eq!(
        (t.level, t.oa, t.attrs),
        (2, PhysAddr(0x1_2020_1234), req.attrs)
    );
    // XN | AF | SH | S2AP RW | MemAttr WB | block | OA
    let block = (1 << 54) | (1 << 10) | (0b11 << 8) | (0b11 << 6) | (0b1111 << 2) | 0b01;
    assert_eq!(t.desc, block | 0x1_2020_0000);
    let t = ops::translate(&w, 0x80_4040_1000).unwrap();
    assert_eq!((t.level, t.oa), (3, PhysAddr(0x1_2040_1000)));
    assert_eq!(t.desc, (block | 0b10) | 0x1_2040_1000);
    assert_eq!(ops::translate(&w, 0x80_4040_2000), None);

    log::clear();
    let mut tlb = TlbBatch::new(&Maint, TlbScope::Stage2 { vttbr });
    ops::unmap(&w, req.ia, req.size, PartialBlock::Refuse, &mut tlb).unwrap();
    tlb.sync();
    assert_eq!(ops::translate(&w, 0x80_4020_1234), None);
    // ARMv7: no invalidation by IPA, one whole-VMID flush with the VM's VTTBR.
    assert!(log::tlb_ops()
        .iter()
        .all(|op| *op == TlbOp::S2Vmid { vttbr }));
    assert!(!log::tlb_ops().is_empty());
    let seq = insns();
    let flush = [
        m::MRRC_VTTBR,
        m::MCRR_VTTBR,
        m::ISB,
        m::TLBIALLIS,
        m::MCRR_VTTBR,
        m::ISB,
    ];
    assert!(seq.windows(flush.len()).any(|win| win == flush), "{seq:?}");
    assert_eq!(seq.first(), Some(&m::DSB_ISHST));

    let mut tlb = TlbBatch::new(&Maint, TlbScope::Stage2 { vttbr });
    ops::free_tree(&w, &mut tlb);
    assert_eq!(arena.live_pages(), 0);
}

#[test]
fn hyp_32_bit_map_translate_unmap_free() {
    let arena = Arena::standard();
    let geom = Geometry::new(Limits::ARMV7_STAGE1, 32).unwrap();
    let root = arena.alloc_zeroed().unwrap();
    assert_eq!(regs::httbr(root), Ok(root.0));
    let w: Walker<'_, HypFormat, Arena> = unsafe { Walker::new(geom, root, &arena) };

    let req = MapRequest {
        ia: 0xc000_0000,
        size: 0x3000,
        oa: PhysAddr(0x8010_0000),
        attrs: Stage1Attrs::normal(Perms::RX),
        leaf_level: 3,
        oa_bits: 40,
    };
    ops::map(&w, &req, &Maint).unwrap();
    let dev = MapRequest {
        ia: 0xf000_0000,
        size: 0x1000,
        oa: PhysAddr(0x0900_0000),
        attrs: Stage1Attrs::device(),
        leaf_level: 3,
        oa_bits: 40,
    };
    ops::map(&w, &dev, &Maint).unwrap();

    let t = ops::translate(&w, 0xc000_2010).unwrap();
    assert_eq!(
        (t.level, t.oa, t.attrs),
        (3, PhysAddr(0x8010_2010), req.attrs)
    );
    // AF | SH | AP[2] RO | AP[1] | AttrIndx 0 | page | OA
    assert_eq!(
        t.desc,
        (1 << 10) | (0b11 << 8) | (1 << 7) | (1 << 6) | 0b11 | 0x8010_2000
    );
    let t = ops::translate(&w, 0xf000_0000).unwrap();
    assert_eq!(t.attrs.mem, MemType::DeviceNGnRE);
    assert_eq!(
        t.desc,
        (1 << 54) | (1 << 10) | (0b11 << 8) | (1 << 6) | (2 << 2) | 0b11 | 0x0900_0000
    );

    log::clear();
    let mut tlb = TlbBatch::new(&Maint, TlbScope::Hyp);
    ops::unmap(&w, req.ia, req.size, PartialBlock::Refuse, &mut tlb).unwrap();
    tlb.sync();
    assert_eq!(ops::translate(&w, 0xc000_0000), None);
    assert!(ops::translate(&w, 0xf000_0000).is_some());
    // HYP mode can invalidate by VA: one TLBIMVAHIS per page.
    for va in [0xc000_0000u64, 0xc000_1000, 0xc000_2000] {
        assert!(log::tlb_ops().contains(&TlbOp::HypVa { va: VirtAddr(va) }));
        assert!(log::records().contains(&Record::Insn {
            mnemonic: m::TLBIMVAHIS,
            operand: va
        }));
    }

    let mut tlb = TlbBatch::new(&Maint, TlbScope::Hyp);
    ops::free_tree(&w, &mut tlb);
    assert_eq!(arena.live_pages(), 0);
}
