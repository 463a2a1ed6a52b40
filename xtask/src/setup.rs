//! `cargo xtask setup`: check each prerequisite, install only what is missing, and print one
//! line per check. Other commands run the parts they need.
use std::{
    env, fs, io,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::sh::{self, Result};

/// Debian packages the tests and benchmarks need, with why. Add a line to extend the list.
pub const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "`ip`/`ss` for network tests"),
    ("rsyslog", "syslog sink tests"),
    ("auditd", "benchmarks: auditd as a peer"),
    ("bpftrace", "benchmarks and cross-checks of the probes"),
    ("procps", "benchmarks: `ps` as the scan baseline"),
    (
        "socat",
        "reverse- and bind-shell relays in tests/reverse_shell.rs",
    ),
    ("chromium", "the dashboard's real-browser test (headless)"),
    (
        "chromium-driver",
        "WebDriver for the dashboard's browser test",
    ),
    (
        "prometheus",
        "`promtool check metrics` on the API's /metrics (tests/api_server.rs)",
    ),
    (
        "openssh-server",
        "a real sshd login in tests/normal_day.rs (its service is not started by the tests)",
    ),
];

/// Where tracefs is mounted on current kernels.
const TRACEFS: &str = "/sys/kernel/tracing";

/// `cargo xtask setup [--dry-run]`: everything.
pub fn command(dry_run: bool) -> Result<u8> {
    let mut setup = Setup::new(dry_run);
    setup.toolchain()?;
    setup.lint_tools()?;
    setup.tracefs()?;
    setup.packages()?;
    setup.finish()?;
    if dry_run {
        eprintln!("xtask setup: dry run done (nothing was changed)");
    } else {
        eprintln!("xtask setup: everything is in place");
    }
    Ok(0)
}

/// Runs checks in order; remembers what only root can fix.
#[derive(Debug)]
pub struct Setup {
    dry_run: bool,
    needs_root: Vec<String>,
}

impl Setup {
    /// With `dry_run`, prints what would be installed and changes nothing.
    pub fn new(dry_run: bool) -> Self {
        Self {
            dry_run,
            needs_root: Vec::new(),
        }
    }

    fn ok(&self, what: &str) {
        eprintln!("ok: {what}");
    }

    /// Installs/fixes `what` by running `cmd` (or only prints it in a dry run).
    fn install(&self, what: &str, cmd: &mut Command) -> Result {
        if self.dry_run {
            eprintln!("would install: {what}\n  would run: {}", sh::display(cmd));
            Ok(())
        } else {
            eprintln!("installing: {what}");
            // stdout stays free for what the command that needed setup prints.
            sh::run(cmd.stdout(io::stderr()))
        }
    }

    fn root_only(&mut self, what: &str, fix: &str) {
        eprintln!("missing: {what} (needs root: {fix})");
        self.needs_root.push(format!("{what}: run as root `{fix}`"));
    }

    /// Fails if something could only be fixed by root.
    pub fn finish(self) -> Result {
        if self.needs_root.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = self.needs_root.iter().map(|m| format!("  - {m}")).collect();
        Err(format!(
            "setup is incomplete, these need root:\n{}\nRun them, or run `cargo xtask setup` as root.",
            list.join("\n")
        ))
    }

    /// Prints what only root could fix, without failing (for `cargo xtask run`, which runs
    /// procwatch through sudo and lets procwatch explain).
    pub fn warn_root_only(self) {
        for m in &self.needs_root {
            eprintln!("warning: {m}");
        }
    }

    /// Nightly, its rust-src, and bpf-linker with the right LLVM feature: what building the
    /// eBPF object needs.
    pub fn toolchain(&mut self) -> Result {
        if !sh::succeeds(xtask::rustup().arg("--version")) {
            return Err("rustup not found: install it (https://rustup.rs: \
                 `curl --proto '=https' -sSf https://sh.rustup.rs | sh -s -- -y`) and put \
                 ~/.cargo/bin on PATH"
                .into());
        }
        self.nightly()?;
        self.rust_src()?;
        self.bpf_linker()
    }

    fn nightly(&mut self) -> Result {
        let what = format!("{} toolchain", xtask::NIGHTLY);
        if xtask::has_nightly() {
            let version = sh::output(xtask::rustup().args(["run", xtask::NIGHTLY, "rustc", "-V"]))
                .unwrap_or_default();
            self.ok(&format!("{what} ({})", version.trim()));
            return Ok(());
        }
        self.install(
            &what,
            xtask::rustup().args([
                "toolchain",
                "install",
                xtask::NIGHTLY,
                "--profile",
                "minimal",
            ]),
        )?;
        if !self.dry_run && !xtask::has_nightly() {
            return Err(format!(
                "installed the {what}, but `rustup run {} rustc` still fails",
                xtask::NIGHTLY
            ));
        }
        Ok(())
    }

    fn rust_src(&mut self) -> Result {
        let what = format!("rust-src for {}", xtask::NIGHTLY);
        if xtask::has_rust_src() {
            self.ok(&what);
            return Ok(());
        }
        self.install(
            &what,
            xtask::rustup().args([
                "component",
                "add",
                "rust-src",
                "--toolchain",
                xtask::NIGHTLY,
            ]),
        )?;
        if !self.dry_run && !xtask::has_rust_src() {
            return Err(format!("added {what}, but its sources are still missing"));
        }
        Ok(())
    }

    fn bpf_linker(&mut self) -> Result {
        let what = format!(
            "bpf-linker {} built with --no-default-features --features {}",
            xtask::BPF_LINKER_VERSION,
            xtask::LLVM_FEATURE
        );
        let Some(problem) = bpf_linker_problem() else {
            self.ok(&what);
            return Ok(());
        };
        eprintln!("missing: {what}: {problem}");
        let prefix = llvm_prefix();
        match xtask::nightly_sysroot() {
            Some(sysroot) => {
                let libllvm = find_libllvm(&sysroot.join("lib"))?;
                if self.dry_run {
                    eprintln!(
                        "  would link {}/lib/libLLVM.so -> {}",
                        prefix.display(),
                        libllvm.display()
                    );
                } else {
                    link_libllvm(&prefix.join("lib"), &libllvm)?;
                }
            }
            None if self.dry_run => eprintln!(
                "  would link {}/lib/libLLVM.so -> the nightly toolchain's libLLVM",
                prefix.display()
            ),
            None => return Err(format!("the {} toolchain is not installed", xtask::NIGHTLY)),
        }
        let mut cmd = sh::nightly_cargo();
        cmd.env("LLVM_PREFIX", &prefix).args([
            "install",
            "bpf-linker",
            "--locked",
            "--version",
            &format!("~{}", xtask::BPF_LINKER_VERSION),
            "--no-default-features",
            "--features",
            xtask::LLVM_FEATURE,
        ]);
        if bpf_linker_bin().exists() {
            cmd.arg("--force");
        }
        self.install(&format!("{what} (takes a minute or two)"), &mut cmd)?;
        if !self.dry_run
            && let Some(problem) = bpf_linker_problem()
        {
            return Err(format!("installed bpf-linker, but: {problem}"));
        }
        Ok(())
    }

    /// clippy and rustfmt for the workspace's toolchain, clippy for nightly (eBPF lint).
    pub fn lint_tools(&mut self) -> Result {
        for (component, sub) in [("clippy", "clippy"), ("rustfmt", "fmt")] {
            let what = format!("{component} for the workspace toolchain");
            if sh::succeeds(sh::cargo().args([sub, "--version"])) {
                self.ok(&what);
            } else {
                // Plain rustup (not xtask::rustup): keep RUSTUP_TOOLCHAIN so the component
                // lands in the toolchain that runs xtask.
                self.install(
                    &what,
                    Command::new("rustup").args(["component", "add", component]),
                )?;
            }
        }
        let what = format!("clippy for {}", xtask::NIGHTLY);
        if sh::succeeds(sh::nightly_cargo().args(["clippy", "--version"])) {
            self.ok(&what);
            Ok(())
        } else {
            self.install(
                &what,
                xtask::rustup().args(["component", "add", "clippy", "--toolchain", xtask::NIGHTLY]),
            )
        }
    }

    /// tracefs, where tracepoint attach reads event ids.
    pub fn tracefs(&mut self) -> Result {
        let events = Path::new(TRACEFS).join("events");
        let what = format!("tracefs mounted at {TRACEFS}");
        if events.is_dir() {
            self.ok(&what);
            return Ok(());
        }
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "tracefs", "tracefs", TRACEFS]);
        if !sh::is_root() {
            self.root_only(&what, &sh::display(&cmd));
            return Ok(());
        }
        self.install(&what, &mut cmd)?;
        if !self.dry_run && !events.is_dir() {
            return Err(format!(
                "mounted tracefs, but {} is missing: is the kernel built with CONFIG_FTRACE?",
                events.display()
            ));
        }
        Ok(())
    }

    /// [`DEBIAN_PACKAGES`], installed in one `apt-get` run if any is missing.
    pub fn packages(&mut self) -> Result {
        let names: Vec<&str> = DEBIAN_PACKAGES.iter().map(|(name, _)| *name).collect();
        if sh::which("dpkg-query").is_none() {
            return Err(format!(
                "dpkg-query not found: this is not a Debian-like system; install the \
                 equivalents of these packages yourself: {}",
                names.join(" ")
            ));
        }
        let mut missing = Vec::new();
        for (name, why) in DEBIAN_PACKAGES {
            if deb_installed(name) {
                self.ok(&format!("debian package {name} ({why})"));
            } else {
                eprintln!("missing: debian package {name} ({why})");
                missing.push(*name);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let what = format!("debian packages {}", missing.join(" "));
        let mut update = apt_get();
        update.arg("update");
        let mut install = apt_get();
        install
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing);
        if !sh::is_root() {
            let fix = format!("{} && {}", sh::display(&update), sh::display(&install));
            self.root_only(&what, &fix);
            return Ok(());
        }
        self.install("the apt package lists (apt-get update)", &mut update)?;
        self.install(&what, &mut install)?;
        if self.dry_run {
            return Ok(());
        }
        let still: Vec<&str> = missing.into_iter().filter(|n| !deb_installed(n)).collect();
        if !still.is_empty() {
            return Err(format!(
                "apt-get finished, but these are still not installed: {}",
                still.join(" ")
            ));
        }
        Ok(())
    }
}

fn apt_get() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["-q", "-o", "DPkg::Lock::Timeout=300"])
        .stdin(Stdio::null());
    cmd
}

fn deb_installed(name: &str) -> bool {
    sh::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", name]))
        .is_some_and(|s| s.trim() == "install ok installed")
}

fn bpf_linker_bin() -> PathBuf {
    xtask::cargo_home().join("bin/bpf-linker")
}

/// What is wrong with the installed bpf-linker: the library's check (present, installed by
/// cargo with the right version and features), then whether it actually starts (its libLLVM
/// comes from the nightly toolchain, which a nightly update replaces).
fn bpf_linker_problem() -> Option<String> {
    if let Some(missing) = xtask::bpf_linker_problem() {
        return Some(missing.what);
    }
    let runs = sh::output(
        xtask::rustup()
            .args(["run", xtask::NIGHTLY])
            .arg(bpf_linker_bin())
            .arg("--version"),
    );
    match runs {
        Some(v) if v.starts_with(&format!("bpf-linker {}.", xtask::BPF_LINKER_VERSION)) => None,
        Some(v) => Some(format!("`bpf-linker --version` says {:?}", v.trim())),
        None => Some(format!(
            "{} does not start under the {} toolchain (its libLLVM is gone, e.g. after a \
             nightly update)",
            bpf_linker_bin().display(),
            xtask::NIGHTLY
        )),
    }
}

/// `LLVM_PREFIX` for building bpf-linker: a directory whose `lib/` links to the nightly
/// toolchain's own libLLVM (no system LLVM of the right major is needed).
fn llvm_prefix() -> PathBuf {
    let cache = env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache"));
    cache.join("procwatch/llvm")
}

/// The nightly toolchain's `libLLVM.so.<major>.*-rust-*` (or `libLLVM-<major>-rust-*.so`).
fn find_libllvm(lib_dir: &Path) -> Result<PathBuf> {
    let major = xtask::LLVM_FEATURE.trim_start_matches("llvm-");
    let entries =
        fs::read_dir(lib_dir).map_err(|e| format!("cannot list {}: {e}", lib_dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let versioned = format!("libLLVM.so.{major}.");
    let dashed = format!("libLLVM-{major}-rust-");
    names
        .iter()
        .find(|n| n.starts_with(&versioned) && n.contains("-rust-"))
        .or_else(|| names.iter().find(|n| n.starts_with(&dashed) && n.ends_with(".so")))
        .map(|n| lib_dir.join(n))
        .ok_or_else(|| {
            format!(
                "no {versioned}*-rust-* in {}: the {} toolchain's LLVM is not version {major}. \
                 Either install Debian's llvm-{major}-dev and run `LLVM_PREFIX=/usr/lib/llvm-{major} \
                 cargo install bpf-linker --no-default-features --features {}`, or change \
                 LLVM_FEATURE in xtask/src/lib.rs to rustc's LLVM major (`rustc +{} -vV`)",
                lib_dir.display(),
                xtask::NIGHTLY,
                xtask::LLVM_FEATURE,
                xtask::NIGHTLY
            )
        })
}

/// `<dir>/libLLVM.so` (what bpf-linker's build links with) and `<dir>/<file name>` (its
/// soname, found through the rpath bpf-linker's build sets to `<dir>`), both pointing at
/// `libllvm`.
fn link_libllvm(dir: &Path, libllvm: &Path) -> Result {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut names = vec!["libLLVM.so".to_owned()];
    names.extend(
        libllvm
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
    );
    for name in names {
        let link = dir.join(name);
        replace_symlink(&link, libllvm).map_err(|e| {
            format!(
                "cannot link {} -> {}: {e}",
                link.display(),
                libllvm.display()
            )
        })?;
        eprintln!("  linked {} -> {}", link.display(), libllvm.display());
    }
    Ok(())
}

fn replace_symlink(link: &Path, target: &Path) -> io::Result<()> {
    match fs::read_link(link) {
        Ok(current) if current == target => return Ok(()),
        Ok(_) => fs::remove_file(link)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        // A regular file in the way: replace it too.
        Err(_) => fs::remove_file(link)?,
    }
    symlink(target, link)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = env::temp_dir().join(format!("xtask-setup-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    #[test]
    fn finds_the_versioned_libllvm() {
        let dir = scratch("find");
        for name in [
            "libLLVM-22-rust-1.97.0-nightly.so",
            "libLLVM.so.22.1-rust-1.97.0-nightly",
            "librustc_driver-x.so",
        ] {
            fs::write(dir.join(name), b"").expect("write");
        }
        let found = find_libllvm(&dir).expect("found");
        assert_eq!(found, dir.join("libLLVM.so.22.1-rust-1.97.0-nightly"));
        fs::remove_file(&found).expect("remove");
        let found = find_libllvm(&dir).expect("found");
        assert_eq!(found, dir.join("libLLVM-22-rust-1.97.0-nightly.so"));
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_wrong_llvm_major_is_explained() {
        let dir = scratch("wrong");
        fs::write(dir.join("libLLVM.so.21.1-rust-1.90.0-nightly"), b"").expect("write");
        let err = find_libllvm(&dir).expect_err("no LLVM 22");
        assert!(err.contains("not version 22"), "{err}");
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn links_are_replaced_only_when_they_point_elsewhere() {
        let dir = scratch("link");
        let (a, b) = (dir.join("a"), dir.join("b"));
        let link = dir.join("l");
        replace_symlink(&link, &a).expect("create");
        replace_symlink(&link, &a).expect("keep");
        assert_eq!(fs::read_link(&link).expect("link"), a);
        replace_symlink(&link, &b).expect("replace");
        assert_eq!(fs::read_link(&link).expect("link"), b);
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
