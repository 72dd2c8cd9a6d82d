//! Content digests (sha256, lowercase hex) shared by the pipeline stages: the Git source
//! names exported trees by them, the render stage names charts, Secret values and recorded
//! reads by them. One home, so `source` and `render` need not import each other for it.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Lowercase hex of bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// sha256 of bytes, as lowercase hex.
pub fn sha256_hex(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

/// sha256 over a directory's files (relative paths and contents, in sorted path order);
/// unreadable entries are skipped, a missing directory digests as empty.
pub fn dir_digest(dir: &Path) -> String {
    fn walk(base: &Path, d: &Path, h: &mut Sha256) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(base, &p, h);
            } else if let Ok(b) = std::fs::read(&p) {
                h.update(
                    p.strip_prefix(base)
                        .unwrap_or(&p)
                        .to_string_lossy()
                        .as_bytes(),
                );
                h.update([0]);
                h.update((b.len() as u64).to_le_bytes());
                h.update(&b);
            }
        }
    }
    let mut h = Sha256::new();
    walk(dir, dir, &mut h);
    hex(&h.finalize())
}
