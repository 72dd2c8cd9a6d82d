//! `secret-new` (warning, offline) and `secret-missing` (error, with a cluster): the Secrets
//! the new revision's bindings read (the install scripts' `--set` flags, in the catalog's
//! `bindings`) that the old revision did not read / that do not exist in the cluster.

use crate::upgrade::check::{Context, Finding, Severity};

/// Adds the Secret findings.
pub fn check(ctx: &Context, out: &mut Vec<Finding>) {
    let (old, new) = (ctx.up.from.bound_secrets(), ctx.up.to.bound_secrets());
    for ((ns, name), users) in new.iter().filter(|(k, _)| !old.contains_key(*k)) {
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        out.push(Finding::new(
            "secret-new",
            Severity::Warning,
            users[0],
            format!(
                "Secret {ns}/{name} is newly needed (read by {}); create it before this revision applies",
                users.join(", ")
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
                let users: Vec<&str> = users.iter().map(String::as_str).collect();
                out.push(Finding::new(
                    "secret-missing",
                    Severity::Error,
                    users[0],
                    format!(
                        "Secret {ns}/{name} does not exist in the cluster (read by {})",
                        users.join(", ")
                    ),
                ));
            }
        }
    }
}
