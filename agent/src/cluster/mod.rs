//! The cluster layer: every change Stackwave makes goes through the Kubernetes API with `kube`
//! — server-side apply as field manager `stackwave`, discovery of any GVK (refreshed when a kind
//! is unknown, so CRDs applied a moment ago resolve), health, inventory, prune and drift.
//!
//! Modelled on fluxcd/pkg `ssa` (`ResourceManager`: apply, staged apply, wait, diff, delete).

pub mod drift;
pub mod health;
pub mod hpa;
pub mod images;
pub mod instance;
pub mod inventory;
pub mod policy;
pub mod preflight;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Discovery, Scope};
use serde_json::Value as Json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// The field manager Stackwave applies as.
pub const FIELD_MANAGER: &str = "stackwave";
/// Label marking objects Stackwave manages.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "stackwave");
/// Label naming the component an object belongs to (with [`MANAGED_BY`] and the instance's
/// labels, [`inventory::mark`], one of Stackwave's ownership marks). The marks are labels,
/// never annotations, as fluxcd's kustomize-controller marks its objects
/// (`kustomize.toolkit.fluxcd.io/name|namespace` labels): a Deployment's annotations are
/// copied to its ReplicaSets, so a change to them moves the Deployment's
/// `metadata.generation` (kube-apiserver `pkg/registry/apps/deployment/strategy.go`,
/// `PrepareForUpdate`), and taking over a running Deployment must not (`stackwave adopt`).
/// Label changes move no generation.
pub const COMPONENT_LABEL: &str = "stackwave.io/component";
/// The annotation older Stackwave versions put the component mark in (same key as
/// [`COMPONENT_LABEL`]); read, never written: objects marked that way are still recognised
/// ([`component_of`]), and the next apply moves the mark into the label (the field manager
/// `stackwave` owns the annotation and no longer applies it, so the server removes it).
pub const LEGACY_COMPONENT_ANNOTATION: &str = "stackwave.io/component";

/// The component an object's ownership marks name: its [`COMPONENT_LABEL`], else (marked
/// by an older Stackwave) its [`LEGACY_COMPONENT_ANNOTATION`].
pub fn component_of(o: &Json) -> Option<&str> {
    o.pointer("/metadata/labels")
        .and_then(|l| l.get(COMPONENT_LABEL))
        .or_else(|| {
            o.pointer("/metadata/annotations")
                .and_then(|a| a.get(LEGACY_COMPONENT_ANNOTATION))
        })
        .and_then(Json::as_str)
}

/// A cluster-layer error naming the object and the cause.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The kind is not served (even after refreshing discovery).
    #[error("{id}: the server does not serve kind {gvk}")]
    UnknownKind {
        /// Object.
        id: String,
        /// GVK.
        gvk: String,
    },
    /// A kind named without `apiVersion` is served by several API groups.
    #[error("{id}: kind {kind} is served as {}; name its apiVersion", served_as.join(", "))]
    AmbiguousKind {
        /// Object.
        id: String,
        /// Kind.
        kind: String,
        /// The `apiVersion`s serving it.
        served_as: Vec<String>,
    },
    /// Another field manager owns fields Stackwave applies (409).
    #[error("{id}: conflict: {message}")]
    Conflict {
        /// Object.
        id: String,
        /// The API server's message (names managers and fields).
        message: String,
    },
    /// An immutable field changed and the object may not be replaced (422 whose causes are
    /// all immutable-field causes, [`is_immutable`]).
    #[error("{id}: {message} (the component does not allow replacing it)")]
    Immutable {
        /// Object.
        id: String,
        /// The API server's message.
        message: String,
    },
    /// The API server refused the object (422 for any other reason: validation, cluster
    /// policy); never a reason to replace it.
    #[error("{id}: refused by the API server: {}", causes_text(message, causes))]
    Refused {
        /// Object.
        id: String,
        /// The API server's message.
        message: String,
        /// `Status.details.causes`, verbatim.
        causes: Vec<Cause>,
    },
    /// Any other API error.
    #[error("{id}: {message}")]
    Api {
        /// Object.
        id: String,
        /// HTTP code (0 for transport errors).
        code: u16,
        /// Message.
        message: String,
    },
    /// A bad object.
    #[error("{0}")]
    Invalid(String),
    /// No HTTP response from the API server (connection refused, DNS, TLS, timeout).
    #[error("{id}: API server {server} unreachable: {}", cause_chain(source))]
    Unreachable {
        /// What was being read or written.
        id: String,
        /// The API server's URL.
        server: String,
        /// The transport error.
        #[source]
        source: kube::Error,
    },
    /// A policy file is malformed.
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
}

/// An error's causes, innermost last, without kube's and hyper's wrapper texts
/// (`ServiceError: client error (Connect): tcp connect error: Connection refused (os error
/// 111)` → `tcp connect error: Connection refused (os error 111)`), falling back to the whole
/// chain when every level is a wrapper.
pub fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut levels = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        levels.push(c.to_string());
        cur = c.source();
    }
    // Each level's text repeats its sources' (`ServiceError: client error (Connect)`); keep
    // the levels that add something of their own.
    let own: Vec<&String> = levels
        .iter()
        .filter(|l| !l.starts_with("ServiceError:") && !l.starts_with("HyperError:"))
        .filter(|l| !l.starts_with("client error ("))
        .collect();
    let kept = if own.is_empty() {
        levels.iter().collect()
    } else {
        own
    };
    kept.iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(": ")
}

/// One cause of a refusal, as the API server sent it (`Status.details.causes[]`,
/// `k8s.io/apimachinery/pkg/apis/meta/v1` `StatusCause`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cause {
    /// Machine-readable reason (`FieldValueInvalid`, `FieldValueForbidden`, ...).
    pub reason: String,
    /// The field path (`spec.template`), empty when none.
    pub field: String,
    /// The message (`Invalid value: ...: field is immutable`).
    pub message: String,
}

/// Causes in readable form, verbatim: `field: message (reason); ...` (the message alone when
/// the Status carried no causes).
fn causes_text(message: &str, causes: &[Cause]) -> String {
    if causes.is_empty() {
        return message.to_string();
    }
    causes
        .iter()
        .map(|c| {
            let field = if c.field.is_empty() { "" } else { &c.field };
            format!("{field}: {} ({})", c.message, c.reason)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A cause pattern meaning "an immutable field changed" (`policies/immutable-errors.yaml`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImmutableRule {
    /// The cause's reason.
    pub reason: String,
    /// The cause's field, when the rule needs one.
    #[serde(default)]
    pub field: Option<String>,
    /// Text the message ends with.
    #[serde(default)]
    pub suffix: Option<String>,
    /// Text the message holds.
    #[serde(default)]
    pub contains: Option<String>,
}

impl ImmutableRule {
    fn matches(&self, c: &Cause) -> bool {
        c.reason == self.reason
            && self.field.as_ref().is_none_or(|f| *f == c.field)
            && self
                .suffix
                .as_ref()
                .is_none_or(|s| c.message.ends_with(s.as_str()))
            && self
                .contains
                .as_ref()
                .is_none_or(|s| c.message.contains(s.as_str()))
    }
}

/// The shipped immutable-field cause patterns (`policies/immutable-errors.yaml`, each citing
/// the kube-apiserver validation code that emits it), parsed once.
///
/// # Errors
/// A malformed file, naming it and the line ([`policy::load`]).
pub fn immutable_rules() -> Result<&'static [ImmutableRule], policy::PolicyError> {
    static RULES: std::sync::OnceLock<Result<Vec<ImmutableRule>, policy::PolicyError>> =
        std::sync::OnceLock::new();
    RULES
        .get_or_init(|| policy::immutable(policy::PolicyTexts::SHIPPED.immutable))
        .as_deref()
        .map_err(Clone::clone)
}

/// Whether a 422's causes say an immutable field changed: there are causes, and every one
/// matches a rule (a policy cause beside an immutable one would refuse the new object too, so
/// replacing would only delete the old one).
pub fn is_immutable(causes: &[Cause], rules: &[ImmutableRule]) -> bool {
    !causes.is_empty() && causes.iter().all(|c| rules.iter().any(|r| r.matches(c)))
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The object was created.
    Created,
    /// The object changed.
    Configured,
    /// Nothing changed.
    Unchanged,
    /// Deleted and re-created because of an immutable field.
    Replaced,
}

/// The result of applying one object.
#[derive(Debug, Clone)]
pub struct Applied {
    /// `Kind/namespace/name`.
    pub id: String,
    /// What happened.
    pub action: Action,
    /// The live object after the apply.
    pub live: Json,
    /// The live object before the apply (`None` when it was absent), as `apply` read it to
    /// tell created from configured.
    pub before: Option<Json>,
}

/// How to apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Take ownership of conflicting fields.
    pub force: bool,
    /// Server-side dry run.
    pub dry_run: bool,
    /// Replace (delete, wait, re-apply) on immutable-field errors ([`is_immutable`]); any
    /// other 422 is [`ClusterError::Refused`] and never replaced.
    pub replace_immutable: bool,
    /// JSON pointers Stackwave must stop owning without their live values changing (another
    /// controller, e.g. an HPA, owns them; see [`hpa`]): when Stackwave's apply owns one live,
    /// it is first handed over ([`hpa::hand_over`]) so dropping it from the applied
    /// configuration does not remove it.
    pub release: Vec<String>,
}

/// A connection to one cluster.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    /// The API server's URL, for errors.
    server: Arc<str>,
    discovery: Arc<Mutex<Option<Discovery>>>,
    /// API requests sent (for benchmarks).
    pub requests: Arc<std::sync::atomic::AtomicU64>,
}

/// `Kind/namespace/name` (namespace omitted when empty).
pub fn object_id(o: &Json) -> String {
    let kind = o["kind"].as_str().unwrap_or("?");
    let name = o
        .pointer("/metadata/name")
        .and_then(Json::as_str)
        .unwrap_or("?");
    match o
        .pointer("/metadata/namespace")
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
    {
        Some(ns) => format!("{kind}/{ns}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

/// The API group of an object (`""` for the core group), from its `apiVersion`.
pub fn group_of(o: &Json) -> &str {
    o["apiVersion"]
        .as_str()
        .and_then(|a| a.rsplit_once('/'))
        .map(|(g, _)| g)
        .unwrap_or("")
}

/// `metadata.namespace` (`""` when missing: cluster-scoped, or the default namespace).
pub fn namespace_of(o: &Json) -> &str {
    o.pointer("/metadata/namespace")
        .and_then(Json::as_str)
        .unwrap_or("")
}

/// `metadata.name` (`""` when missing).
pub fn name_of(o: &Json) -> &str {
    o.pointer("/metadata/name")
        .and_then(Json::as_str)
        .unwrap_or("")
}

fn gvk_of(o: &Json) -> GroupVersionKind {
    let av = o["apiVersion"].as_str().unwrap_or("");
    let (g, v) = av.rsplit_once('/').unwrap_or(("", av));
    GroupVersionKind::gvk(g, v, o["kind"].as_str().unwrap_or(""))
}

/// An API error for object `id`. kube 5's `Error::Api` carries the whole `metav1.Status` the
/// server sent (`kube-client` `handle_api_errors` deserializes the body; a body that is not a
/// Status becomes one without details), so a 422's `details.causes` are read from it.
/// A transport failure (`kube::Error::Service`/`HyperError`: no HTTP response) becomes
/// [`ClusterError::Unreachable`] naming `server`.
fn api_err(server: &str, id: &str, e: kube::Error) -> ClusterError {
    match e {
        e @ (kube::Error::Service(_) | kube::Error::HyperError(_)) => ClusterError::Unreachable {
            id: id.to_string(),
            server: server.to_string(),
            source: e,
        },
        kube::Error::Api(s) => {
            let code = s.code;
            let message = s.message.clone();
            match code {
                409 if s.reason == "Conflict" => ClusterError::Conflict {
                    id: id.to_string(),
                    message,
                },
                422 => ClusterError::Refused {
                    id: id.to_string(),
                    message,
                    causes: s
                        .details
                        .iter()
                        .flat_map(|d| &d.causes)
                        .map(|c| Cause {
                            reason: c.reason.clone(),
                            field: c.field.clone(),
                            message: c.message.clone(),
                        })
                        .collect(),
                },
                _ => ClusterError::Api {
                    id: id.to_string(),
                    code,
                    message,
                },
            }
        }
        other => ClusterError::Api {
            id: id.to_string(),
            code: 0,
            message: other.to_string(),
        },
    }
}

/// Whether an error is worth retrying (conflicts on resourceVersion, throttling, server errors,
/// transport failures). Not a server-side apply whose object the API server cannot type
/// against its schema (a 500 `failed to create typed patch object (…): .spec.x: field not
/// declared in schema`, or duplicate list entries): the same object fails the same way.
pub fn retryable(e: &ClusterError) -> bool {
    match e {
        ClusterError::Unreachable { .. } => true,
        ClusterError::Api { code, message, .. } => {
            (*code == 0 || *code == 429 || *code >= 500)
                && !message.contains("failed to create typed patch object")
        }
        _ => false,
    }
}

impl Cluster {
    /// Connects to an API server URL (plain HTTP, e.g. the in-process test server).
    ///
    /// # Errors
    /// Invalid URLs.
    pub fn connect_url(url: &str) -> Result<Cluster, ClusterError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| ClusterError::Invalid(format!("API server URL {url}: {e}")))?;
        let config = kube::Config::new(uri);
        let client = kube::Client::try_from(config)
            .map_err(|e| ClusterError::Invalid(format!("client for {url}: {e}")))?;
        Ok(Cluster::with_client(client, url))
    }

    /// Connects with a kubeconfig file.
    ///
    /// # Errors
    /// Unreadable or invalid kubeconfig.
    pub async fn connect_kubeconfig(path: &std::path::Path) -> Result<Cluster, ClusterError> {
        let kc = kube::config::Kubeconfig::read_from(path)
            .map_err(|e| ClusterError::Invalid(format!("{}: {e}", path.display())))?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(|e| ClusterError::Invalid(format!("{}: {e}", path.display())))?;
        let server = config.cluster_url.to_string();
        let client =
            kube::Client::try_from(config).map_err(|e| ClusterError::Invalid(e.to_string()))?;
        Ok(Cluster::with_client(client, &server))
    }

    /// Wraps a client.
    pub fn with_client(client: kube::Client, server: &str) -> Cluster {
        Cluster {
            client,
            server: server.into(),
            discovery: Arc::new(Mutex::new(None)),
            requests: Arc::new(Default::default()),
        }
    }

    fn count(&self, n: u64) {
        self.requests
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Runs `lookup` on the cached discovery, running discovery first when there is none and
    /// once more when `lookup` finds nothing (a CRD created since the last refresh).
    /// `Ok(None)`: not found after the refresh. `id` names the object asked about in errors.
    async fn discover<T>(
        &self,
        id: &str,
        lookup: impl Fn(&Discovery) -> Option<Result<T, ClusterError>>,
    ) -> Result<Option<T>, ClusterError> {
        let mut guard = self.discovery.lock().await;
        for attempt in 0..2 {
            if guard.is_none() || attempt == 1 {
                let d = Discovery::new(self.client.clone())
                    .run()
                    .await
                    .map_err(|e| api_err(&self.server, id, e))?;
                self.count(1);
                *guard = Some(d);
            }
            if let Some(found) = guard.as_ref().and_then(&lookup) {
                return found.map(Some);
            }
        }
        Ok(None)
    }

    /// Resolves a GVK, refreshing discovery once when it is unknown.
    ///
    /// # Errors
    /// Unknown kinds and discovery failures.
    pub async fn resolve(&self, o: &Json) -> Result<(ApiResource, ApiCapabilities), ClusterError> {
        let gvk = gvk_of(o);
        let id = object_id(o);
        self.discover(&id, |d| d.resolve_gvk(&gvk).map(Ok))
            .await?
            .ok_or_else(|| ClusterError::UnknownKind {
                id: id.clone(),
                gvk: format!("{}/{}/{}", gvk.group, gvk.version, gvk.kind),
            })
    }

    /// The `apiVersion` (the group's preferred version) of the one API group that serves
    /// `kind`, from discovery (refreshed once when no group serves it, as for a CRD created
    /// since the last refresh) — what `kubectl wait KIND/NAME` resolves through its REST
    /// mapper when the resource names no group. `id` names the object asked about in errors.
    ///
    /// # Errors
    /// [`ClusterError::UnknownKind`] when no group serves it, [`ClusterError::AmbiguousKind`]
    /// when several do; discovery failures.
    pub async fn resolve_kind(&self, kind: &str, id: &str) -> Result<String, ClusterError> {
        self.discover(id, |d| {
            let found: Vec<String> = d
                .groups()
                .filter_map(|g| g.recommended_kind(kind))
                .map(|(ar, _)| ar.api_version)
                .collect();
            match found.as_slice() {
                [] => None,
                [one] => Some(Ok(one.clone())),
                _ => Some(Err(ClusterError::AmbiguousKind {
                    id: id.to_string(),
                    kind: kind.to_string(),
                    served_as: found,
                })),
            }
        })
        .await?
        .ok_or_else(|| ClusterError::UnknownKind {
            id: id.to_string(),
            gvk: kind.to_string(),
        })
    }

    async fn api_for(&self, o: &Json) -> Result<Api<DynamicObject>, ClusterError> {
        let (ar, caps) = self.resolve(o).await?;
        Ok(match caps.scope {
            Scope::Namespaced => {
                let ns = o
                    .pointer("/metadata/namespace")
                    .and_then(Json::as_str)
                    .unwrap_or("default");
                Api::namespaced_with(self.client.clone(), ns, &ar)
            }
            Scope::Cluster => Api::all_with(self.client.clone(), &ar),
        })
    }

    /// Gets the live object for a desired one (`None` when absent).
    ///
    /// # Errors
    /// API errors other than 404.
    pub async fn get(&self, o: &Json) -> Result<Option<Json>, ClusterError> {
        let id = object_id(o);
        let api = self.api_for(o).await?;
        let name = name_of(o);
        self.count(1);
        match api.get_opt(name).await {
            Ok(Some(d)) => Ok(Some(
                serde_json::to_value(d).map_err(|e| ClusterError::Invalid(e.to_string()))?,
            )),
            Ok(None) => Ok(None),
            Err(e) => Err(api_err(&self.server, &id, e)),
        }
    }

    /// The EndpointSlices of Service `namespace/name` (label `kubernetes.io/service-name`).
    ///
    /// # Errors
    /// API errors.
    pub async fn endpoint_slices(
        &self,
        namespace: &str,
        service: &str,
    ) -> Result<Vec<Json>, ClusterError> {
        let sample = serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": namespace, "name": service}});
        self.list(&sample, &format!("kubernetes.io/service-name={service}"))
            .await
    }

    /// Lists the live objects of `sample`'s kind in its namespace (all namespaces for
    /// cluster-scoped kinds) that match the label `selector` (`key=value,...`): one request
    /// for many objects, where [`Cluster::get`] costs one each.
    ///
    /// # Errors
    /// Unknown kinds and API errors.
    pub async fn list(&self, sample: &Json, selector: &str) -> Result<Vec<Json>, ClusterError> {
        let api = self.api_for(sample).await?;
        self.count(1);
        let (ar, _) = self.resolve(sample).await?;
        let list = api
            .list(&kube::api::ListParams::default().labels(selector))
            .await
            .map_err(|e| api_err(&self.server, &format!("{}List", ar.kind), e))?;
        list.items
            .into_iter()
            .map(|d| {
                let mut j =
                    serde_json::to_value(d).map_err(|e| ClusterError::Invalid(e.to_string()))?;
                // List items carry no apiVersion/kind of their own.
                j["apiVersion"] = sample["apiVersion"].clone();
                j["kind"] = sample["kind"].clone();
                Ok(j)
            })
            .collect()
    }

    /// Lists every object of a built-in kind in all namespaces (`GET /api/v1/secrets`,
    /// ...), each with its `apiVersion` and `kind` set (list items carry none).
    ///
    /// # Errors
    /// API errors, naming `<Kind>List`.
    pub async fn list_all(
        &self,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Result<Vec<Json>, ClusterError> {
        let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
        let ar = ApiResource::from_gvk(&gvk);
        let api: kube::Api<kube::api::DynamicObject> =
            kube::Api::all_with(self.client.clone(), &ar);
        self.count(1);
        let list = api
            .list(&kube::api::ListParams::default())
            .await
            .map_err(|e| api_err(&self.server, &format!("{kind}List"), e))?;
        list.items
            .into_iter()
            .map(|d| {
                let mut j =
                    serde_json::to_value(d).map_err(|e| ClusterError::Invalid(e.to_string()))?;
                j["kind"] = Json::from(kind);
                j["apiVersion"] = Json::from(ar.api_version.as_str());
                Ok(j)
            })
            .collect()
    }

    /// Server-side applies one object as `stackwave`, with retries and backoff on retryable
    /// errors and the immutable-field policy of `opts`.
    ///
    /// # Errors
    /// Conflicts (unless forced), immutable fields (unless replacement is allowed), API errors.
    pub async fn apply(&self, o: &Json, opts: &ApplyOptions) -> Result<Applied, ClusterError> {
        let (id, name, api) = self.named(o).await?;
        let before = self.get(o).await?;
        if let (Some(live), false) = (&before, opts.dry_run) {
            hpa::hand_over(self, o, live, &opts.release).await?;
        }
        let mut params = PatchParams::apply(FIELD_MANAGER);
        params.force = opts.force;
        params.dry_run = opts.dry_run;
        match self.patch_retrying(&api, &id, &name, &params, o).await {
            Ok(live) => {
                let action = match &before {
                    None => Action::Created,
                    Some(b)
                        if b.pointer("/metadata/resourceVersion")
                            == live.pointer("/metadata/resourceVersion") =>
                    {
                        Action::Unchanged
                    }
                    Some(_) => Action::Configured,
                };
                Ok(Applied {
                    id,
                    action,
                    live,
                    before,
                })
            }
            Err(ClusterError::Refused {
                id,
                message,
                causes,
            }) if is_immutable(&causes, immutable_rules()?) => {
                if !opts.replace_immutable || opts.dry_run {
                    return Err(ClusterError::Immutable { id, message });
                }
                self.delete_and_wait(o, Duration::from_secs(60)).await?;
                self.count(1);
                let d = api
                    .patch(&name, &params, &Patch::Apply(o))
                    .await
                    .map_err(|e| api_err(&self.server, &id, e))?;
                let live =
                    serde_json::to_value(d).map_err(|e| ClusterError::Invalid(e.to_string()))?;
                Ok(Applied {
                    id,
                    action: Action::Replaced,
                    live,
                    before,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// A server-side dry-run apply of `o` (`dryRun=All`) as field manager `stackwave`,
    /// forced like the revision's applies: the object the API server would store, or the
    /// error the real apply would get (422 refusals with their causes, a 500 for fields the
    /// schema does not declare, 404 when its namespace is missing). One PATCH (more only
    /// when retried on a transient error); nothing is read first and nothing is stored.
    /// Modelled on fluxcd/pkg `ssa/manager_apply.go` `dryRunApply` (DryRunAll,
    /// ForceOwnership, the owner's field manager).
    ///
    /// # Errors
    /// The API's refusal ([`ClusterError::Refused`] for every 422, immutable-field ones
    /// included: the caller decides whether a replacement would follow), unknown kinds.
    pub async fn dry_run_apply(&self, o: &Json) -> Result<Json, ClusterError> {
        let (id, name, api) = self.named(o).await?;
        let mut params = PatchParams::apply(FIELD_MANAGER);
        params.force = true;
        params.dry_run = true;
        self.patch_retrying(&api, &id, &name, &params, o).await
    }

    /// An object's id, name (required) and API, for a write.
    async fn named(&self, o: &Json) -> Result<(String, String, Api<DynamicObject>), ClusterError> {
        let id = object_id(o);
        let name = name_of(o).to_string();
        if name.is_empty() {
            return Err(ClusterError::Invalid(format!(
                "{id}: object has no metadata.name"
            )));
        }
        let api = self.api_for(o).await?;
        Ok((id, name, api))
    }

    /// One server-side apply PATCH, retried with backoff on [`retryable`] errors (5 times,
    /// 100 ms doubling up to 5 s).
    async fn patch_retrying(
        &self,
        api: &Api<DynamicObject>,
        id: &str,
        name: &str,
        params: &PatchParams,
        o: &Json,
    ) -> Result<Json, ClusterError> {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            self.count(1);
            match api
                .patch(name, params, &Patch::Apply(o))
                .await
                .map_err(|e| api_err(&self.server, id, e))
            {
                Ok(d) => {
                    return serde_json::to_value(d)
                        .map_err(|e| ClusterError::Invalid(e.to_string()))
                }
                Err(e) if retryable(&e) && attempt < 5 => {
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Deletes an object (background propagation); absent objects are fine.
    ///
    /// # Errors
    /// API errors other than 404.
    pub async fn delete(&self, o: &Json) -> Result<bool, ClusterError> {
        let id = object_id(o);
        let api = self.api_for(o).await?;
        let name = name_of(o);
        self.count(1);
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(api_err(&self.server, &id, e)),
        }
    }

    /// Replaces an object (PUT): `o`'s `metadata.resourceVersion`, when set, is the
    /// precondition (409 when the stored object is newer). Returns the stored object.
    ///
    /// # Errors
    /// API errors (409 on a stale resourceVersion).
    pub async fn replace(&self, o: &Json) -> Result<Json, ClusterError> {
        self.write(o, false).await
    }

    /// Creates an object (POST); 409 when it exists.
    ///
    /// # Errors
    /// API errors (409 AlreadyExists).
    pub async fn create(&self, o: &Json) -> Result<Json, ClusterError> {
        self.write(o, true).await
    }

    /// A plain write: POST (`create`) or PUT.
    async fn write(&self, o: &Json, create: bool) -> Result<Json, ClusterError> {
        let id = object_id(o);
        let api = self.api_for(o).await?;
        let d: DynamicObject = serde_json::from_value(o.clone())
            .map_err(|e| ClusterError::Invalid(format!("{id}: {e}")))?;
        self.count(1);
        let pp = Default::default();
        let live = if create {
            api.create(&pp, &d).await
        } else {
            api.replace(name_of(o), &pp, &d).await
        }
        .map_err(|e| api_err(&self.server, &id, e))?;
        serde_json::to_value(live).map_err(|e| ClusterError::Invalid(e.to_string()))
    }

    /// Deletes an object only if it is still at `resource_version` (a delete precondition:
    /// 409 when it changed since it was read, 404 when it is already gone).
    ///
    /// # Errors
    /// API errors, the 409 and 404 included.
    pub async fn delete_if(&self, o: &Json, resource_version: &str) -> Result<(), ClusterError> {
        let id = object_id(o);
        let api = self.api_for(o).await?;
        let mut dp = DeleteParams::background();
        dp.preconditions = Some(kube::api::Preconditions {
            resource_version: Some(resource_version.to_string()),
            uid: None,
        });
        self.count(1);
        api.delete(name_of(o), &dp)
            .await
            .map(|_| ())
            .map_err(|e| api_err(&self.server, &id, e))
    }

    /// Deletes an object and waits until it is gone.
    ///
    /// # Errors
    /// API errors, or a timeout.
    pub async fn delete_and_wait(&self, o: &Json, timeout: Duration) -> Result<(), ClusterError> {
        self.delete(o).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        while self.get(o).await?.is_some() {
            if tokio::time::Instant::now() > deadline {
                return Err(ClusterError::Api {
                    id: object_id(o),
                    code: 0,
                    message: "timed out waiting for deletion".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// The underlying client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The API server's URL (as connected to).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Classifies a `kube` error of a request about `id` made with [`Cluster::client`]
    /// (transport failures name [`Cluster::server`]).
    pub fn error(&self, id: &str, e: kube::Error) -> ClusterError {
        api_err(&self.server, id, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_server_is_named_with_the_cause() {
        // A port nobody listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let c = Cluster::connect_url(&url).unwrap();
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": "x", "namespace": "default"}});
        let e = c.get(&cm).await.unwrap_err();
        let m = e.to_string();
        eprintln!("{m}");
        assert!(matches!(e, ClusterError::Unreachable { .. }), "{m}");
        assert!(m.contains(&format!("API server {url}")), "{m}");
        assert!(
            m.contains("unreachable") && m.contains("Connection refused"),
            "{m}"
        );
        assert!(!m.contains("ServiceError"), "{m}");
        assert!(retryable(&e));
    }

    /// A 422 Status body shaped as kube-apiserver v1.36 sends it (`immutable.json` of the
    /// shared kube-api corpus), through kube's `Error::Api` into a [`ClusterError`].
    fn refusal(kind: &str, causes: Json) -> ClusterError {
        let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "reason": "Invalid", "code": 422,
            "message": format!("{kind} \"x\" is invalid: ..."),
            "details": {"name": "x", "kind": kind, "causes": causes}});
        let status: kube::core::Status = serde_json::from_value(body).unwrap();
        api_err(
            "",
            &format!("{kind}/ns/x"),
            kube::Error::Api(Box::new(status)),
        )
    }

    fn causes(e: &ClusterError) -> &[Cause] {
        match e {
            ClusterError::Refused { causes, .. } => causes,
            other => panic!("not a refusal: {other:?}"),
        }
    }

    #[test]
    fn immutable_field_causes_are_recognised_as_recorded() {
        let recorded = [
            (
                "Job",
                r#"[{"reason": "FieldValueInvalid", "message": "Invalid value: {\"labels\":{}}: field is immutable", "field": "spec.template"}]"#,
            ),
            (
                "Deployment",
                r#"[{"reason": "FieldValueInvalid", "message": "Invalid value: {\"matchLabels\":{\"app\":\"web\"}}: field is immutable", "field": "spec.selector"}]"#,
            ),
            (
                "StatefulSet",
                r#"[{"reason": "FieldValueForbidden", "message": "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden", "field": "spec"}]"#,
            ),
            (
                "ConfigMap",
                r#"[{"reason": "FieldValueForbidden", "message": "Forbidden: field is immutable when `immutable` is set", "field": "data"}]"#,
            ),
            (
                "Service",
                r#"[{"reason": "FieldValueInvalid", "message": "Invalid value: [\"10.0.0.77\"]: may not change once set", "field": "spec.clusterIPs[0]"}]"#,
            ),
        ];
        for (kind, c) in recorded {
            let e = refusal(kind, serde_json::from_str(c).unwrap());
            assert!(
                is_immutable(causes(&e), immutable_rules().unwrap()),
                "{kind}: {e}"
            );
        }
    }

    #[test]
    fn policy_refusals_are_not_immutable_field_errors() {
        // A DaemonSet refused by cluster policy: "Forbidden", but not an immutable field.
        let policy = refusal(
            "DaemonSet",
            serde_json::json!([{"reason": "FieldValueForbidden",
                "message": "Forbidden: disallowed by cluster policy",
                "field": "spec.template.spec.containers[0].securityContext.privileged"}]),
        );
        assert!(!is_immutable(causes(&policy), immutable_rules().unwrap()));
        let text = policy.to_string();
        assert!(
            text.contains("refused by the API server")
                && text.contains("spec.template.spec.containers[0].securityContext.privileged: Forbidden: disallowed by cluster policy"),
            "{text}"
        );
        // An immutable cause beside a policy one: replacing would not help either.
        let mixed = refusal(
            "Job",
            serde_json::json!([
                {"reason": "FieldValueInvalid", "message": "Invalid value: {}: field is immutable", "field": "spec.template"},
                {"reason": "FieldValueForbidden", "message": "Forbidden: disallowed by cluster policy", "field": "spec.template.spec.hostNetwork"}
            ]),
        );
        assert!(!is_immutable(causes(&mixed), immutable_rules().unwrap()));
        // A StatefulSet message on another field is not the StatefulSet rule.
        let other_field = refusal(
            "StatefulSet",
            serde_json::json!([{"reason": "FieldValueForbidden",
                "message": "Forbidden: updates to statefulset spec for fields other than 'replicas' are forbidden",
                "field": "spec.template"}]),
        );
        assert!(!is_immutable(
            causes(&other_field),
            immutable_rules().unwrap()
        ));
        // No causes at all (a body kube could not parse as Status): never immutable.
        let bare: kube::core::Status = serde_json::from_value(serde_json::json!(
            {"status": "Failure", "message": "field is immutable", "code": 422}))
        .unwrap();
        let e = api_err("", "Job/ns/x", kube::Error::Api(Box::new(bare)));
        assert!(!is_immutable(causes(&e), immutable_rules().unwrap()));
    }

    #[test]
    fn the_shipped_rules_load() {
        assert_eq!(immutable_rules().unwrap().len(), 5);
    }
}
