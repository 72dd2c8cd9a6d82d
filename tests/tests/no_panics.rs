//! Mutation smoke test for the parsers (the deterministic cousin of the cargo-fuzz target in
//! `kustomize-rs/fuzz`): every kustomization, resource and patch file of the conformance
//! corpus is truncated, spliced and byte-flipped, and every variant must parse or fail
//! without panicking.

use kustomize_rs::yaml::{parse_documents, to_yaml};
use stackwave_tests::shared_or_skip;

fn files(dir: &std::path::Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            if let Ok(t) = std::fs::read_to_string(&p) {
                out.push(t);
            }
        }
    }
}

/// xorshift64*, so the test is repeatable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn exercise(text: &str) {
    if let Ok(docs) = parse_documents(text) {
        for d in &docs {
            let _ = to_yaml(d);
            let _ = kustomize_rs::kustfile::parse(d, "kustomization.yaml");
        }
        if let [a, b, ..] = docs.as_slice() {
            let _ = kustomize_rs::smp::merge_resource(a, b);
        }
    }
    let _ = kustomize_rs::transformers::patch::parse_patch(text, "mutated");
}

#[test]
fn mutated_inputs_never_panic() {
    let Some(shared) = shared_or_skip("mutated_inputs_never_panic") else {
        return;
    };
    let mut corpus = Vec::new();
    files(&shared.join("corpus/kustomize/cases"), &mut corpus);
    corpus.retain(|t| t.len() < 20_000);
    assert!(corpus.len() > 300, "corpus too small: {}", corpus.len());
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let mut variants = 0;
    for (i, t) in corpus.iter().enumerate() {
        let b = t.as_bytes();
        for _ in 0..6 {
            let mut m = b.to_vec();
            match rng.next() % 4 {
                0 => m.truncate((rng.next() as usize) % (b.len() + 1)),
                1 => {
                    for _ in 0..4 {
                        if !m.is_empty() {
                            let k = (rng.next() as usize) % m.len();
                            m[k] = b" :-[]{}|>&*!'\"#\n\t"[(rng.next() % 17) as usize];
                        }
                    }
                }
                2 => {
                    let other =
                        corpus[(i + 1 + (rng.next() as usize) % 7) % corpus.len()].as_bytes();
                    let cut = (rng.next() as usize) % (m.len() + 1);
                    m.truncate(cut);
                    m.extend_from_slice(&other[(rng.next() as usize) % (other.len() + 1)..]);
                }
                _ => {
                    let at = (rng.next() as usize) % (m.len() + 1);
                    m.splice(at..at, b"\n  - $patch: delete\n<<: *x\n".iter().copied());
                }
            }
            let text = String::from_utf8_lossy(&m);
            exercise(&text);
            variants += 1;
        }
    }
    println!("{variants} mutated inputs parsed or rejected without a panic");
}
