//! The revision store's key at rest (issue 15): in the cluster a Secret, created on first
//! start when absent; `stackwave store rotate-key` re-encrypts every object under a new key
//! (Secret or file), and a rotation cut short still opens. Runs unchanged against a real API
//! server (`STACKWAVE_TEST_KUBECONFIG`): the Secret is in the test's namespace.

use serde_json::json;
use stackwave::keyring::{self, KeySource};
use stackwave::record::Store;
use stackwave_tests::TestCluster;

fn objects() -> Vec<serde_json::Value> {
    (0..5)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("s{i}")},
                        "data": {"password": format!("c2VjcmV0{i}")}})
        })
        .collect()
}

async fn secret_key(tc: &TestCluster, ns: &str, field: &str) -> Option<String> {
    let s = tc
        .cluster
        .get(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "store-key", "namespace": ns}}))
        .await
        .unwrap()?;
    s.pointer(&format!("/data/{field}"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// A fresh namespace of the test's, an empty state directory, and the key source naming the
/// Secret `store-key` in that namespace.
async fn secret_keyed(tc: &TestCluster, name: &str) -> (String, std::path::PathBuf, KeySource) {
    let ns = tc.ns(name);
    tc.cluster
        .create(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
        .await
        .unwrap();
    let state = std::env::temp_dir().join(format!("stackwave-{name}-{}", tc.suffix));
    let _ = std::fs::remove_dir_all(&state);
    let source = KeySource::Secret {
        namespace: ns.clone(),
        name: "store-key".into(),
    };
    (ns, state, source)
}

#[tokio::test]
async fn the_key_secret_is_made_once_and_rotation_reencrypts() {
    let tc = TestCluster::start(Default::default()).await;
    let (ns, state, source) = secret_keyed(&tc, "storekey").await;
    let store = keyring::open_store(Some(&tc.cluster), &state, &source)
        .await
        .unwrap();
    let shas: Vec<String> = objects()
        .iter()
        .map(|o| store.put_object(o).unwrap())
        .collect();
    drop(store);
    let first = secret_key(&tc, &ns, "key").await.expect("Secret made");
    assert!(!state.join("store.key").exists(), "no key on the volume");
    // A second open (another replica, a restart) uses the same key.
    let again = keyring::open_store(Some(&tc.cluster), &state, &source)
        .await
        .unwrap();
    assert_eq!(again.get_object(&shas[0]).unwrap(), objects()[0]);
    drop(again);
    assert_eq!(secret_key(&tc, &ns, "key").await.unwrap(), first);

    let n = keyring::rotate(Some(&tc.cluster), &state, &source)
        .await
        .unwrap();
    assert_eq!(n, 5);
    let second = secret_key(&tc, &ns, "key").await.unwrap();
    assert_ne!(second, first, "a new key");
    assert_eq!(secret_key(&tc, &ns, "next").await, None);
    let rotated = keyring::open_store(Some(&tc.cluster), &state, &source)
        .await
        .unwrap();
    for (o, sha) in objects().iter().zip(&shas) {
        assert_eq!(&rotated.get_object(sha).unwrap(), o);
    }
    // The old key no longer decrypts anything.
    use base64::Engine;
    let old: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(&first)
        .unwrap()
        .try_into()
        .unwrap();
    assert!(!rotated.key_fits(&old).unwrap());
    drop(rotated);
    let _ = std::fs::remove_dir_all(&state);
    tc.cleanup().await;
}

#[test]
fn file_key_rotation_and_a_rotation_cut_short() {
    let state = std::env::temp_dir().join(format!("stackwave-filekey-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let key_file = state.join("store.key");
    let source = KeySource::File(key_file.clone());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt
        .block_on(keyring::open_store(None, &state, &source))
        .unwrap();
    let shas: Vec<String> = objects()
        .iter()
        .map(|o| store.put_object(o).unwrap())
        .collect();
    drop(store);
    let old = std::fs::read(&key_file).unwrap();
    assert_eq!(
        rt.block_on(keyring::rotate(None, &state, &source)).unwrap(),
        5
    );
    let new = std::fs::read(&key_file).unwrap();
    assert_ne!(old, new);
    let s = Store::open_existing(&state.join("revisions.sqlite"), &key_file).unwrap();
    assert_eq!(s.get_object(&shas[4]).unwrap(), objects()[4]);
    drop(s);
    // Cut short after the re-encryption: the new key only in store.key.next.
    std::fs::write(&key_file, &old).unwrap();
    std::fs::write(state.join("store.key.next"), &new).unwrap();
    let s = rt
        .block_on(keyring::open_store(None, &state, &source))
        .unwrap();
    assert_eq!(s.get_object(&shas[1]).unwrap(), objects()[1]);
    assert_eq!(std::fs::read(&key_file).unwrap(), new);
    assert!(!state.join("store.key.next").exists());
    drop(s);
    let _ = std::fs::remove_dir_all(&state);
}

/// `stackwave rollback --store-key-secret`: the control command opens the agent's
/// Secret-keyed store through the cluster (no key file appears on the volume), and goes on to
/// resolve the target in it.
#[tokio::test]
async fn rollback_opens_a_secret_keyed_store() {
    let tc = TestCluster::start(Default::default()).await;
    let (_, state, source) = secret_keyed(&tc, "rbkey").await;
    let store = keyring::open_store(Some(&tc.cluster), &state, &source)
        .await
        .unwrap();
    store.put_object(&objects()[0]).unwrap();
    drop(store);
    let err = stackwave::control::rollback_with_key(
        &state,
        tc.cluster.clone(),
        &source,
        "7",
        false,
        Default::default(),
        &|_| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            stackwave::control::ControlError::Target(stackwave::control::TargetError::NoRevision(
                7
            ))
        ),
        "{err}"
    );
    assert!(!state.join("store.key").exists(), "no key file made: {err}");
    let _ = std::fs::remove_dir_all(&state);
}
