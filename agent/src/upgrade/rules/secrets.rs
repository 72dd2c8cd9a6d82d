//! `secret-new` (warning, offline) and `secret-missing` (error, with a cluster): the Secrets
//! the new revision's bindings read (the install scripts' `--set` flags, in the catalog's
//! `bindings`) that the old revision did not read / that do not exist in the cluster.

use crate::upgrade::check::{Context, Finding, Severity};

fn first(users: &std::collections::BTreeSet<String>) -> &str {
    users.iter().next().map_or("*", String::as_str)
}

fn list(users: &std::collections::BTreeSet<String>) -> String {
    users.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// Adds the Secret findings.
pub fn check(ctx: &Context, out: &mut Vec<Finding>) {
    let (old, new) = (ctx.up.from.bound_secrets(), ctx.up.to.bound_secrets());
    for ((ns, name), users) in new.iter().filter(|(k, _)| !old.contains_key(*k)) {
        out.push(Finding::new(
            "secret-new",
            Severity::Warning,
            first(users),
            format!(
                "Secret {ns}/{name} is newly needed (read by {}); create it before this revision applies",
                list(users)
            ),
        ));
    }
    match ctx.live_secrets {
        None => out.push(Finding::new(
            "secret-missing",
            Severity::Info,
            "*",
            "skipped: no cluster given (--server/--kubeconfig), so which Secrets exist cannot be told".into(),
        )),
        Some(live) => {
            for ((ns, name), users) in new.iter().filter(|(k, _)| !live.contains(*k)) {
                out.push(Finding::new(
                    "secret-missing",
                    Severity::Error,
                    first(users),
                    format!(
                        "Secret {ns}/{name} does not exist in the cluster (read by {})",
                        list(users)
                    ),
                ));
            }
        }
    }
}
