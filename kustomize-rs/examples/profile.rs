//! Builds one directory many times (for profiling): `profile DIR [N]`.
fn main() {
    let mut a = std::env::args().skip(1);
    let dir = a.next().unwrap_or_else(|| ".".into());
    let n: usize = a.next().and_then(|x| x.parse().ok()).unwrap_or(200);
    let t = std::time::Instant::now();
    for _ in 0..n {
        kustomize_rs::build_dir(std::path::Path::new(&dir), &Default::default()).expect("build");
    }
    println!("{:?}/build", t.elapsed() / n as u32);
}
