//! `kube-testserver`: a Kubernetes API server for tests and `stackwave demo`, started
//! in-process on loopback HTTP.
//!
//! It serves discovery (`/version`, `/api`, `/apis`, group-version resource lists, CRD kinds
//! once their CRD is Established), namespaced and cluster-scoped CRUD, lists with label
//! selectors, watch, `resourceVersion`/`generation`, `/status` subresources, server-side apply
//! with managed fields per field manager and 409 conflicts (unless `force`), `dryRun=All`,
//! deletion with finalizers, and immutable-field rejections in the real API's error shape. It
//! runs no controllers (as kube-apiserver alone): the `kube-standin` crate stands in for them,
//! as a client.
//!
//! Where it still differs from a real kube-apiserver is listed in `README.md` next to this crate.

pub mod concurrency;
pub mod decode;
pub mod defaults;
pub mod events;
pub mod listopts;
pub mod managedfields;
pub mod resources;
pub mod schema;
pub mod server;
pub mod ssa;
pub mod store;
pub mod validate;

pub use server::{start, TestServer};
