//! `splitfuzz vm build`: a guest kernel from the pinned Debian source (or a
//! user's tree), `make tinyconfig` + `kernel/config.fragment`, with every patch
//! of `kernel/patches/` (our fault-plan interface) and the user's `--patch`es.
//!
//! Cache (`SPLITFUZZ_CACHE`, default `~/.cache/splitfuzz`):
//! * `src/linux-source-7.2-<version>/`: the unpacked pinned source (scripts/vm-fetch.sh);
//! * `build/<source>/src`: a hard-linked copy of the source with the patches
//!   applied (GNU patch replaces a file rather than writing through the link, so
//!   the original tree is never changed), `build/<source>/obj`: the `O=` build;
//! * `kernels/<key>/{bzImage,System.map,config,info.txt}`: the result, keyed by
//!   source identity + config fragment + patches (FNV-1a 64 of all three).

use anyhow::{anyhow, bail, Context, Result};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The pinned source package.
pub const PINNED_PKG: &str = "linux-source-7.2";
pub const PINNED_VERSION: &str = "7.2.13-1";

pub const CONFIG_FRAGMENT: &str = include_str!("../../kernel/config.fragment");
/// Our patches, applied to every kernel `vm build` makes, in this order.
pub const OUR_PATCHES: &[(&str, &str)] = &[
    (
        "0001-splitfuzz-fail-plans.patch",
        include_str!("../../kernel/patches/0001-splitfuzz-fail-plans.patch"),
    ),
    (
        "0002-splitfuzz-kcov-scope.patch",
        include_str!("../../kernel/patches/0002-splitfuzz-kcov-scope.patch"),
    ),
];
const FETCH_SCRIPT: &str = include_str!("../../scripts/vm-fetch.sh");

/// The cache root.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SPLITFUZZ_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache/splitfuzz")
}

/// FNV-1a 64: a cache key, not a security boundary.
pub fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        // Separator so ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Where a source tree comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// The pinned Debian package (version).
    Pinned(String),
    /// A user's tree.
    Tree(PathBuf),
}

impl Source {
    fn slug(&self) -> String {
        match self {
            Source::Pinned(v) => format!("debian-{v}"),
            Source::Tree(p) => format!(
                "tree-{}-{:012x}",
                p.file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default(),
                fnv(&[p.as_os_str().as_encoded_bytes()]) & 0xffff_ffff_ffff
            ),
        }
    }
}

/// The key of a kernel: source identity + fragment + every patch.
pub fn kernel_key(source_id: &str, user_patches: &[(String, String)]) -> String {
    let mut parts: Vec<&[u8]> = vec![source_id.as_bytes(), CONFIG_FRAGMENT.as_bytes()];
    for (n, t) in OUR_PATCHES {
        parts.push(n.as_bytes());
        parts.push(t.as_bytes());
    }
    for (n, t) in user_patches {
        parts.push(n.as_bytes());
        parts.push(t.as_bytes());
    }
    format!("{:016x}", fnv(&parts))
}

fn pinned_id(version: &str) -> String {
    format!("debian:{PINNED_PKG}={version}")
}

/// The kernel `vm build` makes with no arguments, if it is in the cache.
pub fn default_kernel() -> Option<PathBuf> {
    let k = cache_dir()
        .join("kernels")
        .join(kernel_key(&pinned_id(PINNED_VERSION), &[]))
        .join("bzImage");
    k.is_file().then_some(k)
}

/// A content fingerprint of a user's tree: every source file's path, size and
/// mtime (build outputs excluded), plus `git rev-parse HEAD` when it is a repository.
fn tree_fingerprint(dir: &Path) -> Result<String> {
    let out = Command::new("find")
        .arg(".")
        .args([
            "(",
            "-name",
            ".git",
            "-o",
            "-name",
            "*.o",
            "-o",
            "-name",
            "*.cmd",
            "-o",
            "-name",
            "*.a",
            "-o",
            "-name",
            "*.ko",
            ")",
            "-prune",
            "-o",
            "-type",
            "f",
            "-printf",
            "%P %s %T@\n",
        ])
        .current_dir(dir)
        .output()
        .with_context(|| format!("listing {}", dir.display()))?;
    if !out.status.success() {
        bail!("cannot list {}", dir.display());
    }
    let mut lines: Vec<&[u8]> = out.stdout.split(|&c| c == b'\n').collect();
    lines.sort_unstable();
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dir)
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    lines.push(head.as_bytes());
    Ok(format!("{:016x}", fnv(&lines)))
}

fn make_version(src: &Path) -> String {
    Command::new("make")
        .args(["-s", "kernelversion"])
        .current_dir(src)
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

pub struct BuildOptions {
    pub source: Option<PathBuf>,
    pub patches: Vec<PathBuf>,
    pub allow_newer: bool,
    pub jobs: usize,
    pub progress: bool,
}

fn need_tools() -> Result<()> {
    let missing: Vec<&str> = ["make", "gcc", "flex", "bison", "bc", "patch", "perl"]
        .into_iter()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    let libelf =
        Path::new("/usr/include/libelf.h").exists() || Path::new("/usr/include/gelf.h").exists();
    let ssl = Path::new("/usr/include/openssl/ssl.h").exists();
    if !missing.is_empty() || !libelf || !ssl {
        let mut m = missing.join(", ");
        if !libelf {
            m.push_str(" libelf-dev");
        }
        if !ssl {
            m.push_str(" libssl-dev");
        }
        bail!("missing build tools ({}): run scripts/vm-deps.sh", m.trim());
    }
    Ok(())
}

fn fetch_pinned(allow_newer: bool) -> Result<(PathBuf, String)> {
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(FETCH_SCRIPT).arg("vm-fetch");
    if allow_newer {
        cmd.arg("--allow-newer");
    }
    cmd.env("SPLITFUZZ_CACHE", cache_dir());
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("running the fetch script (bash)")?;
    if !out.status.success() {
        bail!("fetching {PINNED_PKG}={PINNED_VERSION} failed (see above)");
    }
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    let dir = PathBuf::from(&path);
    let version = std::fs::read_to_string(dir.join(".unpacked"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| PINNED_VERSION.to_string());
    if !dir.join("Makefile").is_file() {
        bail!("the fetch script gave {path}, which is not a kernel tree");
    }
    Ok((dir, version))
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("{what}: cannot start"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let so = String::from_utf8_lossy(&out.stdout);
        let tail: Vec<&str> = so.lines().chain(err.lines()).collect();
        let tail = tail[tail.len().saturating_sub(15)..].join("\n");
        bail!("{what} failed:\n{tail}");
    }
    Ok(())
}

/// Files a unified diff touches (`+++ b/path`).
fn patched_files(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("+++ "))
        .map(|l| l.split(['\t', ' ']).next().unwrap_or(""))
        .filter(|p| *p != "/dev/null")
        .map(|p| p.split_once('/').map(|x| x.1).unwrap_or(p).to_string())
        .collect()
}

/// Make `work/src` a patched copy of `orig`. Returns nothing; records what was
/// applied in `work/applied.txt` and touches every file the previous or the new
/// patch set changed, so the incremental build recompiles exactly those.
fn prepare_tree(orig: &Path, work: &Path, ident: &str, patches: &[(String, String)]) -> Result<()> {
    let src = work.join("src");
    let stamp = work.join("applied.txt");
    let mut want = format!("source {ident}\n");
    let mut touched: Vec<String> = Vec::new();
    for (n, t) in patches {
        let _ = writeln!(want, "patch {n} {:016x}", fnv(&[t.as_bytes()]));
        touched.extend(patched_files(t));
    }
    let have = std::fs::read_to_string(&stamp).unwrap_or_default();
    if src.is_dir()
        && have
            .lines()
            .filter(|l| !l.starts_with("file "))
            .collect::<Vec<_>>()
            == want.lines().collect::<Vec<_>>()
    {
        return Ok(());
    }
    let old_touched: Vec<String> = have
        .lines()
        .filter_map(|l| l.strip_prefix("file "))
        .map(String::from)
        .collect();
    if src.exists() {
        std::fs::remove_dir_all(&src).with_context(|| format!("removing {}", src.display()))?;
    }
    std::fs::create_dir_all(work)?;
    eprintln!(
        "vm build: linking a copy of {} into {}",
        orig.display(),
        src.display()
    );
    let linked = Command::new("cp")
        .arg("-al")
        .arg(orig)
        .arg(&src)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !linked {
        let _ = std::fs::remove_dir_all(&src);
        run(
            Command::new("cp").arg("-a").arg(orig).arg(&src),
            "copying the source tree",
        )?;
    }
    if src.join(".config").exists() || src.join("include/config").exists() {
        eprintln!("vm build: the tree was built in place; make mrproper in the copy");
        run(
            Command::new("make")
                .args(["-s", "mrproper"])
                .current_dir(&src),
            "make mrproper (in the copy)",
        )?;
    }
    for (n, t) in patches {
        eprintln!("vm build: applying {n}");
        let mut child = Command::new("patch")
            .args(["-p1", "--forward", "--batch", "--no-backup-if-mismatch"])
            .current_dir(&src)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running patch")?;
        {
            use std::io::Write;
            let mut si = child.stdin.take().unwrap();
            si.write_all(t.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "{n} does not apply to {}:\n{}{}",
                orig.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // Files patched before (now restored to their older originals) or now.
    let now = std::time::SystemTime::now();
    for f in old_touched.iter().chain(touched.iter()) {
        let p = src.join(f);
        if p.is_file() {
            // Break the hard link first so touching does not change the original.
            let data = std::fs::read(&p)?;
            std::fs::remove_file(&p)?;
            std::fs::write(&p, data)?;
            let _ = std::fs::File::options()
                .write(true)
                .open(&p)
                .and_then(|fh| fh.set_modified(now));
        }
    }
    let mut rec = want;
    for f in touched {
        let _ = writeln!(rec, "file {f}");
    }
    std::fs::write(&stamp, rec)?;
    Ok(())
}

/// Every `CONFIG_X=v` line of the fragment must be in the final .config.
pub fn check_config(config: &str) -> Vec<String> {
    let have: std::collections::BTreeSet<&str> = config.lines().map(str::trim).collect();
    CONFIG_FRAGMENT
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_"))
        .filter(|l| !have.contains(l))
        .map(String::from)
        .collect()
}

/// Build (or find in the cache) a kernel; returns its bzImage.
pub fn build(o: &BuildOptions) -> Result<PathBuf> {
    let cache = cache_dir();
    let mut user_patches = Vec::new();
    for p in &o.patches {
        let t = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        user_patches.push((name, t));
    }
    let (orig, source, ident) = match &o.source {
        Some(dir) => {
            let dir = dir
                .canonicalize()
                .with_context(|| format!("--source {}", dir.display()))?;
            if !dir.join("Makefile").is_file() || !dir.join("mm").is_dir() {
                bail!("--source {}: not a Linux source tree", dir.display());
            }
            let fp = tree_fingerprint(&dir)?;
            let id = format!("tree:{}:{}:{fp}", dir.display(), make_version(&dir));
            (dir.clone(), Source::Tree(dir), id)
        }
        None => {
            let key = kernel_key(&pinned_id(PINNED_VERSION), &user_patches);
            let done = cache.join("kernels").join(&key).join("bzImage");
            if done.is_file() && !o.allow_newer {
                eprintln!("vm build: cached ({PINNED_PKG} {PINNED_VERSION}, key {key})");
                return Ok(done);
            }
            let (dir, v) = fetch_pinned(o.allow_newer)?;
            (dir, Source::Pinned(v.clone()), pinned_id(&v))
        }
    };
    let key = kernel_key(&ident, &user_patches);
    let out_dir = cache.join("kernels").join(&key);
    let bz = out_dir.join("bzImage");
    if bz.is_file() {
        eprintln!("vm build: cached (key {key})");
        return Ok(bz);
    }
    need_tools()?;
    let work = cache.join("build").join(source.slug());
    let mut patches: Vec<(String, String)> = OUR_PATCHES
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    patches.extend(user_patches.iter().cloned());
    prepare_tree(&orig, &work, &ident, &patches)?;
    let src = work.join("src");
    let obj = work.join("obj");
    std::fs::create_dir_all(&obj)?;
    let frag = work.join("config.fragment");
    std::fs::write(&frag, CONFIG_FRAGMENT)?;
    let objarg = format!("O={}", obj.display());
    eprintln!("vm build: configuring (tinyconfig + kernel/config.fragment)");
    run(
        Command::new("make")
            .args(["-s", &objarg, "tinyconfig"])
            .current_dir(&src),
        "make tinyconfig",
    )?;
    run(
        Command::new(src.join("scripts/kconfig/merge_config.sh"))
            .arg("-m")
            .arg("-O")
            .arg(&obj)
            .arg(obj.join(".config"))
            .arg(&frag)
            .current_dir(&src),
        "merge_config.sh",
    )?;
    run(
        Command::new("make")
            .args(["-s", &objarg, "olddefconfig"])
            .current_dir(&src),
        "make olddefconfig",
    )?;
    let config = std::fs::read_to_string(obj.join(".config"))?;
    let missing = check_config(&config);
    if !missing.is_empty() {
        bail!(
            "the kernel configuration lacks {} (is kernel/patches/ applied? does this tree know these options?)",
            missing.join(" ")
        );
    }
    make_bzimage(&src, &obj, &work, o)?;
    let built = obj.join("arch/x86/boot/bzImage");
    std::fs::create_dir_all(&out_dir)?;
    std::fs::copy(&built, &bz)?;
    std::fs::copy(obj.join("System.map"), out_dir.join("System.map"))?;
    std::fs::copy(obj.join(".config"), out_dir.join("config"))?;
    let release = std::fs::read_to_string(obj.join("include/config/kernel.release"))
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut info = format!("key {key}\nsource {ident}\nrelease {release}\n");
    for (n, t) in &patches {
        let _ = writeln!(info, "patch {n} {:016x}", fnv(&[t.as_bytes()]));
    }
    std::fs::write(out_dir.join("info.txt"), info)?;
    Ok(bz)
}

fn make_bzimage(src: &Path, obj: &Path, work: &Path, o: &BuildOptions) -> Result<()> {
    let objarg = format!("O={}", obj.display());
    let count_file = work.join("units.txt");
    // Compile units of the last build of this tree (an estimate for a fresh one).
    let expected: u64 = std::fs::read_to_string(&count_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(900);
    let jobs = o.jobs.max(1).to_string();
    let mut child = Command::new("nice")
        .args(["-n", "10", "make", &objarg, "-j", &jobs, "bzImage"])
        .current_dir(src)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running make")?;
    let stderr = child.stderr.take().unwrap();
    let err_thread = std::thread::spawn(move || {
        let mut v: Vec<String> = Vec::new();
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            v.push(l);
            if v.len() > 400 {
                v.drain(..200);
            }
        }
        v
    });
    let bar = if o.progress {
        let b = indicatif::ProgressBar::new(expected);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "vm build [{elapsed_precise}] {bar:30} {pos}/{len} {wide_msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let t0 = std::time::Instant::now();
    let mut units = 0u64;
    let mut last_report = 0u64;
    for l in BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        let t = l.trim_start();
        if t.starts_with("CC ") || t.starts_with("AS ") {
            units += 1;
            let name = t.split_whitespace().nth(1).unwrap_or("");
            match &bar {
                Some(b) => {
                    if units > b.length().unwrap_or(0) {
                        b.set_length(units + 50);
                    }
                    b.set_position(units);
                    b.set_message(name.to_string());
                }
                None => {
                    if units >= last_report + 200 {
                        last_report = units;
                        eprintln!(
                            "vm build: {units} units compiled (of ~{expected}), {}s, now {name}",
                            t0.elapsed().as_secs()
                        );
                    }
                }
            }
        }
    }
    let st = child.wait()?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let err = err_thread.join().unwrap_or_default();
    if !st.success() {
        let tail = err[err.len().saturating_sub(30)..].join("\n");
        return Err(anyhow!("make bzImage failed:\n{tail}"));
    }
    if units > 200 {
        let _ = std::fs::write(&count_file, units.to_string());
    }
    eprintln!(
        "vm build: make bzImage done in {}s ({units} units compiled)",
        t0.elapsed().as_secs()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_change_with_every_input() {
        let a = kernel_key("debian:x=1", &[]);
        assert_eq!(a, kernel_key("debian:x=1", &[]));
        assert_ne!(a, kernel_key("debian:x=2", &[]));
        assert_ne!(a, kernel_key("debian:x=1", &[("p".into(), "diff".into())]));
        assert_ne!(fnv(&[b"ab", b"c"]), fnv(&[b"a", b"bc"]));
    }

    #[test]
    fn patch_file_list() {
        let t =
            "--- a/mm/memory.c\t2020\n+++ b/mm/memory.c\t2021\n@@\n--- /dev/null\n+++ b/mm/new.c\n";
        assert_eq!(patched_files(t), vec!["mm/memory.c", "mm/new.c"]);
    }

    #[test]
    fn fragment_options_are_checked() {
        let missing = check_config("CONFIG_64BIT=y\n");
        assert!(missing.contains(&"CONFIG_SPLITFUZZ_FAIL=y".to_string()));
        assert!(!missing.contains(&"CONFIG_64BIT=y".to_string()));
        let all: String = CONFIG_FRAGMENT
            .lines()
            .filter(|l| l.starts_with("CONFIG_"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(check_config(&all).is_empty());
    }
}
