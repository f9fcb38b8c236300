//! Result files, the markdown tables and the SVG plot of ns per page against range size.

use crate::work::{Op, Sizes};
use crate::{FLOOR, SUBJECTS};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where results go: `$CARGO_TARGET_DIR/pt-bench` or `<workspace>/target/pt-bench`.
pub fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let d = target.join("pt-bench");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Results: (op id, subject) -> value per unit.
pub type Results = BTreeMap<(String, String), f64>;

/// Writes `r` as `op<TAB>subject<TAB>value` lines.
pub fn save(r: &Results, file: &str) {
    let mut s = String::new();
    for ((op, who), v) in r {
        writeln!(s, "{op}\t{who}\t{v}").unwrap();
    }
    std::fs::write(out_dir().join(file), s).unwrap();
}

/// Reads a file written by [`save`] (empty when missing).
pub fn load(file: &str) -> Results {
    let mut r = Results::new();
    if let Ok(s) = std::fs::read_to_string(out_dir().join(file)) {
        for l in s.lines() {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() == 3 {
                if let Ok(v) = f[2].parse() {
                    r.insert((f[0].to_string(), f[1].to_string()), v);
                }
            }
        }
    }
    r
}

fn cell(v: Option<f64>) -> String {
    match v {
        None => "n/a".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".into(),
    }
}

fn get(r: &Results, op: &str, who: &str) -> Option<f64> {
    r.get(&(op.to_string(), who.to_string())).copied()
}

/// The markdown table of `r` (`what` is "ns" or "instructions"), with ratios to the floor and
/// the fastest peer's figure divided by ours.
pub fn table(r: &Results, what: &str, z: &Sizes) -> String {
    let mut s = String::new();
    writeln!(
        s,
        "| operation | {what} per | ours armv8 | ours armv7 | aarch64-paging | page-table-generic | page_table_multiarch | floor | armv8 / floor | armv7 / floor | best peer / armv8 | best peer / armv7 |"
    )
    .unwrap();
    writeln!(
        s,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    .unwrap();
    for op in Op::ALL {
        let id = op.id();
        let v8 = get(r, id, SUBJECTS[0]);
        let v7 = get(r, id, SUBJECTS[1]);
        let ap = get(r, id, SUBJECTS[2]);
        let ptg = get(r, id, SUBJECTS[3]);
        let ptm = get(r, id, SUBJECTS[4]);
        let fl = get(r, id, FLOOR);
        let peer = [ap, ptg, ptm].into_iter().flatten().reduce(f64::min);
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            describe(op, z),
            op.unit(),
            cell(v8),
            cell(v7),
            cell(ap),
            cell(ptg),
            cell(ptm),
            cell(fl),
            ratio(v8, fl),
            ratio(v7, fl),
            ratio(peer, v8),
            ratio(peer, v7),
        )
        .unwrap();
    }
    s
}

/// Human description of an operation at sizes `z`.
pub fn describe(op: Op, z: &Sizes) -> String {
    let mib = |b: u64| {
        if b >= 1 << 30 {
            format!("{} GiB", b >> 30)
        } else {
            format!("{} MiB", b >> 20)
        }
    };
    match op {
        Op::MapPages => format!("map {} as 4 KiB pages", mib(z.pages)),
        Op::MapBlocks => format!("map {} as 2 MiB blocks", mib(z.blocks)),
        Op::UnmapPages => format!("unmap {} of 4 KiB pages", mib(z.pages)),
        Op::UnmapBlocks => format!("unmap {} of 2 MiB blocks", mib(z.blocks)),
        Op::WriteProtect => format!("write-protect {} of 4 KiB pages", mib(z.pages)),
        Op::Split => format!("split a 2 MiB block into pages (x{})", z.splits),
        Op::Translate => format!("translate a random mapped IPA (x{})", z.translates),
        Op::Fault => format!("guest write fault -> map one page (x{})", z.faults),
        Op::Teardown => format!("tear down a VM with {} of pages", mib(z.pages)),
        Op::UnmapPagesClean => format!(
            "unmap {} of 4 KiB pages, pt-hyp with D-cache clean",
            mib(z.pages)
        ),
        Op::UnmapBlocksClean => format!(
            "unmap {} of 2 MiB blocks, pt-hyp with D-cache clean",
            mib(z.blocks)
        ),
        Op::TeardownClean => format!(
            "tear down a VM with {} of pages, pt-hyp with D-cache clean",
            mib(z.pages)
        ),
    }
}

/// An SVG line plot of ns per page (log scale) against range size (log scale), one line per
/// series: `series[i] = (name, [(bytes, ns per page)])`.
pub fn svg(title: &str, series: &[(String, Vec<(u64, f64)>)]) -> String {
    let (w, h, l, r, t, b) = (760.0, 440.0, 70.0, 190.0, 40.0, 50.0);
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| (p.0 as f64).log2()))
        .collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1.log10()))
        .collect();
    if xs.is_empty() {
        return String::new();
    }
    let (x0, x1) = (
        xs.iter().cloned().fold(f64::MAX, f64::min),
        xs.iter().cloned().fold(f64::MIN, f64::max),
    );
    let y0 = ys.iter().cloned().fold(f64::MAX, f64::min).floor();
    let y1 = ys
        .iter()
        .cloned()
        .fold(f64::MIN, f64::max)
        .ceil()
        .max(y0 + 1.0);
    let px = |x: f64| l + (x - x0) / (x1 - x0).max(1e-9) * (w - l - r);
    let py = |y: f64| h - b - (y - y0) / (y1 - y0) * (h - t - b);
    let colors = [
        "#1f77b4", "#2ca02c", "#d62728", "#ff7f0e", "#7f7f7f", "#9467bd",
    ];
    let mut s = String::new();
    writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    )
    .unwrap();
    writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#).unwrap();
    writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{title}</text>"#,
        (w - r + l) / 2.0
    )
    .unwrap();
    // Y grid: decades.
    let mut d = y0;
    while d <= y1 + 1e-9 {
        let y = py(d);
        let label = 10f64.powf(d);
        writeln!(
            s,
            r##"<line x1="{l}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            w - r,
            l - 6.0,
            y + 4.0,
            if label < 1.0 { format!("{label}") } else { format!("{label:.0}") }
        )
        .unwrap();
        d += 1.0;
    }
    // X ticks: the sizes measured.
    let mut sizes: Vec<u64> = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .collect();
    sizes.sort();
    sizes.dedup();
    for sz in sizes {
        let x = px((sz as f64).log2());
        let label = if sz >= 1 << 30 {
            format!("{} GiB", sz >> 30)
        } else {
            format!("{} MiB", sz >> 20)
        };
        writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{t}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            h - b,
            h - b + 16.0
        )
        .unwrap();
    }
    writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">range mapped as 4 KiB pages</text>"#,
        (w - r + l) / 2.0,
        h - 10.0
    )
    .unwrap();
    writeln!(
        s,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">ns per page (log)</text>"#,
        h / 2.0,
        h / 2.0
    )
    .unwrap();
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = colors[i % colors.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px((x as f64).log2()), py(y.log10())))
            .collect();
        writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        )
        .unwrap();
        for p in &path {
            let (x, y) = p.split_once(',').unwrap();
            writeln!(s, r#"<circle cx="{x}" cy="{y}" r="3" fill="{c}"/>"#).unwrap();
        }
        let ly = t + 10.0 + i as f64 * 20.0;
        writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{c}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{name}</text>"#,
            w - r + 12.0,
            w - r + 36.0,
            w - r + 42.0,
            ly + 4.0
        )
        .unwrap();
    }
    writeln!(s, "</svg>").unwrap();
    s
}

/// Writes `results.md` (time table, instruction table when callgrind ran, table pages) and
/// `map_4k_by_size.svg` into [`out_dir`], and returns the markdown.
pub fn write_all(z: &Sizes) -> String {
    let ns = load("ns.tsv");
    let ir = load("callgrind.tsv");
    let tables = load("tables.tsv");
    let mut md = String::new();
    writeln!(md, "### Time (ns per unit, median of the samples)\n").unwrap();
    md += &table(&ns, "ns", z);
    if !ir.is_empty() {
        writeln!(md, "\n### Instructions per unit (callgrind)\n").unwrap();
        md += &table(&ir, "instructions", z);
    }
    if !tables.is_empty() {
        writeln!(md, "\n### Table pages below the root\n").unwrap();
        writeln!(
            md,
            "| mapping | minimum | ours armv8 | ours armv7 | aarch64-paging | page-table-generic | page_table_multiarch |"
        )
        .unwrap();
        writeln!(md, "|---|---:|---:|---:|---:|---:|---:|").unwrap();
        for (key, what) in [
            ("pages", describe(Op::MapPages, z)),
            ("blocks", describe(Op::MapBlocks, z)),
        ] {
            let v = |who: &str| get(&tables, key, who).map_or("n/a".into(), |v| format!("{v:.0}"));
            writeln!(
                md,
                "| {what} | {} | {} | {} | {} | {} | {} |",
                v("minimum"),
                v(SUBJECTS[0]),
                v(SUBJECTS[1]),
                v(SUBJECTS[2]),
                v(SUBJECTS[3]),
                v(SUBJECTS[4])
            )
            .unwrap();
        }
    }
    let by_size = load("by_size.tsv");
    let mut series: Vec<(String, Vec<(u64, f64)>)> = Vec::new();
    for who in SUBJECTS.iter().chain([&FLOOR]) {
        let mut pts: Vec<(u64, f64)> = by_size
            .iter()
            .filter(|((_, w), _)| w == who)
            .map(|((sz, _), v)| (sz.parse().unwrap(), *v))
            .collect();
        pts.sort_by_key(|p| p.0);
        if !pts.is_empty() {
            let name = if who.starts_with("arm") {
                format!("ours {who}")
            } else {
                who.to_string()
            };
            series.push((name, pts));
        }
    }
    if !series.is_empty() {
        writeln!(md, "\n### Map as 4 KiB pages: ns per page by range size\n").unwrap();
        let sizes: Vec<u64> = series[0].1.iter().map(|p| p.0).collect();
        write!(md, "| series |").unwrap();
        for sz in &sizes {
            write!(md, " {} MiB |", sz >> 20).unwrap();
        }
        writeln!(md).unwrap();
        writeln!(md, "|---|{}", "---:|".repeat(sizes.len())).unwrap();
        for (name, pts) in &series {
            write!(md, "| {name} |").unwrap();
            for p in pts {
                write!(md, " {} |", cell(Some(p.1))).unwrap();
            }
            writeln!(md).unwrap();
        }
        let svg = svg("Map a range as 4 KiB pages (stage 2): ns per page", &series);
        std::fs::write(out_dir().join("map_4k_by_size.svg"), svg).unwrap();
    }
    std::fs::write(out_dir().join("results.md"), &md).unwrap();
    md
}
