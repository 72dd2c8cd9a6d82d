//! Helm's own Go SDK (v4), through `libhelm_c` — the C library shipped in the PyPI wheel
//! `helm-python-sdk==0.2.2` — loaded at run time with `libloading`.
//!
//! The library is found through `HELM_C_LIB` (a file, or a directory holding
//! `libhelm_c.so`), then in `.tools/venv` (what `scripts/setup` installs) next to the
//! executable or the working directory. Strings the library returns are owned by it and freed
//! with `helm_free_string`; every call's status code maps to [`HelmError`]. The ABI used here
//! (`helm_c.h` of helm-c-sdk 0.2.2) is mirrored from the wheel's `helm_python/_native.py`.

use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

static CALLS: AtomicU64 = AtomicU64::new(0);

/// How many library calls (parse, load, render) this process has made — the cost a cache saves.
pub fn calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}

/// A failure reported by, or while loading, `libhelm_c`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HelmError {
    /// The library could not be found or loaded.
    #[error("libhelm_c: {0}")]
    Library(String),
    /// A call failed: `helm_error_code` and the library's message.
    #[error("helm {call} failed ({kind}): {detail}")]
    Call {
        /// The C function.
        call: &'static str,
        /// The error class (`render`, `values`, `chart load`, ...).
        kind: &'static str,
        /// The library's message.
        detail: String,
    },
}

fn kind_of(code: i32) -> &'static str {
    match code {
        -2 => "invalid argument",
        -3 | -4 => "invalid handle",
        -5 => "panic",
        -7 => "not found",
        -8 => "io",
        -20 => "chart load",
        -21 => "chart invalid",
        -22 => "values",
        -23 => "render",
        -40 => "registry",
        -41 => "repo",
        _ => "unknown",
    }
}

type StrOut = *mut *mut c_char;
type FnFree = unsafe extern "C" fn(*mut c_char);
type FnVersion = unsafe extern "C" fn() -> *mut c_char;
type FnStr1 = unsafe extern "C" fn(*const c_char, StrOut, StrOut) -> i32;
type FnLoad = unsafe extern "C" fn(*const c_char, *mut u64, StrOut) -> i32;
type FnHandleFree = unsafe extern "C" fn(u64, StrOut) -> i32;
type FnRender = unsafe extern "C" fn(u64, *const c_char, *const c_char, StrOut, StrOut) -> i32;
type FnHandleStr = unsafe extern "C" fn(u64, StrOut, StrOut) -> i32;

/// The loaded library and the entry points Stackwave uses.
pub struct Helm {
    _lib: libloading::Library,
    path: PathBuf,
    free: FnFree,
    c_version: FnVersion,
    sdk_version: FnVersion,
    values_from_yaml: FnStr1,
    strvals_parse: FnStr1,
    strvals_parse_string: FnStr1,
    chart_load: FnLoad,
    chart_free: FnHandleFree,
    chart_metadata: FnHandleStr,
    render: FnRender,
}

// The library is a Go c-shared object: its entry points may be called from any thread.
unsafe impl Send for Helm {}
unsafe impl Sync for Helm {}

const NAMES: [&str; 3] = ["libhelm_c.so.0.2.2", "libhelm_c.so.0", "libhelm_c.so"];

fn venv_candidates(start: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in start.ancestors() {
        let lib = dir.join(".tools/venv/lib");
        if let Ok(rd) = std::fs::read_dir(&lib) {
            for e in rd.flatten() {
                out.push(e.path().join("site-packages/helm_python/lib"));
            }
        }
    }
    out
}

/// Where the library is looked for, in order.
pub fn candidate_paths() -> Vec<PathBuf> {
    let mut dirs_or_files: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("HELM_C_LIB").filter(|p| !p.is_empty()) {
        dirs_or_files.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.parent() {
            dirs_or_files.extend(venv_candidates(d));
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        dirs_or_files.extend(venv_candidates(&cwd));
    }
    let mut out = Vec::new();
    for p in dirs_or_files {
        if p.is_dir() {
            out.extend(NAMES.iter().map(|n| p.join(n)));
        } else {
            out.push(p);
        }
    }
    out
}

impl Helm {
    /// The process-wide library, loaded on first use.
    ///
    /// # Errors
    /// [`HelmError::Library`] naming every place searched.
    pub fn get() -> Result<Arc<Helm>, HelmError> {
        static LIB: OnceLock<Result<Arc<Helm>, HelmError>> = OnceLock::new();
        LIB.get_or_init(|| Helm::load().map(Arc::new)).clone()
    }

    fn load() -> Result<Helm, HelmError> {
        let tried = candidate_paths();
        for p in &tried {
            if !p.is_file() {
                continue;
            }
            // SAFETY: loading a shared library runs its initialisers; libhelm_c's are the Go
            // runtime's, which are safe to run once per process.
            let lib = unsafe { libloading::Library::new(p) }.map_err(|e| {
                HelmError::Library(format!("found {} but could not load it: {e}", p.display()))
            })?;
            macro_rules! sym {
                ($name:literal) => {
                    // SAFETY: the symbol types mirror helm_c.h of helm-c-sdk 0.2.2.
                    *unsafe { lib.get($name) }.map_err(|e| {
                        HelmError::Library(format!(
                            "{} does not export {}: {e}",
                            p.display(),
                            String::from_utf8_lossy($name)
                        ))
                    })?
                };
            }
            let h = Helm {
                free: sym!(b"helm_free_string"),
                c_version: sym!(b"helm_c_version"),
                sdk_version: sym!(b"helm_sdk_version"),
                values_from_yaml: sym!(b"helm_values_from_yaml"),
                strvals_parse: sym!(b"helm_strvals_parse"),
                strvals_parse_string: sym!(b"helm_strvals_parse_string"),
                chart_load: sym!(b"helm_chart_load"),
                chart_free: sym!(b"helm_chart_free"),
                chart_metadata: sym!(b"helm_chart_metadata"),
                render: sym!(b"helm_render"),
                path: p.clone(),
                _lib: lib,
            };
            let v = h.c_version();
            if !v.starts_with("0.") {
                return Err(HelmError::Library(format!(
                    "{} is helm-c {v}; Stackwave needs the 0.x ABI (0.2.2)",
                    p.display()
                )));
            }
            return Ok(h);
        }
        let searched: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
        Err(HelmError::Library(format!(
            "libhelm_c not found (searched: {}). Run scripts/setup, or set HELM_C_LIB to the library from helm-python-sdk==0.2.2",
            if searched.is_empty() { "nothing".into() } else { searched.join(", ") }
        )))
    }

    /// Where the library was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn take(&self, p: *mut c_char) -> Option<String> {
        if p.is_null() {
            return None;
        }
        // SAFETY: a non-null string returned by the library is NUL-terminated and ours to free.
        let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        unsafe { (self.free)(p) };
        Some(s)
    }

    /// helm-c library version.
    pub fn c_version(&self) -> String {
        // SAFETY: no arguments; returns an owned string.
        self.take(unsafe { (self.c_version)() }).unwrap_or_default()
    }

    /// Helm Go SDK version compiled into the library.
    pub fn sdk_version(&self) -> String {
        // SAFETY: as above.
        self.take(unsafe { (self.sdk_version)() })
            .unwrap_or_default()
    }

    fn cstr(s: &str) -> Result<CString, HelmError> {
        CString::new(s).map_err(|_| HelmError::Call {
            call: "argument",
            kind: "invalid argument",
            detail: "string contains NUL".into(),
        })
    }

    fn status(
        &self,
        call: &'static str,
        code: i32,
        out: *mut c_char,
        err: *mut c_char,
    ) -> Result<String, HelmError> {
        let detail = self.take(err);
        let result = self.take(out);
        if code != 0 {
            return Err(HelmError::Call {
                call,
                kind: kind_of(code),
                detail: detail.unwrap_or_default(),
            });
        }
        Ok(result.unwrap_or_default())
    }

    fn str1(&self, call: &'static str, f: FnStr1, arg: &str) -> Result<String, HelmError> {
        CALLS.fetch_add(1, Ordering::Relaxed);
        let a = Self::cstr(arg)?;
        let (mut out, mut err): (*mut c_char, *mut c_char) =
            (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: `a` lives across the call; out-params are valid pointers.
        let code = unsafe { f(a.as_ptr(), &mut out, &mut err) };
        self.status(call, code, out, err)
    }

    /// Parses a values document as `helm -f` does (YAML 1.1 via `sigs.k8s.io/yaml`); JSON text.
    ///
    /// # Errors
    /// Malformed YAML.
    pub fn values_from_yaml(&self, yaml: &str) -> Result<String, HelmError> {
        self.str1("helm_values_from_yaml", self.values_from_yaml, yaml)
    }

    /// Parses a `--set` expression (`strvals.Parse`); JSON text.
    ///
    /// # Errors
    /// Malformed expressions.
    pub fn strvals_parse(&self, expr: &str) -> Result<String, HelmError> {
        self.str1("helm_strvals_parse", self.strvals_parse, expr)
    }

    /// Parses a `--set-string` expression (`strvals.ParseString`); JSON text.
    ///
    /// # Errors
    /// Malformed expressions.
    pub fn strvals_parse_string(&self, expr: &str) -> Result<String, HelmError> {
        self.str1("helm_strvals_parse_string", self.strvals_parse_string, expr)
    }

    /// Loads a chart directory or archive.
    ///
    /// # Errors
    /// Unreadable or invalid charts.
    pub fn load_chart(self: &Arc<Self>, path: &Path) -> Result<Chart, HelmError> {
        CALLS.fetch_add(1, Ordering::Relaxed);
        let p = Self::cstr(&path.to_string_lossy())?;
        let mut h: u64 = 0;
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid pointers; the handle is freed in `Chart::drop`.
        let code = unsafe { (self.chart_load)(p.as_ptr(), &mut h, &mut err) };
        self.status("helm_chart_load", code, std::ptr::null_mut(), err)?;
        Ok(Chart {
            helm: self.clone(),
            handle: h,
        })
    }
}

/// A loaded chart (a handle into the library).
pub struct Chart {
    helm: Arc<Helm>,
    handle: u64,
}

/// Release facts passed to the template engine (`.Release`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RenderOptions {
    /// `.Release.Name`.
    pub name: String,
    /// `.Release.Namespace`.
    pub namespace: String,
    /// `.Release.Revision`.
    pub revision: u32,
    /// `.Release.IsInstall`.
    pub is_install: bool,
    /// `.Release.IsUpgrade`.
    pub is_upgrade: bool,
}

impl Chart {
    /// `Chart.yaml` metadata as JSON text.
    ///
    /// # Errors
    /// Library errors.
    pub fn metadata(&self) -> Result<String, HelmError> {
        let (mut out, mut err): (*mut c_char, *mut c_char) =
            (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: valid handle and out-params.
        let code = unsafe { (self.helm.chart_metadata)(self.handle, &mut out, &mut err) };
        self.helm.status("helm_chart_metadata", code, out, err)
    }

    /// Renders every template with the given user values (JSON), offline (`lookup` returns
    /// nothing). Returns JSON text: an object of template path → rendered text.
    ///
    /// # Errors
    /// Values or template errors, with Helm's message.
    pub fn render(&self, values_json: &str, opts: &RenderOptions) -> Result<String, HelmError> {
        CALLS.fetch_add(1, Ordering::Relaxed);
        let v = Helm::cstr(values_json)?;
        let o = Helm::cstr(&serde_json::to_string(opts).unwrap_or_default())?;
        let (mut out, mut err): (*mut c_char, *mut c_char) =
            (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: valid handle, strings live across the call, valid out-params.
        let code =
            unsafe { (self.helm.render)(self.handle, v.as_ptr(), o.as_ptr(), &mut out, &mut err) };
        self.helm.status("helm_render", code, out, err)
    }
}

impl Drop for Chart {
    fn drop(&mut self) {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: the handle came from helm_chart_load and is freed once.
        let _ = unsafe { (self.helm.chart_free)(self.handle, &mut err) };
        let _ = self.helm.take(err);
    }
}
