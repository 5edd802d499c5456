//! The arguments every subcommand shares, and the one way each is checked:
//! program files (text or bytes, `--format`), the policy of a run (`--policy`,
//! `--override`, the program's lines, its crashes/<policy>/ folder),
//! `--geometry`, durations, job counts and writable folders. A bad value is an
//! `Err` with one line that says what is accepted (`main` prints it, exit 2).

use super::warn;
use anyhow::{anyhow, bail, Context, Result};
use splitfuzz::model::policy::{Policy, Preset, SplitCaller};
use splitfuzz::prog::Program;
use splitfuzz::run::RunConfig;
use splitfuzz::Geometry;
use std::path::{Path, PathBuf};
use std::time::Duration;

// ------------------------------------------------------------------ programs

#[derive(clap::Args, Clone, Copy, Debug)]
pub struct FormatArg {
    /// How to read FILE: text (the program format), bytes (raw fuzzer input), or auto:
    /// text when the file is printable UTF-8 with a program line or a `#` comment, else bytes.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Auto,
    Text,
    Bytes,
}

/// The first word of every line of the text form (and `#` comments).
const KEYWORDS: [&str; 27] = [
    "policy",
    "uffd",
    "override",
    "fail",
    "expect",
    "mmap",
    "munmap",
    "mprotect",
    "touch",
    "madvise",
    "fork",
    "exit",
    "pin",
    "unpin",
    "uffd-register",
    "uffd-unregister",
    "pagemap-scan",
    "mlock",
    "munlock",
    "uffd-move",
    "mbind",
    "drop-caches",
    // Removed from the format; a file using it is still a text program (and
    // its parse error names the line).
    "walk",
    "uffd-wp",
    "mremap",
    "reclaim",
    "migrate",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    /// Printable UTF-8 with a line that starts with a keyword or `#`.
    Program,
    /// Printable UTF-8 without any such line.
    OtherText,
    /// Anything else (control bytes, invalid UTF-8, empty).
    Binary,
}

pub fn content(bytes: &[u8]) -> Content {
    let Ok(s) = std::str::from_utf8(bytes) else {
        return Content::Binary;
    };
    if s.trim().is_empty()
        || s.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Content::Binary;
    }
    let program_line = s.lines().any(|l| {
        let t = l.trim_start();
        t.starts_with('#')
            || t.split_whitespace()
                .next()
                .is_some_and(|w| KEYWORDS.contains(&w))
    });
    if program_line {
        Content::Program
    } else {
        Content::OtherText
    }
}

/// Load a program. Text and bytes are told apart by content (not by the file
/// name) unless `format` says which; a file that looks like a program but does
/// not parse is an error naming the line, never decoded as bytes.
pub fn load(path: &Path, format: Format) -> Result<Program> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let kind = content(&bytes);
    let as_text = match format {
        Format::Text => true,
        Format::Bytes => false,
        Format::Auto => kind == Content::Program,
    };
    let prog = if as_text {
        parse_text(path, format, bytes)?
    } else {
        decode_bytes(path, format, kind, &bytes)
    };
    if prog.ops.is_empty() {
        warn(format!(
            "{}: empty program (no ops){}",
            path.display(),
            if as_text {
                ""
            } else {
                ": the bytes decode to a fault plan only"
            }
        ));
    }
    Ok(prog)
}

/// Every file with `load`, in order, each beside its path.
pub fn load_all(files: &[PathBuf], format: Format) -> Result<Vec<(&Path, Program)>> {
    files
        .iter()
        .map(|file| load(file, format).map(|prog| (file.as_path(), prog)))
        .collect()
}

/// `load`'s text case.
fn parse_text(path: &Path, format: Format, bytes: Vec<u8>) -> Result<Program> {
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow!("{}: not UTF-8 text (--format text)", path.display()))?;
    match Program::parse(&text) {
        Ok(p) => Ok(p),
        // A fuzzer input (named .bin by the engines) that happens to look
        // like text: bytes, and said so.
        Err(e) if format == Format::Auto && path.extension().is_some_and(|e| e == "bin") => {
            warn(format!(
                "{}: looks like a text program but does not parse ({e}); named .bin, so decoded as fuzzer bytes (--format text to insist)",
                path.display()
            ));
            Ok(Program::decode(text.as_bytes()))
        }
        Err(e) => bail!(
            "{}: {e}{}",
            path.display(),
            if format == Format::Auto {
                " (read as a text program; --format bytes decodes it as fuzzer bytes)"
            } else {
                ""
            }
        ),
    }
}

/// `load`'s bytes case, with a warning where the file looked like text.
fn decode_bytes(path: &Path, format: Format, kind: Content, bytes: &[u8]) -> Program {
    if format == Format::Auto && kind == Content::OtherText {
        warn(format!(
            "{}: printable text with no program line; decoded as fuzzer bytes (--format text parses it as a program)",
            path.display()
        ));
    }
    if format == Format::Auto
        && kind == Content::Binary
        && path.extension().is_some_and(|e| e == "txt")
    {
        warn(format!(
            "{}: named .txt but not text; decoded as fuzzer bytes",
            path.display()
        ));
    }
    Program::decode(bytes)
}

// ------------------------------------------------------------------ policies

#[derive(clap::Args, Clone)]
pub struct PolicyArgs {
    /// Policy preset: deposit, lazy-v1, lazy-v2, lazy-v3, lazy-fixed, lazy-v4-proposed. Default: the program's
    /// `policy` line, else the crashes/<policy>/ folder the file is in, else lazy-v3.
    #[arg(long, value_name = "POLICY")]
    pub policy: Option<String>,
    /// Change what one split caller does when the split fails: CALLER=STRATEGY, STRATEGY one
    /// of proceed, skip, retry, error (repeatable). CALLER is a split caller (see
    /// `splitfuzz policies`) or a harm site that stands for one (copy_pmd_range = copy_huge_pmd).
    #[arg(long = "override", value_name = "CALLER=STRATEGY")]
    pub overrides: Vec<String>,
    /// PTEs per table: small (8, fast) or kernel (512, as on x86-64).
    #[arg(long, default_value = "small", value_name = "GEOMETRY")]
    pub geometry: String,
}

/// `--geometry`.
pub fn geometry(s: &str) -> Result<Geometry> {
    Geometry::from_name(s).ok_or_else(|| anyhow!("unknown geometry '{s}' (small or kernel)"))
}

/// A policy name (`--policy`, a `policy` line): every preset is listed when
/// it is unknown.
pub fn preset(name: &str) -> Result<Preset> {
    Preset::parse(name).map_err(|e| anyhow!(e))
}

/// Apply `--override`s (or `override` lines) to `p`.
fn apply_overrides<'a>(
    p: &mut Policy,
    overrides: impl IntoIterator<Item = &'a String>,
) -> Result<()> {
    for o in overrides {
        p.apply_override(o).map_err(|e| anyhow!(e))?;
    }
    Ok(())
}

/// The preset `name` with `overrides` applied.
pub fn make_policy<'a>(
    name: &str,
    overrides: impl IntoIterator<Item = &'a String>,
) -> Result<Policy> {
    let mut p = Policy::preset(preset(name)?);
    apply_overrides(&mut p, overrides)?;
    Ok(p)
}

/// `crashes/lazy-v1/x.txt` → the policy `lazy-v1`; a folder named after a policy
/// label with overrides (`lazy-v3+zap_pmd_range=error`) gives them too.
pub fn folder_policy(path: &Path) -> Option<(Preset, Vec<String>, String)> {
    let parent = path.parent()?;
    let name = parent.file_name()?.to_str()?;
    let mut parts = name.split('+');
    // crashes/lazy-v3/ and the fuzz targets' corpus/lazy_v3/ alike.
    let preset = Preset::from_name(&parts.next()?.replace('_', "-"))?;
    let overrides: Vec<String> = parts.map(String::from).collect();
    let mut p = Policy::preset(preset);
    for o in &overrides {
        p.apply_override(o).ok()?;
    }
    Some((preset, overrides, parent.display().to_string()))
}

impl PolicyArgs {
    /// The policy a program runs under and where it came from: --policy, else its
    /// `policy` line, else its crashes/<policy>/ folder, else lazy-v3; then the
    /// folder's, the program's and the command line's overrides.
    pub fn resolve(&self, prog: &Program, file: Option<&Path>) -> Result<(RunConfig, String)> {
        let folder = file.and_then(folder_policy);
        let (preset, folder_overrides, mut source) = if let Some(name) = &self.policy {
            (preset(name)?, vec![], "--policy".to_string())
        } else if let Some(name) = &prog.policy {
            (preset(name)?, vec![], "its `policy` line".to_string())
        } else if let Some((pr, ov, dir)) = folder {
            (pr, ov, format!("the folder {dir}/"))
        } else {
            (
                Preset::LazyV3,
                vec![],
                "the default (no --policy, no `policy` line, not in a <policy>/ folder)"
                    .to_string(),
            )
        };
        let mut pol = Policy::preset(preset);
        for (list, from) in [
            (&folder_overrides, "the folder name"),
            (&prog.overrides, "its `override` lines"),
            (&self.overrides, "--override"),
        ] {
            apply_overrides(&mut pol, list)?;
            if !list.is_empty() {
                source.push_str(&format!("; {} from {from}", list.join(" ")));
            }
        }
        Ok((RunConfig::new(pol, geometry(&self.geometry)?), source))
    }
}

/// Say when an override names a harm site rather than the split caller.
pub fn note_harm_site_overrides(overrides: &[String]) {
    for o in overrides {
        let name = o.split('=').next().unwrap_or("").trim();
        if SplitCaller::from_name(name).is_some() {
            continue;
        }
        if let Some(c) = SplitCaller::for_finding(name) {
            warn(format!(
                "--override {o}: {name} is where the harm appears; the split caller it stands for is {}",
                c.name()
            ));
        }
    }
}

// ------------------------------------------------------------------ the rest

/// A duration option (`what` names it): 30s, 10m, 1h30m, 1d, 500ms or plain
/// seconds; more than 0.
pub fn parse_duration(s: &str, what: &str) -> Result<Duration> {
    let d = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(
            s.parse()
                .map_err(|_| anyhow!("{what}: bad duration '{s}'"))?,
        )
    } else {
        humantime::parse_duration(s).map_err(|e| {
            anyhow!("{what}: bad duration '{s}' ({e}; e.g. 500ms, 30s, 10m, 1h30m, 1d)")
        })?
    };
    if d.is_zero() {
        bail!("{what}: the duration must be more than 0");
    }
    Ok(d)
}

/// `--jobs N`: 1 to 4 per CPU, at most 256.
pub fn jobs(n: usize) -> Result<usize> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let max = (4 * cpus).min(256);
    if n == 0 || n > max {
        bail!("--jobs {n}: give 1 to {max} (4 per CPU on this machine, at most 256)");
    }
    Ok(n)
}

/// A directory that can be written: created if missing; an existing file or an
/// unwritable place is an error before the campaign starts.
pub fn writable_dir(dir: &Path, what: &str) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("{what} {} exists and is not a directory", dir.display());
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the {what} {}", dir.display()))?;
    let probe = dir.join(format!(".splitfuzz-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("cannot write into the {what} {}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use splitfuzz::prog::Expect;

    #[test]
    fn keywords_are_the_first_words_of_the_text_form() {
        // Every line the text form writes starts with a keyword, so `content`
        // recognises every program `to_text` can produce.
        for mut p in splitfuzz::prog::generate::generate(500, 7) {
            p.policy = Some("lazy-v3".into());
            p.overrides = vec!["zap_pmd_range=error".into()];
            p.expect = Some(Expect::Ok);
            let t = p.to_text();
            for l in t.lines() {
                let w = l.split_whitespace().next().unwrap();
                assert!(KEYWORDS.contains(&w), "{w} in {l}");
            }
            assert_eq!(content(t.as_bytes()), Content::Program);
        }
        assert_eq!(content(b""), Content::Binary);
        assert_eq!(content(b"\x00\x01\x02"), Content::Binary);
        assert_eq!(content(b"hello\n"), Content::OtherText);
        assert_eq!(content(b"# only a comment\n"), Content::Program);
    }

    #[test]
    fn folder_names_give_policies() {
        let (p, o, _) = folder_policy(Path::new("crashes/lazy-v1/x.bin")).unwrap();
        assert_eq!((p, o.len()), (Preset::LazyV1, 0));
        let (p, o, _) = folder_policy(Path::new("x/lazy-v3+zap_pmd_range=error/y.txt")).unwrap();
        assert_eq!((p, o), (Preset::LazyV3, vec!["zap_pmd_range=error".into()]));
        assert!(folder_policy(Path::new("tests/x.txt")).is_none());
        assert!(folder_policy(Path::new("lazy-v3+bogus=1/x.txt")).is_none());
    }

    #[test]
    fn unknown_policies_list_every_preset() {
        let e = preset("bogus").unwrap_err().to_string();
        for p in Preset::ALL {
            assert!(e.contains(p.name()), "{e}");
        }
        assert!(make_policy("lazy-v2", &["nope=error".to_string()]).is_err());
    }

    #[test]
    fn durations() {
        let d = |s| parse_duration(s, "--time").unwrap();
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("1d"), Duration::from_secs(86400));
        assert_eq!(d("500ms"), Duration::from_millis(500));
        assert_eq!(d("30s"), Duration::from_secs(30));
        assert_eq!(d("10m"), Duration::from_secs(600));
        assert_eq!(d("45"), Duration::from_secs(45));
        assert!(parse_duration("0s", "--time").is_err());
        assert!(parse_duration("soon", "--time").is_err());
    }
}

/// How `vm run` (and `emit-c`) realise a program's fault plan.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Fault injection through our kernel patch (/sys/kernel/debug/splitfuzz).
    Inject,
    /// A memory-cgroup limit during the ops that hold the planned failures.
    Memcg,
}
