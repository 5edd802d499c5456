//! Collects the names of the model's coverage points: every `cov!(k, "name")`
//! literal under src/. `splitfuzz::coverage` maps the bitmap back to them, so
//! the coverage table names kernel functions and lists branches never reached.

use std::path::Path;

fn scan(dir: &Path, names: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            scan(&p, names);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let mut rest = text.as_str();
            while let Some(i) = rest.find("cov!(") {
                rest = &rest[i + 5..];
                // The name is the first string literal before the closing paren.
                let end = rest.find(')').unwrap_or(rest.len());
                let args = &rest[..end];
                if let Some(q) = args.find('"') {
                    if let Some(q2) = args[q + 1..].find('"') {
                        names.push(args[q + 1..q + 1 + q2].to_string());
                    }
                }
            }
        }
    }
}

fn main() {
    println!("cargo:rerun-if-changed=src");
    let mut names = Vec::new();
    scan(Path::new("src"), &mut names);
    names.sort();
    names.dedup();
    let mut out = String::from("&[\n");
    for n in &names {
        out.push_str(&format!("    {n:?},\n"));
    }
    out.push_str("]\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("cov_names.rs");
    std::fs::write(dest, out).unwrap();
}
