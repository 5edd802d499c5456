//! The guest's initramfs (an uncompressed newc cpio): busybox for /init, this
//! very splitfuzz binary with the shared libraries it loads (at their host
//! paths, so the guest runs exactly the executor the host runs), and the
//! batch's programs.

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// /init: mount what the executor reads, a ramdisk as swap, then the executor.
pub const INIT: &str = r#"#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
$B mount -t debugfs debugfs /sys/kernel/debug
$B mount -t tmpfs tmp /tmp
$B mkdir -p /sys/fs/cgroup
$B mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
$B mkswap /dev/ram0 >/dev/null 2>&1 && $B swapon /dev/ram0
exec /splitfuzz vm guest
"#;

/// A newc cpio archive being written.
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Default for Cpio {
    fn default() -> Self {
        Self::new()
    }
}

impl Cpio {
    pub fn new() -> Cpio {
        Cpio {
            buf: Vec::new(),
            ino: 1,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        let name = name.trim_start_matches('/');
        let hdr = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        self.ino += 1;
        self.buf.extend_from_slice(hdr.as_bytes());
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    pub fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, &[]);
    }

    /// A directory and all its parents (each once).
    pub fn dirs(&mut self, path: &str, made: &mut std::collections::BTreeSet<String>) {
        let mut cur = String::new();
        for part in path.trim_matches('/').split('/').filter(|p| !p.is_empty()) {
            cur.push('/');
            cur.push_str(part);
            if made.insert(cur.clone()) {
                self.dir(&cur);
            }
        }
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100000 | mode, data);
    }

    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120777, target.as_bytes());
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        while self.buf.len() % 512 != 0 {
            self.buf.push(0);
        }
        self.buf
    }
}

/// The shared objects `exe` loads (ldd), with the dynamic loader.
pub fn shared_libs(exe: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(exe)
        .output()
        .context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    if !out.status.success() {
        bail!(
            "ldd {}: {}",
            exe.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut libs = Vec::new();
    for l in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match l.split_once("=>") {
            Some((_, r)) => r.split_whitespace().next(),
            None => l.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// Where busybox-static installs busybox.
pub fn busybox() -> Result<PathBuf> {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        let p = PathBuf::from(p);
        if p.is_file() {
            let libs = shared_libs(&p).unwrap_or_default();
            if libs.is_empty() {
                return Ok(p);
            }
        }
    }
    Err(anyhow!(
        "no statically linked busybox (install busybox-static: scripts/vm-deps.sh)"
    ))
}

/// The whole initramfs: base system + executor + `programs` as /programs.txt.
pub fn build(exe: &Path, programs: &str) -> Result<Vec<u8>> {
    build_with(exe, programs, &[])
}

/// The initramfs with extra executables under /exec/ (their libraries too),
/// listed in /exec.list: the guest runs those instead of programs.
pub fn build_with(exe: &Path, programs: &str, extra: &[PathBuf]) -> Result<Vec<u8>> {
    let mut c = Cpio::new();
    let mut made = std::collections::BTreeSet::new();
    for d in [
        "/bin", "/sbin", "/proc", "/sys", "/dev", "/tmp", "/etc", "/root",
    ] {
        c.dirs(d, &mut made);
    }
    let bb = busybox()?;
    c.file("/bin/busybox", 0o755, &std::fs::read(&bb)?);
    c.symlink("/bin/sh", "busybox");
    c.file("/init", 0o755, INIT.as_bytes());
    c.file(
        "/splitfuzz",
        0o755,
        &std::fs::read(exe).with_context(|| format!("reading {}", exe.display()))?,
    );
    let mut libs: Vec<PathBuf> = shared_libs(exe)?;
    let mut list = String::new();
    if !extra.is_empty() {
        c.dirs("/exec", &mut made);
    }
    for (i, x) in extra.iter().enumerate() {
        let name = format!(
            "{i}-{}",
            x.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default()
        );
        c.file(
            &format!("/exec/{name}"),
            0o755,
            &std::fs::read(x).with_context(|| format!("reading {}", x.display()))?,
        );
        list.push_str(&format!("/exec/{name}\n"));
        for l in shared_libs(x)? {
            if !libs.contains(&l) {
                libs.push(l);
            }
        }
    }
    if !extra.is_empty() {
        c.file(super::protocol::EXEC_LIST, 0o644, list.as_bytes());
    }
    for lib in libs {
        let real = std::fs::canonicalize(&lib).unwrap_or(lib.clone());
        let data = std::fs::read(&real).with_context(|| format!("reading {}", real.display()))?;
        let s = lib.to_string_lossy().to_string();
        if let Some(parent) = Path::new(&s).parent() {
            c.dirs(&parent.to_string_lossy(), &mut made);
        }
        c.file(&s, 0o755, &data);
    }
    c.file(super::protocol::PROGRAMS, 0o644, programs.as_bytes());
    Ok(c.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_entries_are_aligned_and_terminated() {
        let mut c = Cpio::new();
        c.dir("/bin");
        c.file("/x", 0o644, b"hello");
        let b = c.finish();
        assert_eq!(b.len() % 512, 0);
        assert!(b.starts_with(b"070701"));
        let s = String::from_utf8_lossy(&b);
        assert!(s.contains("bin\0"));
        assert!(s.contains("hello"));
        assert!(s.contains("TRAILER!!!"));
        // The file entry's header starts on a 4-byte boundary.
        let pos = s.find("x\0").unwrap() - 110;
        assert_eq!(pos % 4, 0);
        assert_eq!(&b[pos..pos + 6], b"070701");
    }
}
