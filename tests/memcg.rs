//! The memcg trigger's model side (src/memcg.rs): which ops a plan limits, and
//! what the model predicts at the limit.

use splitfuzz::memcg;
use splitfuzz::{Policy, Program};

fn load(path: &str) -> (Program, Policy) {
    let text = std::fs::read_to_string(path).unwrap();
    let p = Program::parse(&text).unwrap();
    let pol = Policy::preset(splitfuzz::Preset::from_name(p.policy.as_deref().unwrap_or("deposit")).unwrap());
    (p, pol)
}

#[test]
fn show() {
    for f in std::fs::read_dir("crashes/lazy-v3").unwrap().chain(std::fs::read_dir("tests/programs/deposit").unwrap()) {
        let f = f.unwrap().path();
        if f.extension().is_none_or(|e| e != "txt") { continue; }
        let (p, pol) = load(f.to_str().unwrap());
        let r = memcg::realise(&p, &pol, (7, 2));
        eprintln!("== {}: {} | inexpr: {:?} | keeps {:?}", f.display(), r.summary(), r.inexpressible, r.keeps_finding());
    }
}
