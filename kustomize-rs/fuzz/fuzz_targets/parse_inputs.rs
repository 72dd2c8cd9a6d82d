//! Fuzzes everything that reads untrusted text: YAML documents, kustomization files, patches
//! (strategic merge and JSON 6902), and a strategic merge of one document into another. None
//! of it may panic; errors are fine. Run: `cargo fuzz run parse_inputs` in kustomize-rs/.
#![no_main]

use kustomize_rs::yaml::{parse_documents, to_yaml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(docs) = parse_documents(text) else { return };
    for d in &docs {
        let _ = to_yaml(d);
        let _ = kustomize_rs::kustfile::parse(d, "kustomization.yaml");
    }
    let _ = kustomize_rs::transformers::patch::parse_patch(text, "fuzz");
    if let [a, b, ..] = docs.as_slice() {
        let _ = kustomize_rs::smp::merge_resource(a, b);
        if let kustomize_rs::yaml::Value::Seq(ops) = b {
            let mut a = a.clone();
            let _ = kustomize_rs::transformers::patch::apply_json_patch(&mut a, ops);
        }
    }
});
