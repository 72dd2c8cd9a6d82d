#!/usr/bin/env python3
"""Derive the test server's field table (schema-v1.36.txt) from k8s-openapi's v1_36 module.

k8s-openapi is generated from the Kubernetes v1.36 OpenAPI document; every type is one Rust
file with its fields (`pub <rust>: <type>`) and its JSON names (`"<json>" => Field::Key_<rust>`).
This script reads those files and writes one line per type:

    <definition> <json field>[=<definition of its value or list item>|=*<of its map values>] ...

and one line per resource kind:

    kind <apiVersion> <Kind> <definition>

Usage: derive-schema.py <k8s-openapi source dir> > schema-v1.36.txt
e.g.   derive-schema.py ~/.cargo/registry/src/*/k8s-openapi-0.29.0
"""
import os
import re
import sys

root = os.path.join(sys.argv[1], "src", "v1_36")
PREFIX = {
    "api": "io.k8s.api",
    "apimachinery": "io.k8s.apimachinery",
    "apiextensions_apiserver": "io.k8s.apiextensions-apiserver",
    "kube_aggregator": "io.k8s.kube-aggregator",
}


def definition(rust_path):
    parts = rust_path.split("::")
    if parts[0] != "crate" or parts[1] not in PREFIX:
        return None
    return ".".join([PREFIX[parts[1]]] + parts[2:])


types = {}
kinds = []
for dirpath, _, files in os.walk(root):
    for f in sorted(files):
        if not f.endswith(".rs") or f == "mod.rs":
            continue
        src = open(os.path.join(dirpath, f)).read()
        m = re.search(r"^// Generated from definition (\S+)", src, re.M)
        if not m:
            continue
        name = m.group(1)
        rust_types = dict(re.findall(r"^    pub (\w+): (.+),$", src, re.M))
        json_names = re.findall(r'"([^"]+)" => Field::Key_(\w+)', src)
        if not json_names:
            continue
        fields = []
        for json_name, rust in json_names:
            ty = rust_types.get(rust, "")
            refs = re.findall(r"crate::[\w:]+", ty)
            target = definition(refs[-1]) if refs else None
            if target and "BTreeMap<" in ty:
                target = "*" + target
            fields.append(json_name + ("=" + target if target else ""))
        types[name] = fields
        av = re.search(r'const API_VERSION: &\'static str = "([^"]+)";', src)
        kind = re.search(r'const KIND: &\'static str = "([^"]+)";', src)
        if av and kind and not name.endswith("List"):
            kinds.append((av.group(1), kind.group(1), name))

print("# Field table of Kubernetes v1.36, derived by derive-schema.py from k8s-openapi 0.29.0 (v1_36).")
for av, kind, name in sorted(kinds):
    print(f"kind {av} {kind} {name}")
for name in sorted(types):
    print(name, " ".join(sorted(set(types[name]))))
