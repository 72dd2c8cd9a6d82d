#!/usr/bin/env python3
"""Derive kustomize-rs's embedded reference data from the kustomize v5.8.1 reference files.

Reads ../shared/corpus/kustomize/reference (see its README for provenance) and writes:
  data/openapi-k8s-v1.21.2.json  the strategic-merge facts of the OpenAPI schema kustomize embeds
                                 (per definition: field -> $ref, items $ref, patch strategy, merge
                                 keys) plus each apiVersion/kind's definition and scope;
  data/fieldspecs/*.yaml         the builtin transformers' default field-spec tables, unchanged in
                                 content, with a provenance header.
Both derive from kubernetes-sigs/kustomize (Apache-2.0), which embeds the Kubernetes OpenAPI
schema (Apache-2.0). Run from anywhere: python3 kustomize-rs/data/derive.py [REFERENCE_DIR]
"""
import gzip, json, os, sys

HERE = os.path.dirname(os.path.abspath(__file__))
REF = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..", "shared", "corpus", "kustomize", "reference")
HEADER = ("# Derived by kustomize-rs/data/derive.py from kubernetes-sigs/kustomize v5.8.1\n"
          "# api/internal/konfig/builtinpluginconsts (Apache-2.0), concatenated as the Go sources do.\n")
# The Go sources build some tables by string concatenation; the extracted literals lose that.
# commonlabels.go appends metadataLabelsFieldSpecs; templatelabels.go is "templateLabels:" +
# metadataLabelsFieldSpecs.
APPEND = {"commonlabels.yaml": ["metadatalabels.yaml"], "templatelabels.yaml": ["metadatalabels.yaml"]}


def ref_name(r):
    return r.rsplit("/", 1)[-1] if r else None


def main():
    with gzip.open(os.path.join(REF, "kubernetes-openapi-union-v1.21.2.bundle-v1.json.gz"), "rt") as fh:
        bundle = json.load(fh)
    defs = {}
    for name, d in sorted(bundle["definitions"].items()):
        props = {}
        for field, p in sorted((d.get("properties") or {}).items()):
            e = {}
            if "$ref" in p:
                e["ref"] = ref_name(p["$ref"])
            items = p.get("items") or {}
            if "$ref" in items:
                e["items"] = ref_name(items["$ref"])
            if p.get("type") == "array":
                e["array"] = True
            if "x-kubernetes-patch-strategy" in p:
                e["strategy"] = p["x-kubernetes-patch-strategy"]
            if "x-kubernetes-list-map-keys" in p:
                e["keys"] = p["x-kubernetes-list-map-keys"]
            elif "x-kubernetes-patch-merge-key" in p:
                e["keys"] = [p["x-kubernetes-patch-merge-key"]]
            if p.get("type") == "object" and "additionalProperties" in p:
                ap = p["additionalProperties"]
                if "$ref" in ap:
                    e["values"] = ref_name(ap["$ref"])
            props[field] = e
        defs[name] = props
    kinds = {}
    for r in bundle["resources"]:
        kinds[r["apiVersion"] + "|" + r["kind"]] = {"definition": r.get("definition", ""), "scope": r.get("scope", "")}
    out = {"source": "kubernetes-sigs/kustomize v5.8.1 kyaml/openapi/kubernetesapi (Kubernetes v1.21.2 OpenAPI, Apache-2.0)",
           "definitions": defs, "kinds": kinds}
    with open(os.path.join(HERE, "openapi-k8s-v1.21.2.json"), "w") as fh:
        json.dump(out, fh, separators=(",", ":"), sort_keys=True)
        fh.write("\n")
    src = os.path.join(REF, "fieldspecs")

    def body(f):
        with open(os.path.join(src, f)) as fh:
            text = "".join(l for l in fh.read().splitlines(True) if not l.startswith("# Extracted from"))
        return text if text.endswith("\n") else text + "\n"

    for f in sorted(os.listdir(src)):
        if f == "metadatalabels.yaml":
            continue  # a fragment, spliced into the tables that use it
        text = body(f) + "".join(body(extra) for extra in APPEND.get(f, []))
        with open(os.path.join(HERE, "fieldspecs", f), "w") as fh:
            fh.write(HEADER + text)


if __name__ == "__main__":
    main()
