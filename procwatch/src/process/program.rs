//! What program an exec really runs: the file the dynamic loader loads (`ld-linux*.so* /tmp/x`)
//! or the interpreter reads (`sh /tmp/x.sh`, `python3 /dev/shm/x.py`, a `#!` script, a script
//! on stdin), as opposed to the loader or interpreter the kernel executed. Pure functions of
//! argv, the kernel's exec facts and a stdin link, so the path rules can judge that file.
use std::{
    ffi::{OsStr, OsString},
    os::unix::ffi::OsStrExt,
    path::{Component, Path, PathBuf},
};

/// How the program file was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// A `#!` script: the kernel ran its interpreter on it.
    Shebang,
    /// The dynamic loader run as a program, loading this file.
    Loader,
    /// An interpreter given this file as its script (or a file it loads by option).
    Argument,
    /// An interpreter reading its script from stdin, redirected from this file.
    Stdin,
}

impl Via {
    /// Words for reasons.
    pub fn describe(self) -> &'static str {
        match self {
            Via::Shebang => "#! script",
            Via::Loader => "loaded by the dynamic loader",
            Via::Argument => "script",
            Via::Stdin => "script read from stdin",
        }
    }
}

/// The file an exec runs besides its executable, and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// Absolute and normalised when the working directory was known.
    pub path: PathBuf,
    /// How.
    pub via: Via,
}

/// Interpreter families: they differ in which options take a value, which ones mean "no
/// script file" (code on the command line, a module) and which ones load a file themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Shell,
    Python,
    Perl,
    Ruby,
    Node,
    Php,
    Awk,
    Lua,
    Tcl,
}

/// The family of an executable by file name (versioned names such as `python3.11`).
fn family(name: &OsStr) -> Option<Family> {
    let name = name.to_str()?;
    let versioned = |prefix: &str| {
        name.strip_prefix(prefix)
            .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit() || c == '.'))
    };
    let f = match name {
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "ksh93" | "mksh" | "pdksh" | "ash" | "csh"
        | "tcsh" | "fish" | "yash" | "posh" | "rbash" => Family::Shell,
        "awk" | "gawk" | "mawk" | "nawk" | "busybox-awk" => Family::Awk,
        "node" | "nodejs" | "bun" | "deno" => Family::Node,
        "tclsh" | "wish" | "expect" => Family::Tcl,
        _ if versioned("python") || versioned("pypy") => Family::Python,
        _ if versioned("perl") => Family::Perl,
        _ if versioned("ruby") => Family::Ruby,
        _ if versioned("php") => Family::Php,
        _ if versioned("lua") || versioned("luajit") => Family::Lua,
        _ if versioned("tclsh") => Family::Tcl,
        _ => return None,
    };
    Some(f)
}

/// True for a script interpreter or shell, judged by executable file name.
pub fn is_interpreter(name: &OsStr) -> bool {
    family(name).is_some()
}

/// True for the dynamic loader (`ld-linux-x86-64.so.2`, `ld-linux.so.2`, `ld-musl-x86_64.so.1`,
/// `ld.so`), which runs the program named by its first argument.
pub fn is_loader(name: &OsStr) -> bool {
    let n = name.as_bytes();
    n == b"ld.so"
        || ((n.starts_with(b"ld-linux") || n.starts_with(b"ld-musl") || n.starts_with(b"ld-2."))
            && n.windows(3).any(|w| w == b".so"))
}

/// What one command-line word means to an interpreter family.
enum Word {
    /// An option that takes the next word as its value.
    TakesValue,
    /// The program is not a file (`-c code`, `-m module`, `-e code`): stop looking.
    NoFile,
    /// An option whose value (the next word, or the rest of this word) is a file the
    /// interpreter loads and runs.
    LoadsFile(Option<usize>),
    /// An option without a value.
    Flag,
    /// `--` or `-`: options end (for `-`, the script is stdin).
    EndOfOptions,
}

fn classify(f: Family, w: &[u8]) -> Word {
    use Family::*;
    if w == b"--" {
        return Word::EndOfOptions;
    }
    if w == b"-" {
        return Word::NoFile;
    }
    match f {
        Shell => match w {
            b"-c" => Word::NoFile,
            b"-s" => Word::NoFile,
            b"-o" | b"+o" | b"-O" | b"+O" => Word::TakesValue,
            b"--rcfile" | b"--init-file" => Word::LoadsFile(None),
            _ if w.starts_with(b"--") => Word::Flag,
            // Bundled single-letter flags (`-ic`, `-ec`): `c` or `s` anywhere means code.
            _ if w[1..].contains(&b'c') || w[1..].contains(&b's') => Word::NoFile,
            _ => Word::Flag,
        },
        Python => match w {
            b"-c" | b"-m" => Word::NoFile,
            b"-W" | b"-X" | b"--check-hash-based-pycs" => Word::TakesValue,
            _ if w.starts_with(b"-c") || w.starts_with(b"-m") => Word::NoFile,
            _ if w.starts_with(b"--") => Word::Flag,
            _ if w[1..].contains(&b'c') || w[1..].contains(&b'm') => Word::NoFile,
            _ => Word::Flag,
        },
        Perl | Ruby => {
            if f == Ruby && w.starts_with(b"-r") {
                return if w.len() == 2 {
                    Word::LoadsFile(None)
                } else {
                    Word::LoadsFile(Some(2))
                };
            }
            match w.get(1) {
                _ if w.starts_with(b"--") => Word::Flag,
                Some(b'I' | b'M' | b'm') if w.len() == 2 => Word::TakesValue,
                // Options whose value is attached (`-Mstrict`, `-I/usr/lib`, `-l0`).
                Some(b'I' | b'M' | b'm' | b'x' | b'C' | b'd' | b'D') => Word::Flag,
                // `-e`, and bundles such as `-we`, `-ne`, `-lane`.
                _ if w[1..].contains(&b'e') || w[1..].contains(&b'E') => Word::NoFile,
                _ => Word::Flag,
            }
        }
        Node => match w {
            b"-e" | b"--eval" | b"-p" | b"--print" => Word::NoFile,
            b"-r" | b"--require" | b"--import" | b"--loader" => Word::LoadsFile(None),
            _ if w.starts_with(b"--eval=") || w.starts_with(b"--print=") => Word::NoFile,
            _ if w.starts_with(b"--") && w.contains(&b'=') => Word::Flag,
            b"--inspect-port" | b"--title" | b"--max-old-space-size" | b"-C" | b"--conditions" => {
                Word::TakesValue
            }
            _ => Word::Flag,
        },
        Php => match w {
            b"-r" | b"-R" | b"-B" | b"-E" | b"-a" => Word::NoFile,
            b"-f" | b"-F" => Word::LoadsFile(None),
            b"-d" | b"-c" | b"-z" => Word::TakesValue,
            _ => Word::Flag,
        },
        Awk => match w {
            b"-f" | b"--file" | b"-i" | b"--include" => Word::LoadsFile(None),
            b"-v" | b"-F" | b"--assign" | b"--field-separator" => Word::TakesValue,
            _ if w.starts_with(b"-f") => Word::LoadsFile(Some(2)),
            _ => Word::Flag,
        },
        Lua => match w {
            b"-e" => Word::NoFile,
            b"-l" => Word::TakesValue,
            _ => Word::Flag,
        },
        Tcl => Word::Flag,
    }
}

/// The script file an interpreter's argv names (argv[0] is the interpreter), or a file one of
/// its options makes it load; `None` when the program comes from the command line or a module
/// (or from stdin: see [`program`]). For awk the first operand is the program text, not a file.
fn script_arg(f: Family, argv: &[OsString]) -> Option<(PathBuf, bool)> {
    let mut words = argv.iter().skip(1).map(|a| a.as_bytes());
    while let Some(w) = words.next() {
        if w.is_empty() {
            continue;
        }
        if w == b"-" {
            // The script is stdin.
            return None;
        }
        let option = (w[0] == b'-' || (f == Family::Shell && w[0] == b'+')) && w.len() > 1;
        if !option || w == b"--" {
            let operand = if w == b"--" { words.next()? } else { w };
            if f == Family::Awk {
                return None;
            }
            return Some((PathBuf::from(OsStr::from_bytes(operand)), false));
        }
        match classify(f, w) {
            Word::TakesValue => {
                words.next();
            }
            Word::NoFile => return None,
            Word::LoadsFile(None) => {
                return words
                    .next()
                    .map(|v| (PathBuf::from(OsStr::from_bytes(v)), true));
            }
            Word::LoadsFile(Some(at)) => {
                return Some((PathBuf::from(OsStr::from_bytes(&w[at..])), true));
            }
            Word::Flag => {}
            Word::EndOfOptions => {
                let operand = words.next()?;
                return (f != Family::Awk)
                    .then(|| (PathBuf::from(OsStr::from_bytes(operand)), false));
            }
        }
    }
    None
}

/// True when an interpreter started with `argv` reads its program from stdin: no script
/// operand and no code on the command line (`sh`, `sh -s`, `python3 -`, `perl`).
fn reads_stdin(f: Family, argv: &[OsString]) -> bool {
    let mut words = argv.iter().skip(1).map(|a| a.as_bytes());
    while let Some(w) = words.next() {
        if w == b"-" {
            return true;
        }
        if f == Family::Shell && (w == b"-s" || (w.starts_with(b"-") && w[1..].contains(&b's'))) {
            return true;
        }
        let option = w.len() > 1 && (w[0] == b'-' || (f == Family::Shell && w[0] == b'+'));
        if !option {
            return false;
        }
        match classify(f, w) {
            Word::TakesValue => {
                words.next();
            }
            Word::NoFile | Word::LoadsFile(_) | Word::EndOfOptions => return false,
            Word::Flag => {}
        }
    }
    // awk without a program text reads nothing useful; node and php without a file start
    // a REPL on a terminal, but read a script from a redirected stdin.
    f != Family::Awk && f != Family::Tcl
}

/// The file a shell's `-c` code sources first (`sh -c '. /tmp/x'`, `bash -c 'source x'`): a
/// file read and run by the shell itself, with no exec of its own to see.
fn sourced_by_code(argv: &[OsString]) -> Option<PathBuf> {
    let mut words = argv.iter().skip(1).map(|a| a.as_bytes());
    let code = loop {
        let w = words.next()?;
        if w.len() > 1 && w[0] == b'-' && !w.starts_with(b"--") && w[1..].contains(&b'c') {
            break words.next()?;
        }
        if w.is_empty() || w[0] != b'-' {
            return None;
        }
    };
    let mut it = code
        .split(|&b| b == b' ' || b == b'\t' || b == b'\n' || b == b';')
        .filter(|w| !w.is_empty());
    let first = it.next()?;
    if first != b"." && first != b"source" {
        return None;
    }
    it.next().map(|p| PathBuf::from(OsStr::from_bytes(p)))
}

/// True when a shell started with `argv` takes its commands from stdin: interactive (`-i`),
/// `-s`, or neither a script nor `-c` code. What a reverse or bind shell is; `sh -c CMD` and
/// `sh script` are not.
pub fn shell_reads_commands(argv: &[OsString]) -> bool {
    let single = |a: &&OsString| {
        let b = a.as_bytes();
        b.len() > 1 && b[0] == b'-' && !b.starts_with(b"--")
    };
    if argv
        .iter()
        .skip(1)
        .filter(single)
        .any(|a| a.as_bytes()[1..].contains(&b'c'))
    {
        return false;
    }
    argv.iter()
        .skip(1)
        .filter(single)
        .any(|a| a.as_bytes()[1..].contains(&b'i'))
        || reads_stdin(Family::Shell, argv)
}

/// The dynamic loader's program: its first operand, after the loader's own options (those
/// with a value are skipped with it).
fn loader_program(argv: &[OsString]) -> Option<PathBuf> {
    const WITH_VALUE: &[&[u8]] = &[
        b"--library-path",
        b"--inhibit-rpath",
        b"--audit",
        b"--preload",
        b"--argv0",
        b"--glibc-hwcaps-prepend",
        b"--glibc-hwcaps-mask",
    ];
    let mut words = argv.iter().skip(1).map(|a| a.as_bytes());
    while let Some(w) = words.next() {
        if w == b"--" {
            return words.next().map(|v| PathBuf::from(OsStr::from_bytes(v)));
        }
        if w.starts_with(b"--") {
            if WITH_VALUE.contains(&w) {
                words.next();
            }
            continue;
        }
        return Some(PathBuf::from(OsStr::from_bytes(w)));
    }
    None
}

/// What an exec runs besides its executable.
///
/// - `exe`: the executed file (the kernel's resolved path when it has one).
/// - `filename`: the path given to exec; with `interp` (a `#!` script) it is the script.
/// - `stdin`: where fd 0 points (a `/proc/PID/fd/0` link), if read.
/// - `cwd`: the working directory, to make relative names absolute.
pub fn program(
    exe: &Path,
    filename: &Path,
    interp: Option<&Path>,
    argv: &[OsString],
    stdin: Option<&Path>,
    cwd: Option<&Path>,
) -> Option<Program> {
    if interp.is_some() {
        return Some(Program {
            path: normalise(filename, cwd),
            via: Via::Shebang,
        });
    }
    let name = exe.file_name()?;
    if is_loader(name) {
        return loader_program(argv).map(|p| Program {
            path: normalise(&p, cwd),
            via: Via::Loader,
        });
    }
    let f = family(name)?;
    if f == Family::Shell
        && let Some(p) = sourced_by_code(argv)
    {
        return Some(Program {
            path: normalise(&p, cwd),
            via: Via::Argument,
        });
    }
    if let Some((p, _loads)) = script_arg(f, argv) {
        return Some(Program {
            path: normalise(&p, cwd),
            via: Via::Argument,
        });
    }
    let stdin = stdin.filter(|s| is_plain_file_link(s))?;
    reads_stdin(f, argv).then(|| Program {
        path: stdin.to_path_buf(),
        via: Via::Stdin,
    })
}

/// A `/proc/PID/fd` link that names a file by path (not `pipe:[..]`, `socket:[..]`, a
/// terminal or `/dev/null`).
fn is_plain_file_link(link: &Path) -> bool {
    link.is_absolute()
        && !link.starts_with("/dev/pts")
        && !link.starts_with("/dev/tty")
        && link != Path::new("/dev/null")
        && !link.starts_with("/dev/ptmx")
        && link != Path::new("/dev/console")
}

/// `path` made absolute against `cwd` (when relative and `cwd` is known) and normalised
/// lexically: `.` and empty components dropped, `..` taken off the component before it
/// (never above `/`). Symbolic links are not followed: that is the kernel's walk's job (the
/// resolved path of the exec); for names that only an interpreter opens, a symlink in a
/// writable directory is judged where it is.
pub fn normalise(path: &Path, cwd: Option<&Path>) -> PathBuf {
    let joined;
    let path = match cwd {
        Some(cwd) if path.is_relative() => {
            joined = cwd.join(path);
            joined.as_path()
        }
        _ => path,
    };
    let mut out = PathBuf::new();
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            Component::RootDir => {
                out.push("/");
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if depth > 0 {
                    out.pop();
                    depth -= 1;
                } else if !path.is_absolute() {
                    out.push("..");
                }
            }
            Component::Normal(n) => {
                out.push(n);
                depth += 1;
            }
            Component::Prefix(_) => {}
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn run(exe: &str, words: &[&str]) -> Option<(String, Via)> {
        program(
            Path::new(exe),
            Path::new(exe),
            None,
            &argv(words),
            None,
            Some(Path::new("/home/u")),
        )
        .map(|p| (p.path.to_string_lossy().into_owned(), p.via))
    }

    #[test]
    fn normalises_dots_slashes_and_relative_paths() {
        let cwd = Some(Path::new("/tmp/work"));
        for (p, want) in [
            ("./payload", "/tmp/work/payload"),
            ("../x", "/tmp/x"),
            ("a//b/./c", "/tmp/work/a/b/c"),
            ("/usr/../tmp/./x", "/tmp/x"),
            ("/../../tmp/x", "/tmp/x"),
            ("//tmp///x", "/tmp/x"),
            ("/usr/bin/../../tmp/../tmp/y", "/tmp/y"),
        ] {
            assert_eq!(normalise(Path::new(p), cwd), Path::new(want), "{p}");
        }
        assert_eq!(normalise(Path::new("./x"), None), Path::new("x"));
        assert_eq!(normalise(Path::new("../x"), None), Path::new("../x"));
    }

    #[test]
    fn shells_and_interpreters_name_their_script() {
        let s = |exe: &str, words: &[&str]| run(exe, words).map(|(p, _)| p);
        assert_eq!(
            s("/bin/sh", &["sh", "/tmp/x.sh"]).as_deref(),
            Some("/tmp/x.sh")
        );
        assert_eq!(
            s("/bin/bash", &["bash", "-x", "-e", "y.sh", "arg"]).as_deref(),
            Some("/home/u/y.sh")
        );
        assert_eq!(
            s("/bin/bash", &["bash", "-o", "pipefail", "/tmp/z"]).as_deref(),
            Some("/tmp/z")
        );
        assert_eq!(
            s("/bin/bash", &["bash", "--rcfile", "/tmp/rc", "-i"]).as_deref(),
            Some("/tmp/rc")
        );
        assert_eq!(
            s("/usr/bin/python3.11", &["python3", "-u", "/dev/shm/x.py"]).as_deref(),
            Some("/dev/shm/x.py")
        );
        assert_eq!(
            s(
                "/usr/bin/python3",
                &["python3", "-W", "ignore", "/tmp/x.py"]
            )
            .as_deref(),
            Some("/tmp/x.py")
        );
        assert_eq!(
            s("/usr/bin/perl", &["perl", "-I", "/usr/lib", "/tmp/x.pl"]).as_deref(),
            Some("/tmp/x.pl")
        );
        assert_eq!(
            s("/usr/bin/perl", &["perl", "-w", "--", "/tmp/x.pl"]).as_deref(),
            Some("/tmp/x.pl")
        );
        assert_eq!(
            s("/usr/bin/ruby", &["ruby", "-r/tmp/evil.rb", "-e", "1"]).as_deref(),
            Some("/tmp/evil.rb")
        );
        assert_eq!(
            s(
                "/usr/bin/node",
                &["node", "--require", "/tmp/hook.js", "app.js"]
            )
            .as_deref(),
            Some("/tmp/hook.js")
        );
        assert_eq!(
            s("/usr/bin/php", &["php", "-f", "/tmp/x.php"]).as_deref(),
            Some("/tmp/x.php")
        );
        assert_eq!(
            s("/usr/bin/gawk", &["awk", "-f", "/tmp/x.awk", "data"]).as_deref(),
            Some("/tmp/x.awk")
        );
        // Code on the command line, modules, and awk's program text are not files.
        assert_eq!(s("/bin/bash", &["bash", "-c", "/tmp/x"]), None);
        assert_eq!(
            s("/bin/sh", &["sh", "-c", ". /tmp/x; true"]).as_deref(),
            Some("/tmp/x")
        );
        assert_eq!(
            s("/bin/bash", &["bash", "-ec", "source ./y"]).as_deref(),
            Some("/home/u/y")
        );
        assert_eq!(
            s("/usr/bin/perl", &["perl", "-lane", "print", "/tmp/data"]),
            None
        );
        assert_eq!(
            s("/usr/bin/perl", &["perl", "-Mstrict", "/tmp/x.pl"]).as_deref(),
            Some("/tmp/x.pl")
        );
        assert_eq!(s("/bin/sh", &["sh", "-ec", "echo /tmp/x"]), None);
        assert_eq!(
            s(
                "/usr/bin/python3",
                &["python3", "-c", "import os", "/tmp/x"]
            ),
            None
        );
        assert_eq!(
            s("/usr/bin/python3", &["python3", "-m", "http.server"]),
            None
        );
        assert_eq!(
            s("/usr/bin/perl", &["perl", "-e", "print 1", "/tmp/x"]),
            None
        );
        assert_eq!(s("/usr/bin/awk", &["awk", "{print}", "/tmp/data"]), None);
        assert_eq!(
            s("/usr/bin/ls", &["ls", "/tmp/x"]),
            None,
            "not an interpreter"
        );
    }

    #[test]
    fn shells_that_take_commands_from_stdin() {
        for words in [
            &["sh"][..],
            &["sh", "-i"],
            &["bash", "-li"],
            &["sh", "-s", "x"],
            &["bash", "--norc"],
        ] {
            assert!(shell_reads_commands(&argv(words)), "{words:?}");
        }
        for words in [
            &["sh", "-c", "id"][..],
            &["bash", "-ic", "id"],
            &["sh", "x.sh"],
            &["bash", "-e", "/tmp/y"],
        ] {
            assert!(!shell_reads_commands(&argv(words)), "{words:?}");
        }
    }

    #[test]
    fn the_loader_runs_its_first_operand() {
        for name in [
            "ld-linux-x86-64.so.2",
            "ld-linux.so.2",
            "ld-musl-x86_64.so.1",
            "ld.so",
        ] {
            assert!(is_loader(OsStr::new(name)), "{name}");
        }
        for name in ["ld", "ldd", "ld-config", "ldconfig"] {
            assert!(!is_loader(OsStr::new(name)), "{name}");
        }
        let ld = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";
        assert_eq!(
            run(ld, &["ld.so", "--library-path", "/lib", "./x"]),
            Some(("/home/u/x".into(), Via::Loader))
        );
        assert_eq!(
            run(ld, &["ld.so", "--argv0", "sshd", "/tmp/x", "-a"]),
            Some(("/tmp/x".into(), Via::Loader))
        );
        assert_eq!(run(ld, &["ld.so", "--list"]), None);
    }

    #[test]
    fn a_shebang_script_is_the_filename_and_stdin_scripts_are_the_redirected_file() {
        let p = program(
            Path::new("/usr/bin/dash"),
            Path::new("./x.sh"),
            Some(Path::new("/bin/sh")),
            &argv(&["/bin/sh", "./x.sh"]),
            None,
            Some(Path::new("/dev/shm")),
        )
        .expect("script");
        assert_eq!(
            (p.path.as_path(), p.via),
            (Path::new("/dev/shm/x.sh"), Via::Shebang)
        );

        let stdin = |words: &[&str], link: &str| {
            program(
                Path::new("/usr/bin/python3"),
                Path::new("/usr/bin/python3"),
                None,
                &argv(words),
                Some(Path::new(link)),
                None,
            )
            .map(|p| (p.path, p.via))
        };
        assert_eq!(
            stdin(&["python3", "-"], "/tmp/x.py"),
            Some(("/tmp/x.py".into(), Via::Stdin))
        );
        assert_eq!(
            stdin(&["python3"], "/tmp/x.py"),
            Some(("/tmp/x.py".into(), Via::Stdin))
        );
        assert_eq!(stdin(&["python3", "-c", "pass"], "/tmp/x.py"), None);
        assert_eq!(stdin(&["python3"], "pipe:[1234]"), None);
        assert_eq!(stdin(&["python3"], "/dev/pts/3"), None);
        assert_eq!(stdin(&["python3"], "/dev/null"), None);
        let sh = program(
            Path::new("/bin/bash"),
            Path::new("/bin/bash"),
            None,
            &argv(&["bash", "-s", "arg"]),
            Some(Path::new("/var/tmp/x")),
            None,
        );
        assert_eq!(sh.map(|p| p.via), Some(Via::Stdin));
    }
}
