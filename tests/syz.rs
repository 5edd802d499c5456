//! `emit-syz`: golden files, and a check of the output against syzkaller's
//! own descriptions.
//!
//! Golden: the reproducer and the seed of each lazy-v3 finding that fits
//! syzkaller's data area equal tests/syz/NAME.syz and NAME.seed.syz
//! (SPLITFUZZ_UPDATE_GOLDEN=1 rewrites them).
//!
//! Descriptions (with SPLITFUZZ_SYZKALLER=DIR, a syzkaller checkout; skipped
//! without): syzkaller's own parser (prog.Deserialize) cannot be built here
//! (its go.mod needs Go 1.26 and modules from the Go proxy), so this checks
//! what it would reject, against DIR/sys/linux/*.txt and *.const: every call
//! is declared, with as many arguments as its declaration; a `const[X]`
//! argument has X's amd64 value; a resource argument is a variable an
//! earlier call returned; a `vma`/`vma64` is `&(ADDR/SIZE)=nil` page-aligned
//! inside the 16 MiB data area; a pointer points into the data area, and a
//! struct it points to has as many fields as the struct's declaration
//! (nested structs too), a string the declared value, or it is `0x0` (nil:
//! syzkaller's special pointer 0); the only call property
//! is `fail_nth: N` (N >= 1), and a seed has none.

mod common;

use splitfuzz::syz::{emit_syz, SyzKind, ADDR_BASE, DATA_SIZE};
use splitfuzz::Program;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The lazy-v3 findings, and which of them fit syzkaller's data area.
fn findings() -> Vec<(String, Program)> {
    common::txt_files("crashes/lazy-v3")
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            (
                name,
                Program::parse(&std::fs::read_to_string(&p).unwrap()).unwrap(),
            )
        })
        .collect()
}

fn outputs() -> Vec<(String, SyzKind, String)> {
    let mut v = Vec::new();
    for (name, prog) in findings() {
        let src = format!("crashes/lazy-v3/{name}.txt");
        match emit_syz(&prog, SyzKind::Repro, &src) {
            Ok(t) => {
                v.push((format!("{name}.syz"), SyzKind::Repro, t));
                let s = emit_syz(&prog, SyzKind::Seed, &src).unwrap();
                v.push((format!("{name}.seed.syz"), SyzKind::Seed, s));
            }
            Err(e) => {
                // 8960K..32M: more than the data area holds.
                assert_eq!(name, "no-silent-skip-unmap_source_vma", "{e}");
                assert!(e.contains("data area"), "{e}");
            }
        }
    }
    assert_eq!(v.len(), 6);
    v
}

#[test]
fn emit_syz_matches_the_golden_files() {
    let dir = root().join("tests/syz");
    let update = std::env::var_os("SPLITFUZZ_UPDATE_GOLDEN").is_some();
    for (file, _, text) in outputs() {
        let path = dir.join(&file);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (SPLITFUZZ_UPDATE_GOLDEN=1 writes it)",
                path.display()
            )
        });
        assert_eq!(text, want, "{file} differs from its golden file");
    }
}

/// Split at top-level commas.
fn split_top(s: &str) -> Vec<String> {
    let (mut v, mut cur, mut depth, mut quote) = (Vec::new(), String::new(), 0i32, false);
    for ch in s.chars() {
        match ch {
            '\'' => quote = !quote,
            '(' | '[' | '{' if !quote => depth += 1,
            ')' | ']' | '}' if !quote => depth -= 1,
            ',' if depth == 0 && !quote => {
                v.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        v.push(cur.trim().to_string());
    }
    v
}

struct Descriptions {
    /// call name -> (argument types, returned resource)
    calls: HashMap<String, (Vec<String>, Option<String>)>,
    /// struct name -> field types
    structs: HashMap<String, Vec<String>>,
    consts: HashMap<String, u64>,
    /// resource -> its parent (fd_uffd -> fd)
    resources: HashMap<String, String>,
}

fn load(dir: &Path) -> Descriptions {
    let mut d = Descriptions {
        calls: HashMap::new(),
        structs: HashMap::new(),
        consts: HashMap::new(),
        resources: HashMap::new(),
    };
    let linux = dir.join("sys/linux");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&linux)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(f).unwrap_or_default();
        if name.ends_with(".const") {
            for l in text.lines() {
                let Some((k, v)) = l.split_once(" = ") else {
                    continue;
                };
                let mut val = None;
                for part in v.split(", ") {
                    match part.split_once(':') {
                        Some((arch, x))
                            if arch.split(':').any(|a| a == "amd64") || arch == "amd64" =>
                        {
                            val = x.rsplit(':').next().and_then(|x| x.parse().ok());
                        }
                        None if val.is_none() => val = part.parse().ok(),
                        _ => {}
                    }
                }
                if let Some(v) = val {
                    d.consts.insert(k.to_string(), v);
                }
            }
            continue;
        }
        if !name.ends_with(".txt") {
            continue;
        }
        let mut cur: Option<(String, Vec<String>)> = None;
        for l in text.lines() {
            if let Some((n, fields)) = &mut cur {
                let t = l.trim();
                if t.starts_with('}') {
                    d.structs.insert(n.clone(), std::mem::take(fields));
                    cur = None;
                } else if !t.is_empty() && !t.starts_with('#') {
                    let mut it = t.split_whitespace();
                    let _field = it.next();
                    if let Some(ty) = it.next() {
                        fields.push(ty.to_string());
                    }
                }
                continue;
            }
            if let Some(rest) = l.strip_prefix("resource ") {
                if let Some((n, p)) = rest.split_once('[') {
                    let parent = p.split([']', ':']).next().unwrap_or("").to_string();
                    d.resources.insert(n.trim().to_string(), parent);
                }
                continue;
            }
            if l.ends_with(" {") && !l.starts_with(['\t', ' ', '#']) {
                cur = Some((l.trim_end_matches(" {").trim().to_string(), Vec::new()));
                continue;
            }
            let Some(open) = l.find('(') else { continue };
            let name = &l[..open];
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
            {
                continue;
            }
            // The matching ')' of the argument list.
            let mut depth = 0;
            let mut close = None;
            for (i, ch) in l[open..].char_indices() {
                match ch {
                    '(' | '[' => depth += 1,
                    ')' | ']' => {
                        depth -= 1;
                        if depth == 0 {
                            close = Some(open + i);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let Some(close) = close else { continue };
            let args: Vec<String> = split_top(&l[open + 1..close])
                .iter()
                .map(|a| {
                    a.split_once(' ')
                        .map(|x| x.1.trim().to_string())
                        .unwrap_or_default()
                })
                .collect();
            let ret = l[close + 1..]
                .split_whitespace()
                .next()
                .filter(|r| !r.starts_with('('))
                .map(|r| r.to_string());
            d.calls.insert(name.to_string(), (args, ret));
        }
    }
    d
}

impl Descriptions {
    /// `child` is `parent` or derives from it.
    fn is_a(&self, child: &str, parent: &str) -> bool {
        let mut c = child.to_string();
        for _ in 0..16 {
            if c == parent {
                return true;
            }
            match self.resources.get(&c) {
                Some(p) => c = p.clone(),
                None => return false,
            }
        }
        false
    }
}

fn parse_addr(s: &str) -> Option<(u64, Option<u64>, &str)> {
    let s = s.strip_prefix("&(")?;
    let close = s.find(')')?;
    let (a, size) = match s[..close].split_once('/') {
        Some((a, z)) => (
            a,
            Some(u64::from_str_radix(z.trim_start_matches("0x"), 16).ok()?),
        ),
        None => (&s[..close], None),
    };
    let a = u64::from_str_radix(a.trim_start_matches("0x"), 16).ok()?;
    Some((a, size, &s[close + 1..]))
}

fn int(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

/// Check one argument `v` against its declared type `ty`.
fn check_arg(
    d: &Descriptions,
    ty: &str,
    v: &str,
    vars: &HashMap<String, String>,
) -> Result<(), String> {
    let in_area = |a: u64, size: u64| a >= ADDR_BASE && a + size <= ADDR_BASE + DATA_SIZE;
    let base = ty.split('[').next().unwrap_or(ty);
    match base {
        "vma" | "vma64" => {
            let (a, size, rest) = parse_addr(v).ok_or(format!("vma `{v}` is not &(ADDR/SIZE)"))?;
            let size = size.unwrap_or(0);
            if rest != "=nil" || a % 4096 != 0 || !in_area(a, size) || a - ADDR_BASE >= DATA_SIZE {
                return Err(format!(
                    "vma `{v}`: not a page-aligned range of the data area with =nil"
                ));
            }
            Ok(())
        }
        // A nil pointer is syzkaller's special pointer 0 (target.SpecialPointers[0]).
        "ptr" | "ptr64" if v == "0x0" => Ok(()),
        "ptr" | "ptr64" => {
            let (a, size, rest) = parse_addr(v).ok_or(format!("pointer `{v}`"))?;
            if size.is_some() || !in_area(a, 8) {
                return Err(format!(
                    "pointer `{v}` outside the data area or with a size"
                ));
            }
            let inner = ty[base.len() + 1..ty.len() - 1].to_string();
            let parts = split_top(&inner);
            let elem = parts.get(1).cloned().unwrap_or_default();
            let val = rest
                .strip_prefix('=')
                .ok_or(format!("pointer `{v}` has no value"))?;
            check_arg(d, &elem, val, vars)
        }
        "array" => {
            let body = v
                .strip_prefix('[')
                .and_then(|x| x.strip_suffix(']'))
                .ok_or(format!("array `{v}`"))?;
            let elem = split_top(&ty[6..ty.len() - 1])
                .first()
                .cloned()
                .unwrap_or_default();
            for e in split_top(body) {
                check_arg(d, &elem, &e, vars)?;
            }
            Ok(())
        }
        "string" => {
            let want = ty
                .split('"')
                .nth(1)
                .map(|s| format!("'{s}\\x00'"))
                .unwrap_or_default();
            if want.is_empty() || v == want {
                Ok(())
            } else {
                Err(format!("string `{v}`, declared {ty}"))
            }
        }
        "const" => {
            let name = ty[6..ty.len() - 1].split(',').next().unwrap().trim();
            let want = name
                .parse::<u64>()
                .ok()
                .or_else(|| d.consts.get(name).copied())
                .ok_or(format!("no value for {name}"))?;
            if int(v) == Some(want) {
                Ok(())
            } else {
                Err(format!("`{v}` for {ty} = {want:#x}"))
            }
        }
        "int8" | "int16" | "int32" | "int64" | "intptr" | "flags" | "len" | "bytesize" | "pid" => {
            int(v)
                .map(|_| ())
                .ok_or(format!("`{v}` is not an integer for {ty}"))
        }
        _ if d.structs.contains_key(base) => {
            let fields = &d.structs[base];
            let body = v
                .strip_prefix('{')
                .and_then(|x| x.strip_suffix('}'))
                .ok_or(format!("struct {base}: `{v}`"))?;
            let vals = split_top(body);
            if vals.len() != fields.len() {
                return Err(format!(
                    "struct {base}: {} fields, declared {}",
                    vals.len(),
                    fields.len()
                ));
            }
            for (f, x) in fields.iter().zip(&vals) {
                check_arg(d, f, x, vars).map_err(|e| format!("{base}: {e}"))?;
            }
            Ok(())
        }
        _ if d.resources.contains_key(base) => {
            if let Some(res) = vars.get(v) {
                if d.is_a(res, base) {
                    return Ok(());
                }
                return Err(format!("{v} is a {res}, declared {base}"));
            }
            // A special value (-1).
            if v == "0xffffffffffffffff" {
                Ok(())
            } else {
                Err(format!("`{v}` for resource {base}"))
            }
        }
        _ => Err(format!("type {ty} not checked here")),
    }
}

fn check_program(d: &Descriptions, text: &str, kind: SyzKind) -> Result<usize, String> {
    let mut vars: HashMap<String, String> = HashMap::new();
    let mut n = 0;
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |e: String| format!("line {}: {e}: {line}", ln + 1);
        let (code, _comment) = line
            .split_once(" # ")
            .ok_or_else(|| err("no comment naming our op".into()))?;
        let (var, call) = match code.split_once(" = ") {
            Some((v, c)) if !v.contains('(') => (Some(v.to_string()), c),
            _ => (None, code),
        };
        let open = call.find('(').ok_or_else(|| err("no (".into()))?;
        let name = &call[..open];
        let (types, ret) = d
            .calls
            .get(name)
            .ok_or_else(|| err(format!("unknown call {name}")))?;
        // The argument list's closing parenthesis, then the properties.
        let mut depth = 0;
        let mut close = 0;
        for (i, ch) in call[open..].char_indices() {
            match ch {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let args = split_top(&call[open + 1..close]);
        if args.len() != types.len() {
            return Err(err(format!(
                "{} arguments, declared {}",
                args.len(),
                types.len()
            )));
        }
        for (t, a) in types.iter().zip(&args) {
            check_arg(d, t, a, &vars).map_err(&err)?;
        }
        let props = call[close + 1..].trim();
        if !props.is_empty() {
            let p = props
                .strip_prefix("(fail_nth: ")
                .and_then(|x| x.strip_suffix(')'))
                .ok_or_else(|| err(format!("property `{props}`")))?;
            let nth: u32 = p.parse().map_err(|_| err(format!("fail_nth `{p}`")))?;
            if nth < 1 || kind == SyzKind::Seed {
                return Err(err("fail_nth in a seed, or < 1".into()));
            }
        }
        if let Some(v) = var {
            let r = ret
                .clone()
                .ok_or_else(|| err(format!("{name} returns nothing")))?;
            vars.insert(v, r);
        }
        n += 1;
    }
    Ok(n)
}

#[test]
fn emit_syz_output_is_valid_against_syzkaller_descriptions() {
    let Some(dir) = std::env::var_os("SPLITFUZZ_SYZKALLER").map(PathBuf::from) else {
        println!("SKIPPED: SPLITFUZZ_SYZKALLER (a syzkaller checkout) not set");
        return;
    };
    let d = load(&dir);
    assert!(
        d.calls.len() > 1000,
        "{} calls in {}",
        d.calls.len(),
        dir.display()
    );
    let mut calls = 0;
    for (file, kind, text) in outputs() {
        calls += check_program(&d, &text, kind).unwrap_or_else(|e| panic!("{file}: {e}\n{text}"));
    }
    // Every op kind emit-syz writes, in one program each.
    for (k, t) in [
        "mmap 2M 4M thp\nmunmap 2M 4K\nmprotect 3M 1M r\ntouch 2M 4M write\ntouch 2M 4M read\nmremap 3M 1M 8M",
        "mmap 0 4M thp\nmadvise 0 1M dontneed\nmadvise 0 1M free\nmadvise 0 1M cold\nmadvise 0 1M pageout\nmadvise 0 2M collapse\nmadvise 0 1M guard-install\nmadvise 0 1M guard-remove",
        "mmap 0 4M thp\nmlock 0 1M\nmunlock 0 1M\nmbind 0 2M 1\nmigrate 1M",
        "uffd async\nmmap 0 4M thp\nuffd-register 0 4M\nuffd-wp 0 2M on\nuffd-wp 0 2M off\nuffd-move 2M 0 1M\nuffd-unregister 0 4M\npagemap-scan 0 4M",
    ]
    .iter()
    .enumerate()
    {
        let p = Program::parse(t).unwrap_or_else(|e| panic!("{t}: {e}"));
        let text = emit_syz(&p, SyzKind::Seed, "t").unwrap();
        calls += check_program(&d, &text, SyzKind::Seed).unwrap_or_else(|e| panic!("program {k}: {e}\n{text}"));
    }
    println!("{calls} calls checked against {}", dir.display());
}

#[test]
fn the_checker_rejects_what_syzkaller_would() {
    let Some(dir) = std::env::var_os("SPLITFUZZ_SYZKALLER").map(PathBuf::from) else {
        println!("SKIPPED: SPLITFUZZ_SYZKALLER (a syzkaller checkout) not set");
        return;
    };
    let d = load(&dir);
    let good = "madvise(&(0x7f0000200000/0x200000)=nil, 0x200000, 0x4) # op 0";
    assert!(check_program(&d, good, SyzKind::Seed).is_ok());
    for bad in [
        "madvise(&(0x7f0000200000/0x200000)=nil, 0x200000) # op 0",
        "madvize(&(0x7f0000200000/0x200000)=nil, 0x200000, 0x4) # op 0",
        "madvise(&(0x7f0001200000/0x200000)=nil, 0x200000, 0x4) # op 0",
        "madvise(&(0x7f0000200000/0x200000)=nil, 0x200000, 0x4) (fail_nth: 1) # op 0",
        "ioctl$UFFDIO_UNREGISTER(0xffffffffffffffff, 0x8010aa02, &(0x7f0000000000)={&(0x7f0000200000/0x1000)=nil, 0x1000}) # op 0",
        "r0 = userfaultfd(0x80000) # s\nioctl$UFFDIO_REGISTER(r0, 0xc020aa00, &(0x7f0000000040)={{&(0x7f0000200000/0x1000)=nil, 0x1000}, 0x2}) # op 0",
    ] {
        assert!(check_program(&d, bad, SyzKind::Seed).is_err(), "accepted: {bad}");
    }
}
