//! The component catalog: one data file per Genestack component (`components/<name>.yaml`),
//! describing how its install script renders it — chart and version key, values layering,
//! post-render overlay, value bindings from cluster objects — and where it sits in the rollout
//! (wave, `dependsOn`).
//!
//! The catalog shipped in `components/` is compiled into the binary (`build.rs`); a directory
//! given with `--catalog` (or a repo's own `components/`) replaces entries by name.

use kustomize_rs::yaml::{parse_one, Value};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// How a component is rendered.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// A Helm release, post-rendered through a kustomize overlay.
    #[default]
    Helm,
    /// A plain kustomize directory (`kubectl apply -k`, see [`KustomizeApp`]).
    Kustomize,
    /// Plain manifest files (`kubectl apply -f`, listed in `manifests`).
    Manifests,
}

/// The Helm release identity.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// Release name (`.Release.Name`).
    pub name: String,
    /// Namespace (`.Release.Namespace`).
    pub namespace: String,
    /// Whether the script passes `--create-namespace` (the release namespace is created when
    /// missing, before the release's objects, and never pruned: see
    /// [`crate::reconcile::prepare::add_created_namespaces`]). Default false.
    #[serde(default)]
    pub create_namespace: bool,
}

/// Where the chart comes from.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChartSource {
    /// Chart name (in the repo, or the directory under `--charts`).
    pub name: String,
    /// The chart's directory under a local charts directory (`--charts`, `charts.path`)
    /// when it is not `name` (default: `name`).
    #[serde(default)]
    pub dir: Option<String>,
    /// HTTP Helm repository URL.
    #[serde(default)]
    pub repo: Option<String>,
    /// OCI repository (`oci://registry/path`); the chart is pulled as
    /// `registry/path/<name>:<version, + written _>` (see [`crate::render::oci`]).
    #[serde(default)]
    pub oci: Option<String>,
    /// A chart in a Git repository (like Flux's `GitRepository` + `HelmChart` spec.chart path).
    #[serde(default)]
    pub git: Option<GitChart>,
    /// A chart directory inside the Genestack checkout (e.g.
    /// `base-helm-configs/openstack-api-exporter-chart`), as `install-openstack-exporter.sh`
    /// installs it, whatever the chart store ([`crate::render::charts::genestack_chart`]); such
    /// a chart has no pin: its version is its `Chart.yaml`'s.
    #[serde(default)]
    pub genestack_path: Option<String>,
    /// Key in `helm-chart-versions.yaml` (default: `name`).
    #[serde(default)]
    pub version_key: Option<String>,
    /// Whether the script passes `--version <pin>` (default true). `install-topolvm.sh`
    /// does not, so Helm takes the newest chart in the repository: a quirk (see [`Quirk`]).
    #[serde(default = "yes")]
    pub pinned: bool,
    /// Whether the first operator values file may switch the chart (`chart.repo_url`,
    /// `chart.repo_name`, `chart.service_name`, and `chart.service_crds` for a CRD chart), as
    /// most scripts read it with `yq` (default true).
    #[serde(default = "yes")]
    pub overridable: bool,
    /// The key under `chart:` of that file naming the chart (default `service_name`;
    /// `service_crds` for mariadb-operator's CRD chart, the script's `CRDS_NAME`).
    #[serde(default = "service_name")]
    pub override_key: String,
}

fn service_name() -> String {
    "service_name".into()
}

/// The same defaults as an empty `chart:` mapping (for `kind: kustomize` entries).
impl Default for ChartSource {
    fn default() -> Self {
        ChartSource {
            name: String::new(),
            dir: None,
            repo: None,
            oci: None,
            git: None,
            genestack_path: None,
            version_key: None,
            pinned: true,
            overridable: true,
            override_key: service_name(),
        }
    }
}

/// A chart kept in a Git repository.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GitChart {
    /// Repository URL (`https://`, `file://`, `git://`, ssh).
    pub url: String,
    /// The chart's directory in the repository.
    pub path: String,
    /// Tag, branch or commit; `{version}` is replaced by the pinned chart version
    /// (default `{version}`).
    #[serde(default = "version_ref")]
    pub r#ref: String,
}

fn version_ref() -> String {
    "{version}".into()
}

/// Values layering (`base-helm-configs/<dir>` → `global_overrides` → `helm-configs/<dir>`).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValuesSpec {
    /// The directory name under `base-helm-configs/` and `helm-configs/`.
    pub dir: String,
    /// Whether `helm-configs/global_overrides/*.yaml` is layered in.
    #[serde(default = "yes")]
    pub global_overrides: bool,
    /// The base values the script passes first, each relative to the Genestack checkout: a
    /// path ending in `.yaml` is one file (passed when it exists, as the scripts test with
    /// `-f`/`-e`), anything else a directory whose `*.yaml` are passed in glob order. Default:
    /// `[base-helm-configs/<dir>]`; `[]` passes none (a CRD chart with no `-f`).
    #[serde(default)]
    pub base: Option<Vec<String>>,
    /// Whether the operator's `helm-configs/<dir>/*.yaml` are passed last (default true).
    #[serde(default = "yes")]
    pub operator_overrides: bool,
}

fn yes() -> bool {
    true
}

/// The kustomize post-render step.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct PostRender {
    /// Overlay directory under `base-kustomize/` (e.g. `keystone/overlay`); scripts with
    /// `TARGET=${1:-base}` post-render through `<svc>/base` unless given an argument.
    pub overlay: String,
}

/// A setup script's steps after the release, as data (`bin/setup-envoy-gateway.sh` in its
/// default mode: every `etc/gateway-api/listeners/*` JSON patch, flattened, patched into the
/// Gateway with `kubectl patch --type=json`, and `kubectl apply -f` of `etc/gateway-api/routes`).
/// They are applied to the component's rendered objects ([`crate::render::setup`]) so the
/// object the release made and what the script patched into it stay one object with one
/// owner (one field manager). Paths are relative to the Genestack checkout (the scripts read
/// `/opt/genestack/etc/…` and rewrite `/etc/genestack/gateway-api/` from it on every run).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Setup {
    /// The script transcribed (e.g. `setup-envoy-gateway.sh`).
    pub script: String,
    /// Text replaced in every file read, in order (the script's
    /// `sed "s/your.domain.tld/${GATEWAY_DOMAIN}/g"`; `GATEWAY_DOMAIN` defaults to
    /// `cluster.local` in `setup-infrastructure.sh`): `[{from, to}]`.
    #[serde(default)]
    pub substitute: Vec<Substitution>,
    /// JSON patches (RFC 6902) applied to one rendered object.
    #[serde(default)]
    pub patches: Vec<SetupPatch>,
    /// Files or directories (every `.json`, `.yaml`, `.yml` in name order, as
    /// `kubectl apply -f DIR`) whose objects are added to the component.
    #[serde(default)]
    pub manifests: Vec<String>,
}

/// One text substitution of [`Setup::substitute`].
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Substitution {
    /// Literal text replaced.
    pub from: String,
    /// Its replacement.
    pub to: String,
}

/// One patch step of [`Setup::patches`]: every file of `dir` (a JSON array of RFC 6902
/// operations) in name order, flattened into one patch (`jq -s 'flatten'`), applied to
/// `target`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SetupPatch {
    /// Directory of patch files.
    pub dir: String,
    /// The object patched.
    pub target: ObjectRef,
}

/// How a bound value reaches Helm (`--set`, `--set-string`, `--set-file`).
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BindingType {
    /// `--set` (typed by Helm's strvals: true/false/null/integers).
    #[default]
    Set,
    /// `--set-string`.
    SetString,
    /// `--set-file` (the bytes verbatim).
    SetFile,
}

/// A reference to a cluster object.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct ObjectRef {
    /// Kind.
    pub kind: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// One value bound from the cluster at render time.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Binding {
    /// Dotted values path.
    pub path: String,
    /// Secret name (in the release namespace unless `namespace` is set).
    #[serde(default)]
    pub secret: Option<String>,
    /// Key of the Secret's data.
    #[serde(default)]
    pub key: Option<String>,
    /// Namespace of the Secret.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Another object whose fields the template reads (`{field:spec.clusterIP}`).
    #[serde(default)]
    pub object: Option<ObjectRef>,
    /// The Nodes a value is computed from (kube-ovn's `MASTER_NODES`, `replicaCount`).
    #[serde(default)]
    pub nodes: Option<NodeQuery>,
    /// String template: `{value}` (the Secret value), `{secret:ns/name/key}` (any Secret's
    /// value, for flags that join several), `{field:a.b.0.c}` (a field of `object`),
    /// `{var:name}` (a component variable), `{addresses:SEP}` / `{count}` (the `nodes`'
    /// addresses joined by SEP, or how many there are), `{freePort:N}` (the first port from N
    /// up that no Service's port list ends with, as `install-openstack-exporter.sh` searches).
    /// A template with no placeholder is a literal (`--set persistence.defaultClass=false`).
    #[serde(default)]
    pub template: Option<String>,
    /// How the value is passed.
    #[serde(default, rename = "type")]
    pub kind: BindingType,
}

/// Nodes selected by label, whose addresses a binding reads (`kubectl get nodes -l SELECTOR`
/// then `.status.addresses[] | select(.type == TYPE) | .address`, in list order).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeQuery {
    /// Equality label selector `key=value` (or `key` for existence).
    pub label_selector: String,
    /// Address type (`InternalIP`).
    #[serde(default = "internal_ip")]
    pub address_type: String,
}

fn internal_ip() -> String {
    "InternalIP".into()
}

/// Whether an entry belongs to `components: auto` (see [`crate::auto`]).
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AutoRule {
    /// Always (the infrastructure layer, keystone).
    Always,
    /// When `openstack-components.yaml` enables it.
    Enabled,
}

/// Where an entry was transcribed from: the install script and the Genestack commit.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Source {
    /// The script (`bin/install-<svc>.sh`, `bin/setup-infrastructure.sh`).
    pub script: String,
    /// The Genestack commit the script was read at.
    pub commit: String,
}

/// A duration as Helm's `--timeout` takes it: Go's `time.ParseDuration` text (`5m`, `120s`,
/// `1h30m`, `1.5h`; units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), parsed when the entry is
/// read, so a malformed one is a [`CatalogError`] naming the file. Helm reads `--timeout`
/// with pflag's `DurationVar` (helm `pkg/cmd/install.go`, default `300*time.Second`), i.e.
/// `time.ParseDuration`; the parser is the `go-parse-duration` port of it. Negative durations
/// are refused. Serialises back as the text it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoDuration {
    /// The text as written.
    pub text: String,
    /// Its value.
    pub duration: Duration,
}

/// A Go duration text that does not parse ([`GoDuration::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {cause} (Go duration text such as 5m, 120s, 1h30m)")]
pub struct DurationError {
    /// The text.
    pub text: String,
    /// What the parser said (`go_parse_duration::Error` is not a `std::error::Error`).
    pub cause: String,
}

impl GoDuration {
    /// Parses Go duration text.
    ///
    /// # Errors
    /// [`DurationError`]: not a Go duration, or negative.
    pub fn parse(text: &str) -> Result<GoDuration, DurationError> {
        let err = |cause: String| DurationError {
            text: text.to_string(),
            cause,
        };
        let nanos = go_parse_duration::parse_duration(text).map_err(|e| match e {
            go_parse_duration::Error::ParseError(m) => err(m),
        })?;
        let nanos = u64::try_from(nanos).map_err(|_| err("negative".into()))?;
        Ok(GoDuration {
            text: text.to_string(),
            duration: Duration::from_nanos(nanos),
        })
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        GoDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for GoDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Helm flags the script passes besides values, and how the agent gates on them.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmFlags {
    /// `--timeout`, as the script passes it (every Helm script passes `120m`,
    /// `install-openstack-exporter.sh` `15m`). The agent's limit for this component's health
    /// gate in its wave (its objects and its [`WaitFor`] gates without a timeout of their
    /// own), whatever the entry's kind; absent: `--health-timeout` (default 300 s, Helm's
    /// default `--timeout` of 5m0s).
    #[serde(default)]
    pub timeout: Option<GoDuration>,
    /// `--wait`. No Genestack script passes it: Helm then returns once the objects are
    /// created (its hooks and `crds/` still waited on), and the scripts get their ordering
    /// from `kubectl wait` steps ([`WaitFor`]), openstack-helm's dependency init containers
    /// and retries. Stackwave's waves replace those (issue 13: health gates instead of sleeps
    /// and retries), so absent means the agent's default: every object the component applied
    /// is waited on (kstatus). `true` is the same. `false` (`helm install` without `--wait`,
    /// opted into explicitly) waits only for what Helm itself waits on — CRDs `Established`,
    /// hooks — plus webhook backends' endpoints (writes through them fail otherwise) and the
    /// entry's `waitFor` gates; its Deployments, StatefulSets, DaemonSets, Jobs and CRs are
    /// not waited for.
    #[serde(default)]
    pub wait: Option<bool>,
    /// `--skip-crds`: the chart's `crds/` directory is not installed (the render's
    /// [`crate::render::Rendered::crds`] is empty, so the agent applies none of them).
    #[serde(default)]
    pub skip_crds: bool,
}

/// A health gate the setup scripts wait on before going on (`kubectl wait --for=condition=…`,
/// retry loops), enforced by the agent: before the next wave starts, the named object
/// exists and holds the condition, or the wave fails after the gate's `timeout` (else the
/// component's `helm.timeout`, else `--health-timeout`), naming the object and condition.
/// The object need not be one the component applies (the Gateway `flex-gateway` is
/// programmed by envoy-gateway's controller from objects of its own).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitFor {
    /// `apiVersion` of the object (optional: without it the kind is resolved through the
    /// cluster's discovery, and must be served by exactly one API group).
    #[serde(default)]
    pub api_version: Option<String>,
    /// Kind of the object waited on.
    pub kind: String,
    /// Namespace (empty for cluster-scoped).
    #[serde(default)]
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The condition type (`Available`, `Ready`, `Established`, `Programmed`; matched as
    /// `kubectl wait --for=condition=` does: case-insensitively, status `True`) or
    /// `endpoints` (a Service with at least one ready EndpointSlice endpoint).
    pub condition: String,
    /// Time limit (the script's `kubectl wait --timeout`).
    #[serde(default)]
    pub timeout: Option<GoDuration>,
}

/// A step the script performs before Helm runs, as data (not executed by the agent): a
/// manifest file it applies (`kubectl apply -f`, relative to the operator tree
/// `/etc/genestack`), or a note for work Stackwave does not reproduce (node labels,
/// generated files).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Prepare {
    /// A manifest the script applies first (relative to `/etc/genestack`).
    #[serde(default)]
    pub apply: Option<String>,
    /// What the step does, when it is not a plain apply.
    #[serde(default)]
    pub note: Option<String>,
}

/// A place where the script does something surprising. By default the entry reproduces the
/// script (so renders stay byte-identical) and `render`/`plan` print `warning`; an entry that
/// lists the quirk's `id` in `intended` gets `intended` (a JSON merge patch, RFC 7386, over
/// the entry) applied when the catalog is loaded, and the warning is not printed.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Quirk {
    /// Short identifier (`post-render-drops-chart`).
    pub id: String,
    /// The warning printed while the script's behaviour is kept.
    pub warning: String,
    /// Merge patch giving the intended behaviour.
    #[serde(default)]
    pub intended: Option<serde_json::Value>,
}

/// A plain kustomize application (`kubectl apply -k DIR`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct KustomizeApp {
    /// The directory, relative to the operator tree's `kustomize/` (which mirrors Genestack's
    /// `base-kustomize/`), e.g. `openstack/base`.
    pub path: String,
    /// `kubectl -n NS apply -k`: the namespace given on the command line, if any (recorded;
    /// the apply stage puts namespaced objects without one in `release.namespace`, which
    /// the entry sets to the same namespace).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// A variable computed from another component's values (e.g. kube-ovn's SSL switch).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VarSpec {
    /// Component whose composed values files are read.
    pub values_of: String,
    /// Dotted path in those values.
    pub path: String,
    /// The value compared against.
    pub equals: serde_json::Value,
    /// Result when equal.
    pub then: String,
    /// Result otherwise.
    #[serde(rename = "else")]
    pub otherwise: String,
}

/// One catalog entry.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    /// Component name.
    pub name: String,
    /// How it renders.
    #[serde(default)]
    pub kind: ComponentKind,
    /// Rollout wave (lower first).
    #[serde(default)]
    pub wave: i32,
    /// Components that must be healthy first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Where the entry was transcribed from.
    #[serde(default)]
    pub source: Option<Source>,
    /// Membership of `components: auto`; absent: only when listed by name.
    #[serde(default)]
    pub auto: Option<AutoRule>,
    /// Genestack's own template for new scripts (`install-service-template.sh`): listed so
    /// the catalog covers every script, never enabled or rendered.
    #[serde(default)]
    pub example: bool,
    /// Helm release (for a kustomize application: its identity and namespace).
    pub release: Release,
    /// Chart source (unused for `kind: kustomize`).
    #[serde(default)]
    pub chart: ChartSource,
    /// Values layering (unused for `kind: kustomize`).
    #[serde(default)]
    pub values: ValuesSpec,
    /// `kind: kustomize`: the directory applied.
    #[serde(default)]
    pub kustomize: Option<KustomizeApp>,
    /// `kind: manifests`: the files applied, relative to the operator tree `/etc/genestack`
    /// (Genestack's `manifests/` mirrors it).
    #[serde(default)]
    pub manifests: Vec<String>,
    /// Helm flags besides values.
    #[serde(default)]
    pub helm: HelmFlags,
    /// Script-side steps before Helm runs.
    #[serde(default)]
    pub prepare: Vec<Prepare>,
    /// Health gates the setup scripts wait on after this component.
    #[serde(default)]
    pub wait_for: Vec<WaitFor>,
    /// Script quirks (reproduced unless named in `intended`).
    #[serde(default)]
    pub quirks: Vec<Quirk>,
    /// Quirk ids this entry opts out of: their `intended` patch applies.
    #[serde(default)]
    pub intended: Vec<String>,
    /// Post-render overlay.
    #[serde(default)]
    pub post_render: Option<PostRender>,
    /// A setup script's steps after the release ([`Setup`]).
    #[serde(default)]
    pub setup: Option<Setup>,
    /// Values bound from cluster objects.
    #[serde(default)]
    pub bindings: Vec<Binding>,
    /// Variables for binding templates.
    #[serde(default)]
    pub vars: BTreeMap<String, VarSpec>,
}

/// A catalog loading error, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("component catalog {file}: {cause}")]
pub struct CatalogError {
    /// The file.
    pub file: String,
    /// What is wrong.
    pub cause: String,
}

/// Converts the engine's YAML tree to JSON (for typed deserialisation).
pub fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Uint(u) => serde_json::Value::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Seq(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Map(m) => {
            serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

/// Parses one component file.
///
/// # Errors
/// Malformed YAML or fields.
pub fn parse(text: &str, file: &str) -> Result<Component, CatalogError> {
    let err = |cause: String| CatalogError {
        file: file.to_string(),
        cause,
    };
    let v = parse_one(text).map_err(|e| err(e.to_string()))?;
    let mut json = to_json(&v);
    apply_intended(&mut json).map_err(|e| err(e.to_string()))?;
    serde_json::from_value(json).map_err(|e| err(e.to_string()))
}

/// An `intended:` id of a catalog entry that cannot be applied ([`apply_intended`]).
#[derive(Debug, thiserror::Error)]
pub enum IntendedError {
    /// No quirk of the entry has this id.
    #[error("intended: no quirk with id {0:?}")]
    NoQuirk(String),
    /// The quirk has no `intended` behaviour to opt into.
    #[error("intended: quirk {0:?} has no intended behaviour")]
    NoIntended(String),
}

/// Applies the `intended` merge patch of every quirk the entry names in `intended`.
///
/// # Errors
/// An `intended` id that names no quirk, or a quirk without an intended behaviour.
pub fn apply_intended(entry: &mut serde_json::Value) -> Result<(), IntendedError> {
    let wanted: Vec<String> = entry
        .get("intended")
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for id in wanted {
        let patch = entry
            .get("quirks")
            .and_then(serde_json::Value::as_array)
            .and_then(|qs| {
                qs.iter()
                    .find(|q| q.get("id").and_then(|i| i.as_str()) == Some(&id))
            })
            .ok_or_else(|| IntendedError::NoQuirk(id.clone()))?
            .get("intended")
            .cloned()
            .ok_or_else(|| IntendedError::NoIntended(id.clone()))?;
        merge_patch(entry, &patch);
    }
    Ok(())
}

/// JSON merge patch (RFC 7386): objects merge recursively, `null` removes, anything else
/// replaces.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(Default::default());
    }
    if let serde_json::Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
    }
}

impl Component {
    /// The warnings `render` and `plan` print for this entry: one per quirk it keeps (not
    /// named in `intended`), as `component NAME: QUIRK-ID: WARNING`.
    pub fn quirk_warnings(&self) -> Vec<String> {
        self.quirks
            .iter()
            .filter(|q| !self.intended.contains(&q.id))
            .map(|q| format!("component {}: {}: {}", self.name, q.id, q.warning))
            .collect()
    }
}

/// The catalog compiled into the binary (`components/*.yaml`).
pub const BUILTIN: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/catalog.rs"));

/// The component catalog, by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Components by name.
    pub components: BTreeMap<String, Component>,
}

impl Catalog {
    /// The built-in catalog.
    ///
    /// # Errors
    /// Only if a shipped file is malformed.
    pub fn builtin() -> Result<Catalog, CatalogError> {
        let mut c = Catalog::default();
        for (file, text) in BUILTIN {
            let comp = parse(text, file)?;
            c.components.insert(comp.name.clone(), comp);
        }
        Ok(c)
    }

    /// Layers the `*.yaml` files of a directory over this catalog (same name replaces).
    ///
    /// # Errors
    /// Unreadable or malformed files.
    pub fn overlay_dir(&mut self, dir: &Path) -> Result<(), CatalogError> {
        let rd = std::fs::read_dir(dir).map_err(|e| CatalogError {
            file: dir.display().to_string(),
            cause: e.to_string(),
        })?;
        let mut files: Vec<_> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| CatalogError {
                file: f.display().to_string(),
                cause: e.to_string(),
            })?;
            let comp = parse(&text, &f.display().to_string())?;
            self.components.insert(comp.name.clone(), comp);
        }
        Ok(())
    }

    /// A component by name.
    pub fn get(&self, name: &str) -> Option<&Component> {
        self.components.get(name)
    }

    /// The quirk warnings of the named components ([`Component::quirk_warnings`]), in order.
    pub fn quirk_warnings(&self, names: &[String]) -> Vec<String> {
        names
            .iter()
            .filter_map(|n| self.get(n))
            .flat_map(Component::quirk_warnings)
            .collect()
    }

    /// Prints [`Catalog::quirk_warnings`] to stderr as `warning: …` lines (`render` and
    /// `plan` keep stdout for their output).
    pub fn warn_quirks(&self, names: &[String]) {
        for w in self.quirk_warnings(names) {
            eprintln!("warning: {w}");
        }
    }
}
