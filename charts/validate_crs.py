#!/usr/bin/env python3
"""Validates TimeSeriesCluster manifests against the generated CRD's OpenAPI schema.

Usage: validate_crs.py CRD_YAML MANIFEST...

Strict like `kubectl apply --validate=strict`: unknown fields are errors (the API server would
silently prune them). Documents of other kinds are ignored. CEL rules are checked by the
operator's Rust tests, not here.
"""
import sys

import jsonschema
import yaml


def strict(schema):
    """Forbids unknown properties wherever Kubernetes would prune them."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


def nullable(schema):
    """OpenAPI's `nullable: true` as JSON Schema: null is allowed too."""
    if isinstance(schema, dict):
        for value in schema.values():
            nullable(value)
        if schema.get("nullable") and "type" in schema:
            schema["type"] = [schema["type"], "null"]
    elif isinstance(schema, list):
        for value in schema:
            nullable(value)
    return schema


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        crd = yaml.safe_load(f)
    names = crd["spec"]["names"]
    schemas = {}
    for v in crd["spec"]["versions"]:
        schema = v["schema"]["openAPIV3Schema"]
        # Every object has these; the API server validates them itself, so CRDs omit them.
        props = schema.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
        schemas[f'{crd["spec"]["group"]}/{v["name"]}'] = nullable(strict(schema))
    failed = checked = 0
    for path in argv[2:]:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            if doc.get("kind") != names["kind"]:
                continue
            checked += 1
            name = f'{path}: {doc.get("metadata", {}).get("name")}'
            schema = schemas.get(doc.get("apiVersion"))
            if schema is None:
                print(f"ERROR {name}: unknown apiVersion {doc.get('apiVersion')}")
                failed += 1
                continue
            errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
            for e in errors:
                where = "/".join(str(p) for p in e.absolute_path)
                print(f"ERROR {name}: {where}: {e.message}")
            failed += bool(errors)
            if not errors:
                print(f"ok    {name}")
    if checked == 0:
        print("ERROR no TimeSeriesCluster found", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
