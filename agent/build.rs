//! Compiles the component catalog (`../components/*.yaml`) into the binary.
use std::fmt::Write;

fn main() {
    let dir = std::path::Path::new("../components");
    println!("cargo:rerun-if-changed=../components");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|x| x == "yaml"));
    files.sort();
    let mut out = String::from("&[\n");
    for f in files {
        let abs = std::fs::canonicalize(&f).expect("catalog file");
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        writeln!(
            out,
            "(\"components/{name}\", include_str!({:?})),",
            abs.display().to_string()
        )
        .unwrap();
    }
    out.push(']');
    std::fs::write(
        std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("catalog.rs"),
        out,
    )
    .unwrap();
}
