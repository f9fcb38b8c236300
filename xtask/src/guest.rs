//! The Linux guests' parts: Debian's kernel and `busybox-static` for the guest architecture,
//! fetched with apt, an initramfs with the project's `/init` (`xtask/guest/init`), and the
//! guest's device tree made from QEMU's own for the same machine.
//!
//! Everything is cached under `target/guest/<arch>/`: once `vmlinuz` and `busybox` are there, no
//! network is needed (the initramfs and device tree are rebuilt locally on every run, they take
//! milliseconds). Without apt, the message says which two files to put there by hand.
//!
//! The guest-physical layout written here (load addresses, RAM, the test device) is the one
//! the hypervisors assume: `examples/hyp-common/src/linux.rs` holds the same constants.

use crate::{apt_get, on_path, run, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Guest RAM: IPA and size (the memory node of the guest's device tree).
pub const RAM_IPA: u64 = 0x4000_0000;
pub const RAM_SIZE: u64 = 256 << 20;
/// Where the device tree and the initramfs go in guest RAM.
pub const DTB_IPA: u64 = 0x4800_0000;
pub const INITRD_IPA: u64 = 0x4a00_0000;
/// Host physical address of VM A's RAM (what QEMU's generic loader fills).
pub const HOST_RAM_A: u64 = 0x5000_0000;
/// IPA of the hypervisor's MMIO test device (also named on the kernel command line, where the
/// guest's `/init` looks for it).
pub const TESTDEV_IPA: u64 = 0x0b00_0000;
/// Kernel command line, both under the hypervisor and straight in QEMU (plus `testdev=`).
pub const BOOTARGS: &str = "console=ttyAMA0 panic=-1";
/// The line the guest's `/init` prints first: the boot-time mark.
pub const INIT_MARK: &str = "GUEST-INIT: reached /init";

/// The `/init` of the initramfs.
const INIT_SCRIPT: &str = include_str!("../guest/init");

/// One guest architecture.
pub struct GuestSpec {
    /// Debian architecture (`arm64`, `armhf`).
    pub deb_arch: &'static str,
    /// The kernel metapackage whose dependency names the current kernel package.
    pub kernel_meta: &'static str,
    /// QEMU program and CPU for the device tree dump and the straight boot.
    pub qemu: &'static str,
    pub qemu_cpu: &'static str,
    /// Kernel load IPA (arm64 `Image`: 2 MiB aligned; zImage: anywhere in the first 128 MiB).
    pub kernel_ipa: u64,
}

/// The files of one prepared guest.
pub struct GuestParts {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub dtb: PathBuf,
    pub kernel_ipa: u64,
}

impl GuestParts {
    /// `-device loader` arguments putting kernel, device tree and initramfs into the host
    /// memory behind VM A's RAM slot.
    pub fn loader_args(&self) -> Vec<String> {
        let host = |ipa: u64| HOST_RAM_A + (ipa - RAM_IPA);
        [
            (&self.kernel, self.kernel_ipa),
            (&self.dtb, DTB_IPA),
            (&self.initrd, INITRD_IPA),
        ]
        .iter()
        .flat_map(|(file, ipa)| {
            [
                "-device".to_string(),
                format!(
                    "loader,file={},addr={:#x},force-raw=on",
                    file.display(),
                    host(*ipa)
                ),
            ]
        })
        .collect()
    }
}

fn cmd_output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs the host tools the guest parts need (`cpio`, `dtc`/`fdtput`) if missing.
fn host_tools() -> Result<()> {
    let mut missing = Vec::new();
    if !on_path("cpio") {
        missing.push("cpio");
    }
    if !on_path("dtc") || !on_path("fdtput") {
        missing.push("device-tree-compiler");
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !on_path("apt-get") {
        return Err(format!(
            "missing host tools: {} (install them; this machine has no apt-get)",
            missing.join(", ")
        ));
    }
    run(apt_get()
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing))
}

/// `linux-image-6.1.0-NN-arm64` from `apt-cache depends linux-image-arm64:arm64`.
fn resolve_kernel(spec: &GuestSpec) -> Result<String> {
    let meta = format!("{}:{}", spec.kernel_meta, spec.deb_arch);
    let out = cmd_output(Command::new("apt-cache").args(["depends", &meta]))?;
    parse_depends(&out, spec.kernel_meta)
        .ok_or_else(|| format!("no linux-image dependency of {meta} in:\n{out}"))
}

/// The first `Depends: linux-image-...` of an `apt-cache depends` listing, without `:arch`.
fn parse_depends(out: &str, meta: &str) -> Option<String> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(|d| d.trim().split(':').next().unwrap_or("").to_string())
        .find(|d| d.starts_with("linux-image-") && d != meta)
}

/// Fetches `vmlinuz` and `busybox` of the guest architecture into `dir` with apt.
fn fetch(spec: &GuestSpec, dir: &Path) -> Result<()> {
    if !on_path("apt-get") || !on_path("dpkg") {
        return Err(format!(
            "this machine has no apt-get/dpkg to fetch the Linux guest. Provide by hand:\n  \
             {0}/vmlinuz  - the kernel of Debian bookworm's {1}:{2} (its /boot/vmlinuz-*)\n  \
             {0}/busybox  - a static busybox for {2} (Debian's busybox-static: /bin/busybox)\n\
             and install cpio and the device-tree compiler (dtc, fdtput).",
            dir.display(),
            spec.kernel_meta,
            spec.deb_arch
        ));
    }
    let foreign = cmd_output(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    let native = cmd_output(Command::new("dpkg").arg("--print-architecture"))?;
    let known = native.trim() == spec.deb_arch || foreign.lines().any(|l| l == spec.deb_arch);
    if !known {
        run(crate::privileged("dpkg").args(["--add-architecture", spec.deb_arch]))?;
    }
    let meta = format!("{}:{}", spec.kernel_meta, spec.deb_arch);
    let listed = Command::new("apt-cache")
        .args(["show", &meta])
        .output()
        .is_ok_and(|o| o.status.success());
    if !known || !listed {
        run(apt_get().arg("update"))?;
    }
    let kernel = resolve_kernel(spec)?;
    eprintln!("xtask: {meta} currently depends on {kernel}");
    let debs = dir.join("debs");
    let _ = fs::remove_dir_all(&debs);
    fs::create_dir_all(&debs).map_err(|e| format!("{}: {e}", debs.display()))?;
    run(apt_get().current_dir(&debs).args([
        "download",
        &format!("{kernel}:{}", spec.deb_arch),
        &format!("busybox-static:{}", spec.deb_arch),
    ]))?;
    let root = dir.join("root");
    let _ = fs::remove_dir_all(&root);
    for deb in fs::read_dir(&debs).map_err(|e| e.to_string())? {
        let deb = deb.map_err(|e| e.to_string())?.path();
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    }
    let boot = root.join("boot");
    let vmlinuz = fs::read_dir(&boot)
        .map_err(|e| format!("{}: {e}", boot.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| format!("no vmlinuz-* in {}", boot.display()))?;
    copy(&vmlinuz, &dir.join("vmlinuz"))?;
    copy(&root.join("bin/busybox"), &dir.join("busybox"))?;
    fs::write(dir.join("kernel-package"), format!("{kernel}\n")).map_err(|e| e.to_string())?;
    // The .debs and the extracted tree are no longer needed.
    let _ = fs::remove_dir_all(&debs);
    let _ = fs::remove_dir_all(&root);
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("copy {} -> {}: {e}", from.display(), to.display()))
}

/// A newc initramfs with busybox and the project's `/init`.
fn build_initrd(dir: &Path) -> Result<PathBuf> {
    let tree = dir.join("initramfs");
    let _ = fs::remove_dir_all(&tree);
    for sub in ["bin", "dev", "proc", "sys", "tmp"] {
        fs::create_dir_all(tree.join(sub)).map_err(|e| e.to_string())?;
    }
    copy(&dir.join("busybox"), &tree.join("bin/busybox"))?;
    fs::write(tree.join("init"), INIT_SCRIPT).map_err(|e| e.to_string())?;
    set_exec(&tree.join("init"))?;
    set_exec(&tree.join("bin/busybox"))?;
    std::os::unix::fs::symlink("busybox", tree.join("bin/sh")).map_err(|e| e.to_string())?;
    let out = dir.join("initrd.cpio");
    let listing = "find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0";
    let file = fs::File::create(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let status = Command::new("sh")
        .args(["-c", listing])
        .current_dir(&tree)
        .stdout(file)
        .status()
        .map_err(|e| format!("cannot run cpio: {e}"))?;
    if !status.success() {
        return Err(format!("cpio failed: {status}"));
    }
    Ok(out)
}

fn set_exec(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())
}

/// Top-level nodes of QEMU's device tree the hypervisor does not give the guest (their
/// addresses are then plain read-as-zero MMIO): the platform bus, fw_cfg, the GPIO controller
/// and its keys, PCIe and the flash.
const DROPPED_NODES: [&str; 6] = [
    "platform-bus@",
    "fw-cfg@",
    "gpio-keys",
    "pl061@",
    "pcie@",
    "flash@",
];

/// The guest's device tree: QEMU's own for the same machine (`dumpdtb`, `highmem=off` so every
/// device is below 4 GiB), with the memory node set to guest RAM, `/chosen` carrying the
/// bootargs and the initrd range, and the devices nobody emulates removed.
fn build_dtb(spec: &GuestSpec, dir: &Path, initrd_len: u64) -> Result<PathBuf> {
    let raw = dir.join("qemu.dtb");
    run(Command::new(spec.qemu)
        .arg("-M")
        .arg(format!(
            "virt,virtualization=on,highmem=off,dumpdtb={}",
            raw.display()
        ))
        .args([
            "-cpu",
            spec.qemu_cpu,
            "-smp",
            &crate::smp().to_string(),
            "-m",
            "256M",
            "-nographic",
            "-net",
            "none",
        ]))?;
    let dtb = dir.join("guest.dtb");
    copy(&raw, &dtb)?;
    let fdtget = |args: &[&str]| cmd_output(Command::new("fdtget").arg(&dtb).args(args));
    let fdtput = |args: &[&str]| run(Command::new("fdtput").arg(&dtb).args(args));
    let top = fdtget(&["-l", "/"])?;
    for node in top.lines() {
        if DROPPED_NODES.iter().any(|d| node.starts_with(d)) {
            fdtput(&["-r", &format!("/{node}")])?;
        }
    }
    // The GICv2m MSI frame belongs to PCIe.
    if let Some(gic) = top.lines().find(|n| n.starts_with("intc@")) {
        for sub in fdtget(&["-l", &format!("/{gic}")])?.lines() {
            if sub.starts_with("v2m@") {
                fdtput(&["-r", &format!("/{gic}/{sub}")])?;
            }
        }
    }
    let cells = |name: &str| -> Result<u32> {
        fdtget(&["-t", "u", "/", name])?
            .trim()
            .parse()
            .map_err(|e| format!("/{name}: {e}"))
    };
    let (ac, sc) = (cells("#address-cells")?, cells("#size-cells")?);
    let split = |v: u64, n: u32| -> Vec<String> {
        if n == 2 {
            vec![format!("{:#x}", v >> 32), format!("{:#x}", v & 0xffff_ffff)]
        } else {
            vec![format!("{v:#x}")]
        }
    };
    let memory = top
        .lines()
        .find(|n| n.starts_with("memory"))
        .ok_or("QEMU's device tree has no memory node")?;
    let mut reg = vec![
        "-t".to_string(),
        "x".into(),
        format!("/{memory}"),
        "reg".into(),
    ];
    reg.extend(split(RAM_IPA, ac));
    reg.extend(split(RAM_SIZE, sc));
    run(Command::new("fdtput").arg(&dtb).args(&reg))?;
    let bootargs = format!("{BOOTARGS} testdev={TESTDEV_IPA:#010x}");
    fdtput(&["-t", "s", "/chosen", "bootargs", &bootargs])?;
    let start = format!("{INITRD_IPA:#x}");
    let end = format!("{:#x}", INITRD_IPA + initrd_len);
    fdtput(&["-t", "x", "/chosen", "linux,initrd-start", &start])?;
    fdtput(&["-t", "x", "/chosen", "linux,initrd-end", &end])?;
    Ok(dtb)
}

/// Fetches (first run only) and builds the parts of the guest of `spec`.
pub fn prepare(spec: &GuestSpec, cache: &Path) -> Result<GuestParts> {
    let dir = cache.join(spec.deb_arch);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !dir.join("vmlinuz").is_file() || !dir.join("busybox").is_file() {
        fetch(spec, &dir)?;
    } else {
        eprintln!(
            "xtask: using the cached guest parts in {} (delete them to refetch)",
            dir.display()
        );
    }
    host_tools()?;
    let initrd = build_initrd(&dir)?;
    let initrd_len = fs::metadata(&initrd).map_err(|e| e.to_string())?.len();
    let dtb = build_dtb(spec, &dir, initrd_len)?;
    Ok(GuestParts {
        kernel: dir.join("vmlinuz"),
        initrd,
        dtb,
        kernel_ipa: spec.kernel_ipa,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_depends;

    #[test]
    fn depends() {
        let out = "linux-image-arm64:arm64\n  Depends: linux-image-6.1.0-50-arm64:arm64\n";
        assert_eq!(
            parse_depends(out, "linux-image-arm64").as_deref(),
            Some("linux-image-6.1.0-50-arm64")
        );
        assert_eq!(parse_depends("x\n", "linux-image-arm64"), None);
    }
}
