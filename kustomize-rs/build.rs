//! Compiles the reference data files (`data/openapi-*.json`, `data/fieldspecs/*.yaml`) into
//! static, sorted tables, so a build pays nothing to load them. The data files stay the
//! source of truth; this only changes their representation.

use saphyr_parser::{Event, Parser};
use std::fmt::Write;
use std::path::Path;

fn lit(s: &str) -> String {
    format!("{s:?}")
}

/// A tiny event-to-tree conversion for the field-spec tables (mappings, sequences, scalars).
#[derive(Debug)]
enum Node {
    Scalar(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

fn node(p: &mut Parser<saphyr_parser::StrInput>, ev: Event) -> Node {
    match ev {
        Event::Scalar(v, ..) => Node::Scalar(v.to_string()),
        Event::SequenceStart(..) => {
            let mut items = Vec::new();
            loop {
                let (e, _) = p.next_event().expect("event").expect("valid yaml");
                if matches!(e, Event::SequenceEnd) {
                    break;
                }
                items.push(node(p, e));
            }
            Node::Seq(items)
        }
        Event::MappingStart(..) => {
            let mut items = Vec::new();
            loop {
                let (e, _) = p.next_event().expect("event").expect("valid yaml");
                if matches!(e, Event::MappingEnd) {
                    break;
                }
                let Node::Scalar(k) = node(p, e) else {
                    panic!("non-scalar key")
                };
                let (v, _) = p.next_event().expect("event").expect("valid yaml");
                items.push((k, node(p, v)));
            }
            Node::Map(items)
        }
        other => panic!("unexpected event {other:?}"),
    }
}

fn parse_yaml(src: &str) -> Node {
    let mut p = Parser::new_from_str(src);
    loop {
        let (e, _) = p.next_event().expect("event").expect("valid yaml");
        match e {
            Event::StreamStart | Event::DocumentStart(_) => continue,
            Event::StreamEnd => return Node::Map(Vec::new()),
            other => return node(&mut p, other),
        }
    }
}

fn get<'a>(m: &'a Node, k: &str) -> Option<&'a Node> {
    match m {
        Node::Map(items) => items.iter().find(|(kk, _)| kk == k).map(|(_, v)| v),
        _ => None,
    }
}

fn s(m: &Node, k: &str) -> String {
    match get(m, k) {
        Some(Node::Scalar(v)) => v.clone(),
        _ => String::new(),
    }
}

fn specs(list: Option<&Node>) -> String {
    let mut out = String::from("&[");
    if let Some(Node::Seq(items)) = list {
        for it in items {
            let create = s(it, "create") == "true";
            write!(
                out,
                "Spec {{ group: {}, version: {}, kind: {}, path: {}, create: {create} }},",
                lit(&s(it, "group")),
                lit(&s(it, "version")),
                lit(&s(it, "kind")),
                lit(&s(it, "path"))
            )
            .unwrap();
        }
    }
    out.push(']');
    out
}

fn main() {
    let data = Path::new("data");
    println!("cargo:rerun-if-changed=data");
    // The lean `kustomize` binary links as a fixed-address (non-PIE) executable on Linux: the
    // tables below are full of `&str` pointers, which in a position-independent executable are
    // ~22,000 relative relocations the loader applies at every start (0.5 MB of relocation
    // entries read and 0.5 MB of table pages written before `main`). Fixed addresses make them
    // link-time constants, and the table pages load lazily from the file when a build reads them.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bin=kustomize=-no-pie");
    }
    let mut out = String::new();

    // Field-spec tables.
    let tables = [
        ("namePrefix", "nameprefix.yaml"),
        ("nameSuffix", "namesuffix.yaml"),
        ("namespace", "namespace.yaml"),
        ("commonLabels", "commonlabels.yaml"),
        ("commonAnnotations", "commonannotations.yaml"),
        ("templateLabels", "templatelabels.yaml"),
        ("images", "images.yaml"),
        ("replicas", "replicas.yaml"),
        ("varReference", "varreference.yaml"),
    ];
    out.push_str("/// Default field-spec tables, by kustomization config key.\npub static TABLES: &[(&str, &[Spec])] = &[\n");
    for (key, file) in tables {
        let src =
            std::fs::read_to_string(data.join("fieldspecs").join(file)).expect("read field specs");
        let n = parse_yaml(&src);
        writeln!(out, "({}, {}),", lit(key), specs(get(&n, key))).unwrap();
    }
    out.push_str("];\n");
    let src = std::fs::read_to_string(data.join("fieldspecs/namereference.yaml"))
        .expect("read namereference");
    let n = parse_yaml(&src);
    out.push_str("/// Default name-reference rules: (group, version, kind, referrer specs).\npub static NAME_REFERENCE: &[(&str, &str, &str, &[Spec])] = &[\n");
    if let Some(Node::Seq(items)) = get(&n, "nameReference") {
        for it in items {
            writeln!(
                out,
                "({}, {}, {}, {}),",
                lit(&s(it, "group")),
                lit(&s(it, "version")),
                lit(&s(it, "kind")),
                specs(get(it, "fieldSpecs"))
            )
            .unwrap();
        }
    }
    out.push_str("];\n");

    // OpenAPI facts.
    let src = std::fs::read_to_string(data.join("openapi-k8s-v1.21.2.json")).expect("read openapi");
    let j: serde_json::Value = serde_json::from_str(&src).expect("valid openapi json");
    let mut kinds: Vec<(String, String, bool)> = j["kinds"]
        .as_object()
        .expect("kinds")
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v["definition"].as_str().unwrap_or("").to_string(),
                v["scope"] == "Cluster",
            )
        })
        .collect();
    kinds.sort();
    out.push_str("/// `apiVersion|kind` → (definition, cluster-scoped), sorted by key.\npub static KINDS: &[(&str, &str, bool)] = &[\n");
    for (k, d, c) in &kinds {
        writeln!(out, "({}, {}, {c}),", lit(k), lit(d)).unwrap();
    }
    out.push_str("];\n");
    let mut defs: Vec<(&String, &serde_json::Value)> = j["definitions"]
        .as_object()
        .expect("definitions")
        .iter()
        .collect();
    defs.sort_by(|a, b| a.0.cmp(b.0));
    out.push_str("/// Definition → fields (sorted), each with its strategic-merge facts.\npub static DEFINITIONS: &[(&str, &[(&str, Field)])] = &[\n");
    for (name, fields) in defs {
        let mut fs: Vec<(&String, &serde_json::Value)> =
            fields.as_object().expect("fields").iter().collect();
        fs.sort_by(|a, b| a.0.cmp(b.0));
        write!(out, "({}, &[", lit(name)).unwrap();
        for (f, e) in fs {
            let st = |k: &str| e.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let target = st("ref").or(st("items")).or(st("values"));
            let keys: Vec<String> = e
                .get("keys")
                .and_then(|k| k.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_str().map(lit)).collect())
                .unwrap_or_default();
            write!(
                out,
                "({}, Field {{ target: {}, array: {}, map_values: {}, strategy: {}, keys: &[{}] }}),",
                lit(f),
                target.map(|t| format!("Some({})", lit(&t))).unwrap_or_else(|| "None".into()),
                e.get("array").and_then(|a| a.as_bool()).unwrap_or(false),
                st("values").is_some(),
                lit(&st("strategy").unwrap_or_default()),
                keys.join(",")
            )
            .unwrap();
        }
        out.push_str("]),\n");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("tables.rs");
    std::fs::write(dest, out).expect("write tables");
}
