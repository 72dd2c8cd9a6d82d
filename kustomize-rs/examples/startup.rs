//! Prints how long the one-time initialisations take (embedded schema, field-spec tables).
fn main() {
    let t = std::time::Instant::now();
    let _ = kustomize_rs::openapi::is_cluster_scoped("v1", "Namespace");
    println!("openapi init: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let _ = kustomize_rs::fieldspec::TransformerConfig::defaults();
    println!("field specs init: {:?}", t.elapsed());
}
