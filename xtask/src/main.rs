//! `cargo xtask` — host-side helper for the example hypervisors.
//!
//! Subcommands:
//! - `setup`: install the bare-metal Rust targets and, if missing, QEMU with `apt-get`
//!   (Debian/Ubuntu hosts: `qemu-system-arm` from bookworm-backports, else the plain
//!   package; through `sudo` when not root).
//! - `build`: `setup` (targets only) + build both example images.
//! - `qemu`:  `setup` + `build` + fetch and build the Linux guests' parts
//!   ([`guest`]), boot each guest's kernel straight in QEMU (the boot-time
//!   baseline), then run every hypervisor image under QEMU with its Linux guest
//!   loaded, streaming the console live with a prefix, and print a summary
//!   table of the `CHECK` lines and the `STAT` figures; exits non-zero if any
//!   check failed, a `RESULT:` line is missing or QEMU exited non-zero. QEMU's stdout and
//!   stderr are both streamed live, line by line.
//! - `test`: the test suite, each step timed, then a table of the steps' times and one
//!   closing summary line.
//!
//! Output goes where cargo puts it: `CARGO_TARGET_DIR` when set (a relative one is taken
//! from the directory `cargo xtask` runs in), else `target/` of the repository root (the
//! example images under `examples/target/`).
//!
//! std only, on purpose.

mod guest;

use std::env;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{self, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const TOOLCHAIN: &str = "1.95.0";
/// The libraries' minimum supported Rust version: `rust-version` of `[workspace.package]` in
/// the root `Cargo.toml`, its one statement (the crates inherit it), read from there.
fn msrv() -> Result<String> {
    let path = repo_root().join("Cargo.toml");
    let text = fs::read_to_string(&path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
    text.lines()
        .skip_while(|l| l.trim() != "[workspace.package]")
        .take_while(|l| !l.trim().starts_with('[') || l.trim() == "[workspace.package]")
        .find_map(|l| {
            let v = l.trim().strip_prefix("rust-version")?.trim();
            Some(v.strip_prefix('=')?.trim().trim_matches('"').to_string())
        })
        .ok_or_else(|| format!("no rust-version in [workspace.package] of {path:?}"))
}
/// Host RAM of the hypervisor runs: the hypervisor, its table pools, and the two 256 MiB
/// guest RAM buffers (VM A at 0x5000_0000, VM B at 0x6000_0000).
const HYP_RAM: &str = "1G";
/// Physical CPUs of every QEMU run (`-smp`), and so the guest's vCPUs: 4, or `XTASK_SMP`
/// (1 to 4) for a comparison run (e.g. `XTASK_SMP=1 cargo xtask qemu` for the boot time with
/// one vCPU).
const SMP_DEFAULT: u32 = 4;

/// The `-smp` value of the QEMU runs and of the guest's device tree.
pub(crate) fn smp() -> u32 {
    env::var("XTASK_SMP")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=4).contains(n))
        .unwrap_or(SMP_DEFAULT)
}
const DEBIAN_SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";
const BACKPORTS_SOURCES: &str = "/etc/apt/sources.list.d/bookworm-backports.sources";

/// One example hypervisor image and how to run it.
struct Image {
    /// Short name used in the summary table.
    cpu: &'static str,
    /// Cargo package name inside `examples/`.
    package: &'static str,
    target: &'static str,
    qemu: &'static str,
    qemu_cpu: &'static str,
    /// The Linux guest this hypervisor runs.
    guest: guest::GuestSpec,
    /// Longest run of the hypervisor image (Linux boot, migration, power-off).
    timeout: Duration,
    /// Longest straight boot of the guest kernel.
    straight_timeout: Duration,
}

const IMAGES: &[Image] = &[
    Image {
        cpu: "a53",
        package: "qemu-a53",
        target: "aarch64-unknown-none",
        qemu: "qemu-system-aarch64",
        qemu_cpu: "cortex-a53",
        guest: guest::GuestSpec {
            deb_arch: "arm64",
            kernel_meta: "linux-image-arm64",
            qemu: "qemu-system-aarch64",
            qemu_cpu: "cortex-a53",
            kernel_ipa: 0x4020_0000,
        },
        timeout: Duration::from_secs(240),
        straight_timeout: Duration::from_secs(60),
    },
    Image {
        cpu: "a15",
        package: "qemu-a15",
        target: "armv7a-none-eabi",
        qemu: "qemu-system-arm",
        qemu_cpu: "cortex-a15",
        guest: guest::GuestSpec {
            deb_arch: "armhf",
            kernel_meta: "linux-image-armmp-lpae",
            qemu: "qemu-system-arm",
            qemu_cpu: "cortex-a15",
            kernel_ipa: 0x4100_0000,
        },
        timeout: Duration::from_secs(480),
        straight_timeout: Duration::from_secs(180),
    },
];

type Result<T> = std::result::Result<T, String>;

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    let cmd = args.first().map(String::as_str).unwrap_or("help");
    let result = match cmd {
        "setup" => setup_targets().and_then(|()| setup_qemu()),
        "build" => setup_targets().and_then(|()| build_all()),
        "qemu" => qemu(),
        "guest" => setup_qemu().and_then(|()| prepare_guests()).map(|_| ()),
        "test" => test(),
        "help" | "-h" | "--help" => {
            usage();
            Ok(())
        }
        other => {
            usage();
            Err(format!("unknown subcommand `{other}`"))
        }
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e}");
        process::exit(1);
    }
}

fn usage() {
    eprintln!(
        "usage: cargo xtask <command>\n\n\
         commands:\n  \
         setup   install Rust targets, and QEMU with apt-get (sudo if not root) if missing\n  \
         build   build the example hypervisor images\n  \
         qemu    build and run the images under QEMU with their Linux guests, summarise\n  \
         guest   fetch (first time) and build the Linux guests' parts under target/guest\n  \
         test    the test suite: fmt, clippy, host tests, docs, bare-metal library builds"
    );
}

fn repo_root() -> PathBuf {
    // xtask/Cargo.toml lives one level below the repository root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

fn examples_dir() -> PathBuf {
    repo_root().join("examples")
}

/// `CARGO_TARGET_DIR` as an absolute path, if set (a relative value is relative to the
/// directory xtask was started in, as for cargo itself).
fn target_dir_override() -> Option<PathBuf> {
    let dir = PathBuf::from(env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty())?);
    if dir.is_absolute() {
        Some(dir)
    } else {
        env::current_dir().ok().map(|cwd| cwd.join(dir))
    }
}

/// Where cargo builds the root workspace: `CARGO_TARGET_DIR` or `<repo>/target`.
fn target_dir() -> PathBuf {
    target_dir_override().unwrap_or_else(|| repo_root().join("target"))
}

/// Where cargo builds the example images: `CARGO_TARGET_DIR` or `<repo>/examples/target`.
fn examples_target_dir() -> PathBuf {
    target_dir_override().unwrap_or_else(|| examples_dir().join("target"))
}

/// Runs a command, inheriting stdio; error if it cannot start or fails.
fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH")
        .map(|paths| env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

// ---------------------------------------------------------------- setup ---

fn setup_targets() -> Result<()> {
    let wanted: Vec<&str> = IMAGES.iter().map(|i| i.target).collect();
    let out = Command::new("rustup")
        .args(["target", "list", "--installed", "--toolchain", TOOLCHAIN])
        .output()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    let installed = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if !out.status.success() || !missing.is_empty() {
        // `rustup target add` has no self-update step; RUSTUP_AUTO_INSTALL=0
        // means nothing installs these for us.
        run(Command::new("rustup")
            .args(["target", "add", "--toolchain", TOOLCHAIN])
            .args(&wanted))?;
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command run as root: directly if we are root, else through sudo.
fn privileged(program: &str) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.arg(program);
        c
    }
}

fn apt_get() -> Command {
    let mut c = privileged("apt-get");
    c.env("DEBIAN_FRONTEND", "noninteractive");
    c
}

/// First stanza of a deb822 `.sources` file with `Suites:` set to backports.
fn backports_stanza(debian_sources: &str) -> Result<String> {
    let stanza: Vec<&str> = debian_sources
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .collect();
    if !stanza.iter().any(|l| l.starts_with("Suites:")) {
        return Err(format!(
            "no Suites: line in first stanza of {DEBIAN_SOURCES}"
        ));
    }
    let mut out = String::new();
    for line in stanza {
        if line.starts_with("Suites:") {
            out.push_str("Suites: bookworm-backports");
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    Ok(out)
}

fn add_backports_source() -> Result<()> {
    if Path::new(BACKPORTS_SOURCES).exists() {
        return Ok(());
    }
    let src = fs::read_to_string(DEBIAN_SOURCES)
        .map_err(|e| format!("cannot read {DEBIAN_SOURCES}: {e}"))?;
    let stanza = backports_stanza(&src)?;
    eprintln!("xtask: adding {BACKPORTS_SOURCES}:\n{stanza}");
    if is_root() {
        fs::write(BACKPORTS_SOURCES, stanza)
            .map_err(|e| format!("cannot write {BACKPORTS_SOURCES}: {e}"))
    } else {
        let tmp = env::temp_dir().join("xtask-bookworm-backports.sources");
        fs::write(&tmp, stanza).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        run(privileged("cp").arg(&tmp).arg(BACKPORTS_SOURCES))
    }
}

fn setup_qemu() -> Result<()> {
    if IMAGES.iter().all(|i| on_path(i.qemu)) {
        return Ok(());
    }
    eprintln!("xtask: QEMU missing, installing qemu-system-arm");
    let backports = add_backports_source()
        .and_then(|()| run(apt_get().arg("update")))
        .and_then(|()| {
            run(apt_get().args([
                "install",
                "-y",
                "--no-install-recommends",
                "-t",
                "bookworm-backports",
                "qemu-system-arm",
            ]))
        });
    if let Err(e) = backports {
        eprintln!("xtask: backports install failed ({e}); trying the plain package");
        // The update may not have happened if adding the source failed.
        let _ = run(apt_get().arg("update"));
        run(apt_get().args([
            "install",
            "-y",
            "--no-install-recommends",
            "qemu-system-arm",
        ]))?;
    }
    match IMAGES.iter().find(|i| !on_path(i.qemu)) {
        Some(i) => Err(format!("{} still missing after install", i.qemu)),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------- build ---

/// A cargo command; `CARGO_TARGET_DIR`, when set, is passed on as an absolute path, so that
/// every cargo xtask starts (from the repository root or `examples/`) builds where
/// [`target_dir`] and [`examples_target_dir`] look.
fn cargo() -> Command {
    let mut c = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    if let Some(dir) = target_dir_override() {
        c.env("CARGO_TARGET_DIR", dir);
    }
    c
}

fn elf_path(image: &Image) -> PathBuf {
    examples_target_dir()
        .join(image.target)
        .join("release")
        .join(image.package)
}

fn build_all() -> Result<()> {
    for image in IMAGES {
        run(cargo()
            .current_dir(examples_dir())
            .args(["build", "--release", "-p", image.package, "--target"])
            .arg(image.target))?;
    }
    Ok(())
}

// ----------------------------------------------------------------- test ---

/// Library crates that must build for both bare-metal targets.
const LIBS: [&str; 4] = ["pt-core", "pt-armv7", "pt-armv8", "pt-hyp"];

/// The steps of `cargo xtask test` run so far: name, seconds, passed.
struct Steps {
    start: Instant,
    done: Vec<(String, f64, bool)>,
}

impl Steps {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            done: Vec::new(),
        }
    }

    /// Runs one step, timed; stops the suite at the first failure.
    fn step(&mut self, name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
        eprintln!("xtask: ---- step: {name} ----");
        let t = Instant::now();
        let r = f();
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "xtask: step {name}: {} in {secs:.1} s",
            if r.is_ok() { "ok" } else { "FAILED" }
        );
        self.done.push((name.to_string(), secs, r.is_ok()));
        r
    }

    /// The per-step times and one closing line.
    fn summary(&self, result: &Result<()>) {
        let width = self.done.iter().map(|(n, ..)| n.len()).max().unwrap_or(4);
        println!();
        println!("==== test steps ====");
        for (name, secs, ok) in &self.done {
            let verdict = if *ok { "ok" } else { "FAILED" };
            println!("{name:<width$}  {secs:>7.1} s  {verdict}");
        }
        let total = self.start.elapsed().as_secs_f64();
        match result {
            Ok(()) => println!(
                "xtask test: all {} steps passed in {total:.1} s",
                self.done.len()
            ),
            Err(_) => println!(
                "xtask test: FAILED at step {} ({} of the steps before it passed) after {total:.1} s",
                self.done.last().map_or("setup", |(n, ..)| n.as_str()),
                self.done.len().saturating_sub(1)
            ),
        }
    }
}

fn test() -> Result<()> {
    let mut steps = Steps::new();
    let result = test_steps(&mut steps);
    steps.summary(&result);
    result
}

fn test_steps(steps: &mut Steps) -> Result<()> {
    let root = repo_root();
    steps.step("targets", setup_targets)?;
    steps.step("fmt", || {
        run(cargo().current_dir(&root).args(["fmt", "--all", "--check"]))?;
        run(cargo()
            .current_dir(examples_dir())
            .args(["fmt", "--all", "--check"]))
    })?;
    steps.step("clippy", || {
        run(cargo().current_dir(&root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    for image in IMAGES {
        steps.step(&format!("clippy {}", image.package), || {
            run(cargo()
                .current_dir(examples_dir())
                .args([
                    "clippy",
                    "-p",
                    image.package,
                    "-p",
                    "hyp-common",
                    "--target",
                ])
                .arg(image.target)
                .args(["--", "-D", "warnings"]))
        })?;
        steps.step(&format!("libraries for {}", image.target), || {
            let mut build = cargo();
            build.current_dir(&root).arg("build");
            for lib in LIBS {
                build.args(["-p", lib]);
            }
            run(build.arg("--target").arg(image.target))
        })?;
    }
    steps.step("wrong backend refused", || backend_check(&root))?;
    let msrv = msrv()?;
    steps.step(&format!("MSRV {msrv}"), || msrv_check(&root, &msrv))?;
    // The examples' shared, architecture-independent logic (PSCI, set/way rule, test device)
    // also runs its unit tests on the host.
    steps.step("hyp-common tests", || {
        run(cargo()
            .current_dir(examples_dir())
            .args(["test", "-p", "hyp-common"]))
    })?;
    steps.step("doc", || {
        run(cargo()
            .current_dir(&root)
            .env("RUSTDOCFLAGS", "-D warnings")
            .args(["doc", "--workspace", "--no-deps"]))
    })?;
    steps.step("tests", || {
        run(cargo().current_dir(&root).args(["test", "--workspace"]))
    })
}

/// For each bare-metal target, `xtask/backend-check` builds with the target's own pt-hyp
/// backend and fails to build with the other one, with pt-hyp's diagnostic: the wrong backend
/// is a compile error, not tables whose maintenance silently does nothing.
fn backend_check(root: &Path) -> Result<()> {
    for image in IMAGES {
        let (own, other) = if image.target.starts_with("aarch64") {
            ("armv8", "armv7")
        } else {
            ("armv7", "armv8")
        };
        let build = |feature: &str| {
            let mut c = cargo();
            c.current_dir(root)
                .args(["build", "-p", "backend-check", "--target", image.target])
                .args(["--features", feature]);
            c
        };
        run(&mut build(own))?;
        let mut wrong = build(other);
        eprintln!("xtask: running {wrong:?} (must fail)");
        let out = wrong
            .output()
            .map_err(|e| format!("cannot start {wrong:?}: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            return Err(format!(
                "pt-hyp's {other} backend built for {}: it must not compile there",
                image.target
            ));
        }
        if !stderr.contains("is not an architecture backend of this build target") {
            return Err(format!(
                "the {other} build for {} failed, but not with pt-hyp's diagnostic:\n{stderr}",
                image.target
            ));
        }
        eprintln!(
            "xtask: {other} for {}: refused at compile time, as it must be",
            image.target
        );
    }
    Ok(())
}

/// The libraries built for both bare-metal targets with the MSRV toolchain, installed if
/// missing (minimal profile, the two targets only). A build, not the tests: the MSRV is a
/// promise about the libraries, and it keeps the step short.
fn msrv_check(root: &Path, msrv: &str) -> Result<()> {
    let mut install = Command::new("rustup");
    install.args([
        "toolchain",
        "install",
        "--no-self-update",
        msrv,
        "--profile",
        "minimal",
    ]);
    for image in IMAGES {
        install.args(["--target", image.target]);
    }
    run(&mut install)?;
    for image in IMAGES {
        // `rustup run`: the MSRV toolchain's own cargo and rustc (the `CARGO` and `RUSTC` the
        // outer cargo set point at the pinned toolchain, and are not passed on).
        let mut build = Command::new("rustup");
        if let Some(dir) = target_dir_override() {
            build.env("CARGO_TARGET_DIR", dir);
        }
        build
            .current_dir(root)
            .env_remove("RUSTC")
            .env_remove("RUSTDOC")
            .env_remove("CARGO")
            .env_remove("RUSTUP_TOOLCHAIN")
            .args(["run", msrv, "cargo", "build"]);
        for lib in LIBS {
            build.args(["-p", lib]);
        }
        run(build.arg("--target").arg(image.target))?;
    }
    Ok(())
}

// ----------------------------------------------------------------- qemu ---

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pass,
    Fail,
}

/// What one QEMU run of a hypervisor image produced.
struct RunReport {
    /// In the order first printed.
    checks: Vec<(String, Outcome)>,
    /// `STAT <name> <value>` figures, in the order printed.
    stats: Vec<(String, String)>,
    /// `(passed, failed)` from the `RESULT:` line, if it was printed.
    result: Option<(u32, u32)>,
    status: Option<ExitStatus>,
    timed_out: bool,
    /// Seconds from QEMU's start to the guest's `/init` under the hypervisor, and straight.
    boot_hyp: Option<f64>,
    boot_straight: Option<f64>,
}

impl RunReport {
    fn ok(&self) -> bool {
        !self.timed_out
            && self.status.is_some_and(|s| s.success())
            && matches!(self.result, Some((_, 0)))
            && !self.checks.is_empty()
            && self.checks.iter().all(|(_, o)| *o == Outcome::Pass)
    }

    /// Boot time under the hypervisor as a multiple of the straight boot.
    fn boot_ratio(&self) -> Option<f64> {
        Some(self.boot_hyp? / self.boot_straight?)
    }
}

fn qemu() -> Result<()> {
    setup_targets()?;
    setup_qemu()?;
    build_all()?;
    let guests = prepare_guests()?;
    let mut reports = Vec::new();
    // `XTASK_ONLY=a53` (or `a15`) runs one image, for iterating on it.
    let only = env::var("XTASK_ONLY").ok();
    for (image, parts) in IMAGES.iter().zip(&guests) {
        if only.as_deref().is_some_and(|o| o != image.cpu) {
            continue;
        }
        reports.push(run_image(image, parts)?);
    }
    print_summary(&reports);
    if reports.iter().all(RunReport::ok) {
        println!("xtask: all images passed");
        Ok(())
    } else {
        Err("some checks failed (see summary above)".into())
    }
}

/// The Linux guest parts of every image, fetched on the first run, from the cache after.
fn prepare_guests() -> Result<Vec<guest::GuestParts>> {
    let cache = target_dir().join("guest");
    IMAGES
        .iter()
        .map(|image| {
            let parts = guest::prepare(&image.guest, &cache)?;
            eprintln!(
                "xtask: {} guest: {}, {}, {}",
                image.cpu,
                parts.kernel.display(),
                parts.initrd.display(),
                parts.dtb.display()
            );
            Ok(parts)
        })
        .collect()
}

/// One finished QEMU process.
struct QemuRun {
    /// stdout, `\r` removed.
    out: String,
    err: String,
    status: Option<ExitStatus>,
    timed_out: bool,
    /// When the first line containing the mark arrived, from the start.
    mark_at: Option<Duration>,
}

/// Runs QEMU, printing each stdout line as it arrives with `prefix`, kills it after `timeout`.
fn run_qemu(cmd: &mut Command, prefix: &str, timeout: Duration, mark: &str) -> Result<QemuRun> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!("xtask: running {cmd:?}");
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (prefix_owned, mark_owned) = (prefix.to_string(), mark.to_string());
    let out_reader = thread::spawn(move || {
        let mut all = String::new();
        let mut mark_at = None;
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']).replace('\r', "");
            if mark_at.is_none() && text.contains(&mark_owned) {
                mark_at = Some(start.elapsed());
            }
            println!("{prefix_owned}{text}");
            all.push_str(&text);
            all.push('\n');
            line.clear();
        }
        (all, mark_at)
    });
    // stderr is streamed live too (QEMU's warnings and errors), marked with `!`.
    let err_prefix = format!("{}! ", prefix.trim_end());
    let err_reader = thread::spawn(move || {
        let mut all = Vec::new();
        let mut reader = BufReader::new(&mut stderr);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line);
            eprintln!("{err_prefix}{}", text.trim_end_matches(['\n', '\r']));
            all.extend_from_slice(&line);
            line.clear();
        }
        all
    });
    let deadline = start + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for {cmd:?}: {e}")),
        }
    };
    let (out, mark_at) = out_reader.join().unwrap_or_default();
    let err = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    Ok(QemuRun {
        out,
        err,
        status,
        timed_out,
        mark_at,
    })
}

fn run_image(image: &Image, parts: &guest::GuestParts) -> Result<RunReport> {
    // The baseline: the same kernel, initramfs and device tree straight in QEMU, the kernel
    // at EL1 / in SVC mode as under the hypervisor (QEMU puts its own initrd range and
    // bootargs into /chosen; without `testdev=` the guest's /init just powers off).
    println!(
        "==== {}: {} straight in QEMU (boot-time baseline) ====",
        image.cpu,
        parts.kernel.display()
    );
    let mut straight = Command::new(image.qemu);
    straight
        .args([
            "-M",
            "virt,highmem=off",
            "-cpu",
            image.qemu_cpu,
            "-m",
            "256M",
            "-smp",
            &smp().to_string(),
        ])
        .args(["-nographic", "-net", "none", "-kernel"])
        .arg(&parts.kernel)
        .arg("-initrd")
        .arg(&parts.initrd)
        .arg("-dtb")
        .arg(&parts.dtb)
        .args(["-append", guest::BOOTARGS]);
    let base = run_qemu(
        &mut straight,
        &format!("{}-straight| ", image.cpu),
        image.straight_timeout,
        guest::INIT_MARK,
    )?;
    if base.mark_at.is_none() {
        println!(
            "xtask: {} the straight boot never reached /init ({})",
            image.cpu,
            base.err.trim()
        );
    }

    let elf = elf_path(image);
    println!(
        "==== {} ({}) with its Linux guest ====",
        image.cpu,
        elf.display()
    );
    let mut cmd = Command::new(image.qemu);
    cmd.args([
        "-M",
        "virt,virtualization=on,highmem=off",
        "-cpu",
        image.qemu_cpu,
        "-smp",
        &smp().to_string(),
    ])
    .args(["-m", HYP_RAM, "-nographic", "-semihosting", "-net", "none"])
    .arg("-kernel")
    .arg(&elf)
    .args(parts.loader_args());
    let run = run_qemu(
        &mut cmd,
        &format!("{}| ", image.cpu),
        image.timeout,
        guest::INIT_MARK,
    )?;
    if !run.err.trim().is_empty() {
        println!("---- {} stderr ----\n{}", image.qemu, run.err.trim_end());
    }
    if run.timed_out {
        println!("xtask: {} TIMED OUT after {:?}", image.cpu, image.timeout);
    }
    match run.status {
        Some(s) => println!("xtask: {} qemu {s}", image.cpu),
        None => println!("xtask: {} exit status unknown", image.cpu),
    }
    let mut report = parse_output(&run.out);
    report.status = run.status;
    report.timed_out = run.timed_out;
    report.boot_hyp = run.mark_at.map(|d| d.as_secs_f64());
    report.boot_straight = base.mark_at.map(|d| d.as_secs_f64());
    if !report.ok() {
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|(_, o)| *o == Outcome::Fail)
            .map(|(n, _)| n.as_str())
            .collect();
        println!(
            "xtask: {} FAILED (checks: {}); last console lines:",
            image.cpu,
            if failed.is_empty() {
                "none failed, run incomplete".to_string()
            } else {
                failed.join(", ")
            }
        );
        let lines: Vec<&str> = run.out.lines().collect();
        for l in &lines[lines.len().saturating_sub(25)..] {
            println!("  {}| {l}", image.cpu);
        }
    }
    Ok(report)
}

/// Parses `CHECK <name> ... PASS|FAIL` and `RESULT: N passed, M failed`.
fn parse_output(out: &str) -> RunReport {
    let mut checks: Vec<(String, Outcome)> = Vec::new();
    let mut result = None;
    let mut stats = Vec::new();
    for raw in out.lines() {
        let line = raw.trim_end_matches('\r').trim();
        if let Some(rest) = line.strip_prefix("CHECK ") {
            if let Some((name, verdict)) = rest.rsplit_once(" ... ") {
                let outcome = if verdict.trim() == "PASS" {
                    Outcome::Pass
                } else {
                    Outcome::Fail
                };
                // A repeated name that failed once stays failed.
                match checks.iter_mut().find(|(n, _)| n == name.trim()) {
                    Some((_, o)) if outcome == Outcome::Fail => *o = Outcome::Fail,
                    Some(_) => {}
                    None => checks.push((name.trim().to_string(), outcome)),
                }
            }
        } else if let Some(rest) = line.strip_prefix("STAT ") {
            if let Some((name, value)) = rest.split_once(' ') {
                stats.push((name.to_string(), value.trim().to_string()));
            }
        } else if let Some(rest) = line.strip_prefix("RESULT:") {
            result = parse_result(rest);
        }
    }
    RunReport {
        checks,
        stats,
        result,
        status: None,
        timed_out: false,
        boot_hyp: None,
        boot_straight: None,
    }
}

fn parse_result(rest: &str) -> Option<(u32, u32)> {
    // " N passed, M failed"
    let (p, f) = rest.split_once(',')?;
    let passed = p.trim().strip_suffix("passed")?.trim().parse().ok()?;
    let failed = f.trim().strip_suffix("failed")?.trim().parse().ok()?;
    Some((passed, failed))
}

fn print_summary(reports: &[RunReport]) {
    let mut names: Vec<&str> = Vec::new();
    for r in reports {
        for (name, _) in &r.checks {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    let width = names.iter().map(|n| n.len()).max().unwrap_or(5).max(5);
    println!();
    println!("==== summary ====");
    print!("{:<width$}", "check");
    for image in IMAGES {
        print!("  {:<5}", image.cpu);
    }
    println!();
    println!("{}", "-".repeat(width + 7 * IMAGES.len()));
    for name in &names {
        print!("{name:<width$}");
        for r in reports {
            let cell = match r.checks.iter().find(|(n, _)| n == name).map(|(_, o)| o) {
                Some(Outcome::Pass) => "PASS",
                Some(Outcome::Fail) => "FAIL",
                None => "-",
            };
            print!("  {cell:<5}");
        }
        println!();
    }
    println!("{}", "-".repeat(width + 7 * IMAGES.len()));
    print!("{:<width$}", "RESULT line");
    for r in reports {
        let cell = match r.result {
            Some((_, 0)) => "ok",
            Some(_) => "FAIL",
            None => "MISS",
        };
        print!("  {cell:<5}");
    }
    println!();
    print!("{:<width$}", "qemu exit");
    for r in reports {
        let cell = match (r.timed_out, r.status) {
            (true, _) => "TIME".to_string(),
            (false, Some(s)) => s.code().map_or("sig".into(), |c| c.to_string()),
            (false, None) => "?".into(),
        };
        print!("  {cell:<5}");
    }
    println!();
    print!("{:<width$}", "overall");
    for r in reports {
        print!("  {:<5}", if r.ok() { "PASS" } else { "FAIL" });
    }
    println!();
    print_figures(reports);
}

/// The `STAT` figures of every image and the boot-time ratio, one block per CPU.
fn print_figures(reports: &[RunReport]) {
    println!();
    println!("==== figures ====");
    let secs = |t: Option<f64>| t.map_or("-".to_string(), |t| format!("{t:.2} s"));
    for (image, r) in IMAGES.iter().zip(reports) {
        println!(
            "{}: guest reached /init after {} under the hypervisor, {} straight in QEMU: ratio {}",
            image.cpu,
            secs(r.boot_hyp),
            secs(r.boot_straight),
            r.boot_ratio()
                .map_or("-".to_string(), |x| format!("{x:.2}x"))
        );
        for (name, value) in &r.stats {
            println!("{}:   {name:<28} {value}", image.cpu);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanza() {
        let src = "Types: deb\nURIs: http://x/debian\nSuites: bookworm bookworm-updates\n\
                   Components: main\n\nTypes: deb\nSuites: bookworm-security\n";
        assert_eq!(
            backports_stanza(src).unwrap(),
            "Types: deb\nURIs: http://x/debian\nSuites: bookworm-backports\nComponents: main\n"
        );
    }

    #[test]
    fn msrv_is_read_from_the_workspace_manifest() {
        let v = msrv().unwrap();
        assert!(v.starts_with("1."), "{v}");
        assert!(!v.contains('"'));
    }

    #[test]
    fn parse() {
        let r = parse_output(
            "hello\r\nCHECK a ... PASS\r\nCHECK b c ... FAIL\nRESULT: 1 passed, 1 failed\n",
        );
        assert_eq!(r.checks.len(), 2);
        assert!(r.checks[0] == ("a".to_string(), Outcome::Pass));
        assert!(r.checks[1] == ("b c".to_string(), Outcome::Fail));
        assert_eq!(r.result, Some((1, 1)));
    }
}
