#!/usr/bin/env python3
"""Splits a multi-document manifest into built-in kinds and custom kinds.

Usage: split_manifests.py RENDERED.yaml OUT_DIR

Writes OUT_DIR/builtin.yaml (kinds kubernetes-validate has schemas for) and
OUT_DIR/custom.yaml (TimeSeriesCluster, ServiceMonitor: validated separately).
"""
import os
import sys

import yaml

CUSTOM_GROUPS = ("strata.dev/", "monitoring.coreos.com/")


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    builtin = [d for d in docs if not d.get("apiVersion", "").startswith(CUSTOM_GROUPS)]
    custom = [d for d in docs if d.get("apiVersion", "").startswith(CUSTOM_GROUPS)]
    os.makedirs(argv[2], exist_ok=True)
    for name, part in (("builtin.yaml", builtin), ("custom.yaml", custom)):
        with open(os.path.join(argv[2], name), "w", encoding="utf-8") as f:
            yaml.safe_dump_all(part, f, sort_keys=False)
    print(f"{len(builtin)} built-in, {len(custom)} custom documents")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
