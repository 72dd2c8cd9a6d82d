//! `kustomize`: the lean command-line front of the engine — `kustomize build DIR` prints what
//! `kubectl kustomize DIR` (kustomize v5.8.1) prints.
//!
//! It links only the engine (no Git, Kubernetes client, async runtime or Helm), so a build
//! costs what the kustomization needs and not the start-up of the whole `stackwave` agent;
//! `stackwave kustomize build` is the same engine with `--enable-helm` on top.
//!
//! Usage: `kustomize build [DIR] [--load-restrictor LoadRestrictionsRootOnly|LoadRestrictionsNone]
//! [--reorder legacy|none] [--cache-dir DIR] [--offline]` (flags also as `--flag=value`).
//! Exit status 0 with the YAML on stdout, 1 with `Error: ...` on stderr, 2 on bad usage.

use kustomize_rs::{LoadRestrictor, Options, Reorder};
use std::io::Write;
use std::path::PathBuf;

const USAGE: &str = "usage: kustomize build [DIR] [--load-restrictor LoadRestrictionsRootOnly|LoadRestrictionsNone] [--reorder legacy|none] [--cache-dir DIR] [--offline]";

/// A command line that cannot be run, with the reason.
#[derive(Debug)]
struct Usage(String);

/// Parses `build ...` into the directory and the build options.
fn parse(args: &[String]) -> Result<(PathBuf, Options), Usage> {
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("build") => {}
        Some(other) => return Err(Usage(format!("unknown command {other:?}"))),
        None => return Err(Usage("missing command".into())),
    }
    let mut dir: Option<PathBuf> = None;
    let mut opts = Options::default();
    opts.remote.cache_dir = kustomize_rs::fs::default_cache_dir();
    opts.remote.timeout = std::time::Duration::from_secs(30);
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| Usage(format!("{name} needs a value")))
        };
        match flag {
            "--load-restrictor" => {
                opts.load_restrictor = match value(flag)?.as_str() {
                    "LoadRestrictionsRootOnly" | "rootOnly" => LoadRestrictor::RootOnly,
                    "LoadRestrictionsNone" | "none" => LoadRestrictor::None,
                    v => return Err(Usage(format!("unknown --load-restrictor {v:?}"))),
                }
            }
            "--reorder" => {
                opts.reorder = Some(match value(flag)?.as_str() {
                    "legacy" => Reorder::Legacy,
                    "none" => Reorder::None,
                    v => return Err(Usage(format!("unknown --reorder {v:?}"))),
                })
            }
            "--cache-dir" => opts.remote.cache_dir = Some(PathBuf::from(value(flag)?)),
            "--offline" => opts.remote.offline = true,
            "--enable-helm" => {
                return Err(Usage(
                    "--enable-helm: this lean binary has no Helm renderer; use `stackwave kustomize build --enable-helm`".into(),
                ))
            }
            f if f.starts_with('-') && f.len() > 1 => {
                return Err(Usage(format!("unknown flag {f:?}")))
            }
            d if dir.is_none() => dir = Some(PathBuf::from(d)),
            d => return Err(Usage(format!("unexpected argument {d:?}"))),
        }
    }
    Ok((dir.unwrap_or_else(|| PathBuf::from(".")), opts))
}

/// Tunes glibc's allocator for a short-lived process that builds a tree and prints it: the
/// heap top is never given back (`M_TRIM_THRESHOLD`) and large buffers (file contents, the
/// output) come from the heap rather than fresh mappings (`M_MMAP_THRESHOLD`), so pages
/// freed while parsing are reused instead of returned and faulted in again.
fn tune_allocator() {
    // SAFETY: `mallopt` only sets allocator parameters; unknown values are refused, not UB.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
    }
}

fn main() {
    tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, opts) = match parse(&args) {
        Ok(x) => x,
        Err(Usage(why)) => {
            eprintln!("Error: {why}\n{USAGE}");
            std::process::exit(2);
        }
    };
    match kustomize_rs::build_dir(&dir, &opts) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(out.as_bytes())
                .and_then(|_| stdout.flush())
                .is_err()
            {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_flags_in_both_forms() {
        let (dir, o) = parse(&args(
            "build over --load-restrictor=LoadRestrictionsNone --reorder none --offline",
        ))
        .expect("valid");
        assert_eq!(dir, PathBuf::from("over"));
        assert_eq!(o.load_restrictor, LoadRestrictor::None);
        assert!(matches!(o.reorder, Some(Reorder::None)));
        assert!(o.remote.offline);
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        assert!(parse(&args("build . --enable-helm")).is_err());
        assert!(parse(&args("build . --reorder sideways")).is_err());
        assert!(parse(&args("edit set image x")).is_err());
        assert!(parse(&args("build a b")).is_err());
    }
}
