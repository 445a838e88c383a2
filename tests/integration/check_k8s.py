#!/usr/bin/env python3
"""check_k8s.py FILE... - checks hydra's Kubernetes manifests the way a
schema validator and a reviewer would, with what Debian has (no kubeconform
there): every document parses and has apiVersion, kind and metadata.name,
with the apiVersion its kind lives in; a Deployment's selector matches its
pod labels and a Service's selector matches some Deployment's pods; a
Service's targetPort names a container port; each hydrad container asks for
exactly one nvidia.com/gpu, has readiness and liveness probes on /v1/health
at a port it declares, passes --store and --worker-id; every Secret,
ConfigMap and PersistentVolumeClaim a pod refers to is defined (the Secret
"hydra" may be defined by kubectl create, so secret.example.yaml stands in
for it), and every secret key read exists. Prints one line per problem;
exits 1 if there is any."""
import sys

import yaml

API = {"ConfigMap": "v1", "Secret": "v1", "Service": "v1", "PersistentVolumeClaim": "v1",
       "Deployment": "apps/v1"}
problems = []


def need(cond, what):
    if not cond:
        problems.append(what)
    return cond


docs = []
for path in sys.argv[1:]:
    with open(path) as f:
        for i, d in enumerate(yaml.safe_load_all(f)):
            if d is None:
                continue
            where = f"{path} document {i + 1}"
            if need(isinstance(d, dict), f"{where}: not a mapping"):
                kind = d.get("kind")
                name = (d.get("metadata") or {}).get("name")
                need(kind in API, f"{where}: unknown kind {kind!r}")
                need(d.get("apiVersion") == API.get(kind),
                     f"{where}: {kind} needs apiVersion {API.get(kind)}, has {d.get('apiVersion')!r}")
                need(isinstance(name, str) and name, f"{where}: no metadata.name")
                docs.append((where, d))

by_kind = {}
for where, d in docs:
    by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
pod_labels = []
for name, dep in by_kind.get("Deployment", {}).items():
    spec = dep.get("spec") or {}
    tmpl = spec.get("template") or {}
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    sel = (spec.get("selector") or {}).get("matchLabels") or {}
    need(sel and all(labels.get(k) == v for k, v in sel.items()),
         f"Deployment {name}: selector {sel} does not match the pod labels {labels}")
    pod_labels.append(labels)
    pod = tmpl.get("spec") or {}
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    for c in pod.get("containers") or []:
        cname = f"Deployment {name} container {c.get('name')}"
        ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
        limits = (c.get("resources") or {}).get("limits") or {}
        need(str(limits.get("nvidia.com/gpu")) == "1", f"{cname}: limits nvidia.com/gpu is not 1")
        for probe in ("readinessProbe", "livenessProbe"):
            get = (c.get(probe) or {}).get("httpGet") or {}
            need(get.get("path") == "/v1/health", f"{cname}: {probe} is not GET /v1/health")
            port = get.get("port")
            need(port in ports or port in ports.values(), f"{cname}: {probe} port {port!r} undeclared")
        args = c.get("args") or []
        for flag in ("--store", "--worker-id"):
            need(flag in args, f"{cname}: no {flag} argument")
        env = {e["name"]: e for e in c.get("env") or []}
        for a in args:
            if a.startswith("$(") and a.endswith(")"):
                need(a[2:-1] in env, f"{cname}: argument {a} names no env variable")
        for e in env.values():
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                sec = by_kind.get("Secret", {}).get(ref["name"])
                if need(sec is not None, f"{cname}: env {e['name']}: no Secret {ref['name']}"):
                    keys = set((sec.get("stringData") or {})) | set((sec.get("data") or {}))
                    need(ref["key"] in keys, f"{cname}: env {e['name']}: Secret {ref['name']} "
                                             f"has no key {ref['key']}")
        for m in c.get("volumeMounts") or []:
            need(m.get("name") in volumes, f"{cname}: mount of undefined volume {m.get('name')}")
    for vname, v in volumes.items():
        if "configMap" in v:
            cm = by_kind.get("ConfigMap", {}).get(v["configMap"]["name"])
            need(cm is not None, f"Deployment {name}: volume {vname}: no ConfigMap")
        if "secret" in v:
            sec = by_kind.get("Secret", {}).get(v["secret"]["secretName"])
            if need(sec is not None, f"Deployment {name}: volume {vname}: no Secret"):
                keys = set((sec.get("stringData") or {})) | set((sec.get("data") or {}))
                for item in v["secret"].get("items") or []:
                    need(item["key"] in keys, f"Deployment {name}: volume {vname}: no key {item['key']}")
        if "persistentVolumeClaim" in v:
            need(v["persistentVolumeClaim"]["claimName"] in by_kind.get("PersistentVolumeClaim", {}),
                 f"Deployment {name}: volume {vname}: no PersistentVolumeClaim")
for name, svc in by_kind.get("Service", {}).items():
    sel = (svc.get("spec") or {}).get("selector") or {}
    need(any(sel and all(lab.get(k) == v for k, v in sel.items()) for lab in pod_labels),
         f"Service {name}: selector {sel} matches no Deployment's pods")
    names = {p.get("name") for dep in by_kind.get("Deployment", {}).values()
             for c in dep["spec"]["template"]["spec"].get("containers") or []
             for p in c.get("ports") or []}
    for p in (svc.get("spec") or {}).get("ports") or []:
        t = p.get("targetPort")
        need(not isinstance(t, str) or t in names, f"Service {name}: targetPort {t!r} is no port name")
need(by_kind.get("Deployment"), "no Deployment")
need(by_kind.get("Service"), "no Service")
for p in problems:
    print("k8s:", p)
print(f"check_k8s: {len(docs)} objects, {len(problems)} problems")
sys.exit(1 if problems else 0)
