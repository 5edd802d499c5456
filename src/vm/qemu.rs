//! QEMU: boot a guest kernel with an initramfs, two serial ports to files
//! (console, data channel), and read the data channel's new lines.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct VmOptions {
    pub kernel: PathBuf,
    /// The splitfuzz binary the guest runs (this executable for the CLI).
    pub exe: PathBuf,
    pub timeout: u64,
    pub smp: u32,
    pub memory: String,
    pub kvm: bool,
    pub verbose: bool,
    pub keep: Option<PathBuf>,
}

pub struct Session {
    pub child: Child,
    pub data: PathBuf,
    pub console: PathBuf,
    pub data_off: u64,
    pub partial: String,
    pub last_data: Instant,
}

impl Session {
    /// New complete lines on the data channel.
    pub fn lines(&mut self) -> Vec<String> {
        let mut f = match std::fs::File::open(&self.data) {
            Ok(f) => f,
            Err(_) => return Vec::new(),
        };
        use std::io::Seek;
        if f.seek(std::io::SeekFrom::Start(self.data_off)).is_err() {
            return Vec::new();
        }
        let mut b = Vec::new();
        let _ = f.read_to_end(&mut b);
        if b.is_empty() {
            return Vec::new();
        }
        self.data_off += b.len() as u64;
        self.last_data = Instant::now();
        self.partial.push_str(&String::from_utf8_lossy(&b));
        let mut out = Vec::new();
        while let Some(i) = self.partial.find('\n') {
            let l: String = self.partial.drain(..=i).collect();
            out.push(l.trim_end_matches(['\n', '\r']).to_string());
        }
        out
    }

    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn console(&self) -> String {
        std::fs::read(&self.console)
            .map(|b| String::from_utf8_lossy(&b).to_string())
            .unwrap_or_default()
    }
}

/// Run folders (`cache/run/<pid>`, `exec-<pid>`) of `vm run`s that are gone.
pub fn remove_stale_run_dirs() {
    let Ok(rd) = std::fs::read_dir(super::build::cache_dir().join("run")) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Ok(pid) = name.trim_start_matches("exec-").parse::<i32>() else {
            continue;
        };
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

pub fn qemu_binary() -> Result<PathBuf> {
    for p in [
        "/usr/bin/qemu-system-x86_64",
        "/usr/local/bin/qemu-system-x86_64",
    ] {
        if Path::new(p).is_file() {
            return Ok(PathBuf::from(p));
        }
    }
    bail!("qemu-system-x86_64 is not installed: run scripts/vm-deps.sh")
}

pub fn boot(
    o: &VmOptions,
    dir: &Path,
    initrd: &Path,
    start: usize,
    boot_no: usize,
) -> Result<Session> {
    spawn(o, dir, initrd, &format!("sfstart={start}"), None, boot_no)
}

/// Boot for `vm fuzz`: the data channel (the second serial port) is a Unix
/// socket QEMU serves, both ways: the guest's executor reads programs from
/// it, and a thread here copies what the guest writes to the data log, which
/// `Session::lines` reads as for a batch. (A third serial port would share
/// the console's ISA interrupt line, IRQ 4, and lose its input interrupts.)
pub fn boot_stream(
    o: &VmOptions,
    dir: &Path,
    initrd: &Path,
    boot_no: usize,
) -> Result<(Session, std::os::unix::net::UnixStream)> {
    let sock = dir.join(format!("data.{boot_no}.sock"));
    let _ = std::fs::remove_file(&sock);
    let mut s = spawn(o, dir, initrd, "sfstream=1", Some(&sock), boot_no)?;
    let t0 = Instant::now();
    loop {
        match std::os::unix::net::UnixStream::connect(&sock) {
            Ok(c) => {
                let mut rd = c.try_clone()?;
                let mut log = std::fs::File::create(&s.data)?;
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut rd, &mut log);
                });
                return Ok((s, c));
            }
            Err(e) => {
                if s.exited() || t0.elapsed() > std::time::Duration::from_secs(30) {
                    s.kill();
                    bail!(
                        "cannot connect to the guest's input {}: {e}",
                        sock.display()
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

fn spawn(
    o: &VmOptions,
    dir: &Path,
    initrd: &Path,
    extra: &str,
    input: Option<&Path>,
    boot_no: usize,
) -> Result<Session> {
    let data = dir.join(format!("data.{boot_no}.log"));
    let console = dir.join(format!("console.{boot_no}.log"));
    let append = format!(
        "console=ttyS0 nokaslr numa=fake=2 oops=panic panic=-1 softlockup_panic=1 rdinit=/init {extra} sftimeout={}",
        o.timeout
    );
    let mut cmd = Command::new(qemu_binary()?);
    cmd.args(["-nodefaults", "-display", "none", "-no-reboot"])
        .args(["-m", &o.memory, "-smp", &o.smp.to_string()])
        .arg("-kernel")
        .arg(&o.kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", &append])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-serial");
    match input {
        None => cmd.arg(format!("file:{}", data.display())),
        Some(sock) => cmd.arg("chardev:sfdata").arg("-chardev").arg(format!(
            "socket,id=sfdata,path={},server=on,wait=off",
            sock.display()
        )),
    };
    if o.kvm {
        cmd.args(["-accel", "kvm", "-cpu", "host"]);
    } else {
        cmd.args(["-accel", "tcg", "-cpu", "max"]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // QEMU dies with this process.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().context("starting qemu-system-x86_64")?;
    Ok(Session {
        child,
        data,
        console,
        data_off: 0,
        partial: String::new(),
        last_data: Instant::now(),
    })
}
