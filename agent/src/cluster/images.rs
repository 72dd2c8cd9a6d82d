//! The image IDs actually running for a revision's workloads (a report recorded with the
//! revision; never a reason to fail it).

use super::{Cluster, ClusterError};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

/// Image reference → image ID (digest) of the containers running for these objects' Pod
/// templates: Pods listed by each workload's `spec.selector.matchLabels` in its
/// namespace, `status.containerStatuses[]` and `initContainerStatuses[]` read
/// (`image` as rendered, `imageID` as the kubelet reports it). References with no running
/// container are left out.
///
/// # Errors
/// API errors.
pub async fn running<'a>(
    cluster: &Cluster,
    objs: impl Iterator<Item = &'a Json>,
) -> Result<BTreeMap<String, String>, ClusterError> {
    let mut out = BTreeMap::new();
    for o in objs {
        let Some(sel) = o
            .pointer("/spec/selector/matchLabels")
            .and_then(Json::as_object)
            .filter(|m| !m.is_empty())
        else {
            continue;
        };
        if o.pointer("/spec/template/spec").is_none() {
            continue;
        }
        let wanted = crate::record::images(o);
        let selector = sel
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(",");
        let sample = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": o.pointer("/metadata/namespace").cloned().unwrap_or(json!("default"))}});
        for pod in cluster.list(&sample, &selector).await? {
            for list in ["/status/containerStatuses", "/status/initContainerStatuses"] {
                for cs in pod
                    .pointer(list)
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                {
                    let (Some(image), Some(id)) = (cs["image"].as_str(), cs["imageID"].as_str())
                    else {
                        continue;
                    };
                    if !id.is_empty() && wanted.iter().any(|w| w == image) {
                        out.insert(image.to_string(), id.to_string());
                    }
                }
            }
        }
    }
    Ok(out)
}
