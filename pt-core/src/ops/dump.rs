//! Dumping a tree as text, the way Linux's `ptdump` prints the kernel's tables
//! (`arch/arm64/mm/ptdump.c`): one line per range of leaves that differ only in where they
//! are, and the number of table pages per level.
//!
//! Adjacent leaves merge into one line when they have the same level and attributes and map
//! contiguous output addresses. A line reads
//!
//! ```text
//! 0x0040000000-0x0040400000     4M L2 -> 0x000048000000 RWX MEM/WB     AF
//! ```
//!
//! input range, size, level of its leaves, first output address, then the attributes as the
//! regime's [`DescribeAttrs`] writes them. A header names the format and geometry, and two
//! footer lines count leaves, bytes and table pages.
//!
//! The dump is a read-only [`Visitor`] on the one walker: no write, no TLB or cache duty.

use super::leaves::Leaf;
use crate::attrs::{MemType, Stage1Attrs, Stage2Attrs};
use crate::format::Format;
use crate::geometry::{entry_size, LAST_LEVEL};
use crate::machine::PageAllocator;
use crate::table::Entries;
use crate::walk::{LeafFlow, TableFlow, Visitor, Walker};
use core::fmt;

/// How a dump prints the attributes of a regime (implemented for [`Stage1Attrs`] and
/// [`Stage2Attrs`]; with the `testkit` feature also for the fake format's attributes).
pub trait DescribeAttrs {
    /// Writes the attributes in a few short, fixed-width columns, without a trailing newline.
    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result;
}

/// Short name of a memory type, padded to one width: `MEM/WB`, `MEM/NC`, `DEV/nGnRE`,
/// `DEV/nGnRnE`.
fn mem_name(mem: MemType) -> &'static str {
    match mem {
        MemType::NormalWb => "MEM/WB    ",
        MemType::NormalNc => "MEM/NC    ",
        MemType::DeviceNGnRE => "DEV/nGnRE ",
        MemType::DeviceNGnRnE => "DEV/nGnRnE",
    }
}

impl DescribeAttrs for Stage2Attrs {
    /// `RWX MEM/WB     AF logged`: permissions, memory type, the access flag (`AF`, or `--`
    /// while clear) and, when dirty logging write-protected the leaf, `logged`.
    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        let af = if self.accessed { "AF" } else { "--" };
        write!(out, "{:?} {} {af}", self.perms, mem_name(self.mem))?;
        if self.logged {
            out.write_str(" logged")?;
        }
        Ok(())
    }
}

impl DescribeAttrs for Stage1Attrs {
    /// `RW- MEM/WB`: permissions and memory type (hyp leaves always have the access flag).
    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        write!(out, "{:?} {}", self.perms, mem_name(self.mem).trim_end())
    }
}

#[cfg(feature = "testkit")]
impl DescribeAttrs for crate::testkit::fake::FakeAttrs {
    /// `attrs=0x2a`.
    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        write!(out, "attrs={:#04x}", self.0)
    }
}

/// What a dump saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DumpStats {
    /// Range lines written.
    pub lines: usize,
    /// Leaf entries (pages and blocks).
    pub leaves: usize,
    /// Bytes mapped.
    pub bytes: u64,
    /// Table pages per level, indexed by level; the root's pages (several for a concatenated
    /// root) count at the start level.
    pub tables: [usize; 4],
}

impl DumpStats {
    /// Table pages of the whole tree, root included.
    pub fn table_pages(&self) -> usize {
        self.tables.iter().sum()
    }
}

/// A size as Linux's ptdump prints it: the largest unit of K, M, G, T that divides it
/// (sizes here are multiples of 4 KiB; zero prints as `0`).
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return write!(f, "{:>w$}", 0, w = f.width().unwrap_or(0));
        }
        let mut v = self.0 >> 10;
        let mut units = "KMGT".chars();
        let mut unit = units.next().unwrap_or('K');
        while v != 0 && v % 1024 == 0 {
            match units.next() {
                Some(u) => {
                    v >>= 10;
                    unit = u;
                }
                None => break,
            }
        }
        // Pad the number so that the whole column is `width` wide.
        let width = f.width().unwrap_or(0).saturating_sub(1);
        write!(f, "{v:>width$}{unit}")
    }
}

/// Hex digits needed for addresses below `1 << bits`.
fn digits(bits: u8) -> usize {
    usize::from(bits).div_ceil(4)
}

/// The leaves merged so far into one line.
struct Run<A> {
    ia: u64,
    end: u64,
    oa: u64,
    level: u8,
    attrs: A,
}

struct Dump<'o, A> {
    out: &'o mut dyn fmt::Write,
    describe: &'o mut dyn FnMut(&A, &mut dyn fmt::Write) -> fmt::Result,
    run: Option<Run<A>>,
    stats: DumpStats,
    ia_digits: usize,
    oa_digits: usize,
}

impl<A: Copy + Eq> Dump<'_, A> {
    fn leaf(&mut self, ia: u64, oa: u64, level: u8, attrs: A) -> fmt::Result {
        let size = entry_size(level);
        self.stats.leaves += 1;
        self.stats.bytes += size;
        if let Some(r) = &mut self.run {
            if r.level == level && r.attrs == attrs && r.end == ia && r.oa + (r.end - r.ia) == oa {
                r.end += size;
                return Ok(());
            }
        }
        self.flush()?;
        self.run = Some(Run {
            ia,
            end: ia + size,
            oa,
            level,
            attrs,
        });
        Ok(())
    }

    fn flush(&mut self) -> fmt::Result {
        let Some(r) = self.run.take() else {
            return Ok(());
        };
        self.stats.lines += 1;
        let (iw, ow) = (self.ia_digits + 2, self.oa_digits + 2);
        write!(
            self.out,
            "{:#0iw$x}-{:#0iw$x} {:>6} L{} -> {:#0ow$x} ",
            r.ia,
            r.end,
            Size(r.end - r.ia),
            r.level,
            r.oa
        )?;
        (self.describe)(&r.attrs, &mut *self.out)?;
        self.out.write_char('\n')
    }
}

impl<F: Format, P: PageAllocator> Visitor<F, P> for Dump<'_, F::Attrs> {
    type Error = fmt::Error;

    fn leaf(&mut self, run: &mut Entries<'_, F, P>) -> Result<LeafFlow, fmt::Error> {
        // The dump is a user of the structured leaf record (`ops::Leaf`, what
        // `for_each_leaf` hands out); the walk covers the whole input space, so each leaf is
        // whole. An invalid entry leaves a gap in the input addresses, which ends a line.
        for k in 0..run.len() {
            if let Some(leaf) = Leaf::of_entry(run, k) {
                Dump::leaf(self, leaf.leaf_ia, leaf.oa.0, leaf.level, leaf.attrs)?;
            }
        }
        Ok(LeafFlow::Done)
    }

    fn table_pre(&mut self, entry: &mut Entries<'_, F, P>) -> Result<TableFlow, fmt::Error> {
        let child = usize::from(entry.level() + 1);
        if let Some(n) = self.stats.tables.get_mut(child) {
            *n += 1;
        }
        Ok(TableFlow::Descend)
    }
}

/// Writes the tree of `w` to `out`, attributes described by their [`DescribeAttrs`], and
/// returns what it counted (what Linux's `ptdump_walk_pgd` does for kernel tables).
///
/// Adjacent leaves merge into one line when they have the same level and attributes and map
/// contiguous output addresses; an invalid entry ends a line. A line reads
///
/// ```text
/// 0x0040000000-0x0040400000     4M L2 -> 0x000048000000 RWX MEM/WB     AF
/// ```
///
/// input range, size, level of its leaves, first output address, then the attributes. A header
/// names the format and geometry, and two footer lines count leaves, bytes and table pages per
/// level. Read only: no TLB or cache duty.
pub fn dump<F, P>(w: &Walker<'_, F, P>, out: &mut dyn fmt::Write) -> Result<DumpStats, fmt::Error>
where
    F: Format,
    F::Attrs: DescribeAttrs,
    P: PageAllocator,
{
    dump_with(w, out, &mut |a: &F::Attrs, o: &mut dyn fmt::Write| {
        a.describe(o)
    })
}

/// Like [`dump`], with the attributes written by `describe` (for a format whose attribute type
/// has no [`DescribeAttrs`], or to print them differently).
pub fn dump_with<F, P>(
    w: &Walker<'_, F, P>,
    out: &mut dyn fmt::Write,
    describe: &mut dyn FnMut(&F::Attrs, &mut dyn fmt::Write) -> fmt::Result,
) -> Result<DumpStats, fmt::Error>
where
    F: Format,
    P: PageAllocator,
{
    let g = w.geometry();
    let start = g.start_level();
    let root_pages = g.root_pages();
    writeln!(
        out,
        "---[ {}: {}-bit input, start level {start}, root {:#x} ({root_pages} page{}) ]---",
        F::NAME,
        g.ia_bits(),
        w.root().0,
        if root_pages == 1 { "" } else { "s" },
    )?;
    let mut v = Dump {
        out,
        describe,
        run: None,
        stats: DumpStats::default(),
        ia_digits: digits(g.ia_bits()),
        oa_digits: digits(F::MAX_OA_BITS),
    };
    v.stats.tables[usize::from(start)] = root_pages;
    w.walk(0, g.ia_size(), &mut v)?;
    v.flush()?;
    let s = v.stats;
    let out = v.out;
    writeln!(
        out,
        "---[ {} leaves in {} ranges, {} mapped ]---",
        s.leaves,
        s.lines,
        Size(s.bytes)
    )?;
    out.write_str("---[ table pages:")?;
    for level in start..=LAST_LEVEL {
        let sep = if level == start { "" } else { "," };
        let n = s.tables[usize::from(level)];
        let root = if level == start { " (root)" } else { "" };
        write!(out, "{sep} L{level} {n}{root}")?;
    }
    writeln!(out, "; total {} ]---", s.table_pages())?;
    Ok(s)
}
