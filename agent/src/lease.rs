//! Leader election on a `coordination.k8s.io/v1` Lease, so `replicas: 2` is safe: only the
//! replica holding the Lease fetches, applies and records; the other waits as a standby and
//! takes over once the holder stops renewing (at most one lease duration after its last
//! renewal, plus one retry).
//!
//! The election itself is the maintained crate `kube-lease-manager` (on our `kube` 5 /
//! `k8s-openapi` 0.29): the holder renews `spec.renewTime` `grace` seconds before
//! `renewTime + leaseDurationSeconds`; a candidate takes the Lease only once that instant has
//! passed, with a server-side apply of `holderIdentity` that conflicts when another candidate
//! was faster. These are client-go's rules (`tools/leaderelection/leaderelection.go`:
//! `tryAcquireOrRenew` takes a lease only when `observedTime + LeaseDuration` is past, and a
//! leader stops leading when it cannot renew). On top of the crate, [`Elector::lead`] checks
//! the Lease with a GET before each loop iteration (holder is us, not expired: client-go's
//! `IsLeader` before acting) and drops the iteration the moment the crate reports the lease
//! lost, so a deposed leader stops writing mid-wave.
//!
//! A killed leader leaves its revision `applying` in the shared revision store; the new
//! leader's [`crate::reconcile::Agent::restore`] marks it `interrupted` and the next sync of
//! that commit continues it under the same revision number (never a second revision).

use k8s_openapi::api::coordination::v1::Lease;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Default Lease name (`--lease-name`).
pub const DEFAULT_LEASE_NAME: &str = "stackwave";
/// Default Lease namespace (`--lease-namespace`; the deployment's namespace).
pub const DEFAULT_LEASE_NAMESPACE: &str = "stackwave-system";

/// Where and how long the Lease is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace (must exist).
    pub namespace: String,
    /// `spec.leaseDurationSeconds`: how long the Lease stays valid after the last renewal; a
    /// standby takes over within this time (plus a retry) after the leader dies. At least 2 s.
    pub duration: Duration,
    /// This replica's `holderIdentity` (unique among the replicas: the Pod name in a cluster).
    pub identity: String,
}

/// `stackwave run` flags of the election (none given: no election, single process).
#[derive(Debug, Clone, clap::Args)]
pub struct LeaseArgs {
    /// Elect a leader among replicas on this coordination.k8s.io/v1 Lease; only the leader
    /// fetches, applies and records. Without it the agent runs alone (the state directory's
    /// lock file still keeps CLI processes out of a running iteration).
    #[arg(long)]
    pub lease_name: Option<String>,
    /// Namespace of the Lease.
    #[arg(long, default_value = DEFAULT_LEASE_NAMESPACE, requires = "lease_name")]
    pub lease_namespace: String,
    /// Seconds the Lease stays valid after its last renewal (a standby takes over within it).
    #[arg(long, default_value_t = 15, requires = "lease_name")]
    pub lease_duration: u64,
    /// This replica's holder identity (default: $POD_NAME, else the host name and process id).
    #[arg(long, requires = "lease_name")]
    pub lease_identity: Option<String>,
}

impl LeaseArgs {
    /// The election these flags ask for, if any.
    pub fn config(&self) -> Option<LeaseConfig> {
        let name = self.lease_name.clone()?;
        Some(LeaseConfig {
            name,
            namespace: self.lease_namespace.clone(),
            duration: Duration::from_secs(self.lease_duration),
            identity: self.lease_identity.clone().unwrap_or_else(default_identity),
        })
    }
}

/// `$POD_NAME` (the downward API in `deploy/deployment.yaml`), else `<hostname>-<pid>`.
pub fn default_identity() -> String {
    if let Ok(p) = std::env::var("POD_NAME") {
        if !p.is_empty() {
            return p;
        }
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "stackwave".to_string()
    } else {
        host
    };
    format!("{host}-{}", std::process::id())
}

/// Why the election failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The lease duration is shorter than 2 s (the renewal must fit inside it).
    #[error("--lease-duration {0} s: must be at least 2 seconds")]
    Duration(u64),
    /// Creating or reading the Lease failed.
    #[error("Lease {namespace}/{name}: {source}")]
    Manager {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// The crate's error.
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    /// Reading the Lease to confirm leadership failed.
    #[error("Lease {namespace}/{name}: {source}")]
    Get {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// Aborts the election task when dropped, without releasing the Lease: a process that dies
/// releases nothing either, and the standby must then wait out the lease duration. A
/// graceful stop ([`Elector::release`]) releases it at once.
struct AbortOnDrop(Option<ElectionTask>);

/// The crate's background election task.
type ElectionTask = tokio::task::JoinHandle<
    Result<kube_lease_manager::LeaseManager, kube_lease_manager::LeaseManagerError>,
>;

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
    }
}

/// A running election: this replica's view of who leads.
pub struct Elector {
    config: LeaseConfig,
    api: kube::Api<Lease>,
    // Field order matters: the task is aborted before the receiver is dropped, so the crate
    // never sees a closed channel (which would make it release the Lease).
    task: AbortOnDrop,
    leader: watch::Receiver<bool>,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("config", &self.config)
            .field("leader", &*self.leader.borrow())
            .finish()
    }
}

impl Elector {
    /// Creates the Lease if absent (a plain create: another replica creating it first is
    /// fine) and starts campaigning in the background.
    ///
    /// # Errors
    /// [`LeaseError::Duration`]; [`LeaseError::Manager`] when the Lease cannot be read or
    /// created (namespace missing, RBAC, API unreachable).
    pub async fn start(client: kube::Client, config: LeaseConfig) -> Result<Elector, LeaseError> {
        let secs = config.duration.as_secs();
        if secs < 2 {
            return Err(LeaseError::Duration(secs));
        }
        // Renew a third of the duration before expiry (client-go's defaults: 15 s lease,
        // 10 s renew deadline, 2 s retry).
        let grace = (secs / 3).max(1);
        let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &config.name)
            .with_namespace(&config.namespace)
            .with_identity(&config.identity)
            .with_duration(secs)
            .with_grace(grace)
            .with_field_manager(format!("stackwave-lease-{}", config.identity))
            .build()
            .await
            .map_err(|source| LeaseError::Manager {
                namespace: config.namespace.clone(),
                name: config.name.clone(),
                source,
            })?;
        let (leader, task) = manager.watch().await;
        let api = kube::Api::namespaced(client, &config.namespace);
        Ok(Elector {
            config,
            api,
            task: AbortOnDrop(Some(task)),
            leader,
        })
    }

    /// This replica's identity and the Lease, for logs: `identity on ns/name`.
    pub fn describe(&self) -> String {
        format!(
            "{} on Lease {}/{}",
            self.config.identity, self.config.namespace, self.config.name
        )
    }

    /// Whether the election last reported this replica as the holder.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Waits until this replica holds the Lease.
    pub async fn wait_leader(&mut self) {
        // An Err means the election task ended (only at shutdown): wait forever then.
        if self.leader.wait_for(|l| *l).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves when this replica stops holding the Lease.
    async fn lost(&mut self) {
        if self.leader.wait_for(|l| !*l).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether the Lease, read now, names this replica as a holder that has not expired
    /// (`renewTime + leaseDurationSeconds` in the future).
    ///
    /// # Errors
    /// [`LeaseError::Get`]: the Lease cannot be read.
    pub async fn confirm(&self) -> Result<bool, LeaseError> {
        let lease = self
            .api
            .get(&self.config.name)
            .await
            .map_err(|source| LeaseError::Get {
                namespace: self.config.namespace.clone(),
                name: self.config.name.clone(),
                source,
            })?;
        Ok(holds(&lease, &self.config.identity, SystemTime::now()))
    }

    /// Runs `work` as the leader: `None` without running it when the Lease, read now, is not
    /// ours ([`Elector::confirm`]), or when the election reports the Lease lost before `work`
    /// is done (then `work` is dropped where it stands: a revision mid-wave stays `applying`
    /// in the store, for the next leader to continue).
    pub async fn lead<T>(&mut self, work: impl std::future::Future<Output = T>) -> Option<T> {
        match self.confirm().await {
            Ok(true) => {}
            Ok(false) | Err(_) => return None,
        }
        tokio::select! {
            out = work => Some(out),
            () = self.lost() => None,
        }
    }

    /// Releases the Lease (graceful shutdown), so a standby takes over at once.
    pub async fn release(self) {
        let Elector {
            mut task, leader, ..
        } = self;
        let handle = task.0.take();
        // The crate releases the Lease once every receiver is gone; give it a moment.
        drop(leader);
        if let Some(h) = handle {
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
    }
}

/// Whether `lease` is held by `identity` and not expired at `now` (its `renewTime` plus
/// `leaseDurationSeconds` after `now`).
pub fn holds(lease: &Lease, identity: &str, now: SystemTime) -> bool {
    let Some(spec) = &lease.spec else {
        return false;
    };
    if spec.holder_identity.as_deref() != Some(identity) {
        return false;
    }
    let (Some(renew), Some(secs)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return false;
    };
    let renewed: SystemTime = renew.0.into();
    let valid = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    renewed + valid > now
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: &str, renewed: SystemTime, secs: i32) -> Lease {
        Lease {
            spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(
                    k8s_openapi::jiff::Timestamp::try_from(renewed).unwrap(),
                )),
                lease_duration_seconds: Some(secs),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_is_held_until_renew_time_plus_duration() {
        let t = SystemTime::now();
        let l = lease("a", t, 10);
        assert!(holds(&l, "a", t + Duration::from_secs(9)));
        assert!(!holds(&l, "a", t + Duration::from_secs(11)));
        assert!(!holds(&l, "b", t));
        assert!(!holds(&Lease::default(), "a", t));
    }

    #[test]
    fn flags_name_the_lease() {
        let a = LeaseArgs {
            lease_name: Some("agent".into()),
            lease_namespace: "ops".into(),
            lease_duration: 7,
            lease_identity: Some("pod-0".into()),
        };
        assert_eq!(
            a.config(),
            Some(LeaseConfig {
                name: "agent".into(),
                namespace: "ops".into(),
                duration: Duration::from_secs(7),
                identity: "pod-0".into()
            })
        );
        let none = LeaseArgs {
            lease_name: None,
            ..a
        };
        assert_eq!(none.config(), None);
    }
}
