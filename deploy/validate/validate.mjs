// Validates rendered Kubernetes manifests offline (docs/deployment.md, "Checking the
// manifests offline").
//
//   node validate.mjs --tools DIR [--external-secret NAME]... FILE...
//
// FILE: multi-document YAML as `kubectl kustomize` or `helm template` prints it; each
// file is one render (references are looked up within it), many can be checked at once.
// DIR: what scripts/k8s-tools.sh installed (kubernetes-models, typescript, js-yaml).
// Every object is checked three ways; any finding exits 1 with one line per finding:
//  1. schema: kubernetes-models' validator for its apiVersion/kind (ajv code generated
//     from the Kubernetes OpenAPI definitions: types, required fields, enums, formats
//     such as int32, quantities and int-or-string). An apiVersion/kind it has no model
//     for (a typo, a removed beta API) is a finding too.
//  2. unknown fields: the objects, written out as TypeScript literals typed with the
//     models' declarations, go through the TypeScript compiler, whose excess-property
//     check names every field the API does not have (the schemas allow them, the API
//     server's strict field validation does not).
//  3. references and this project's rules: selectors match their pod templates,
//     Services, PodDisruptionBudgets and HPAs point at workloads in the same render,
//     ConfigMaps and Secrets a pod uses are in the render (or named --external-secret),
//     and every eventpipe container runs non-root with a read-only root file system, no
//     capabilities, seccomp RuntimeDefault, /health liveness, /ready readiness,
//     resource requests and limits, and Prometheus scrape annotations.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const argv = process.argv.slice(2);
let tools = null;
const external = new Set();
const files = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--tools") tools = argv[++i];
  else if (argv[i] === "--external-secret") external.add(argv[++i]);
  else files.push(argv[i]);
}
if (!tools || files.length === 0) {
  console.error("usage: node validate.mjs --tools DIR [--external-secret NAME]... FILE...");
  process.exit(2);
}
const nm = path.join(path.resolve(tools), "node_modules");
const load = (p) => import(pathToFileURL(path.join(nm, p)).href);
const yaml = (await load("js-yaml/dist/js-yaml.mjs")).default;
const ts = (await load("typescript/lib/typescript.js")).default;

const findings = [];
const objects = [];
for (const file of files) {
  let docs = [];
  try {
    docs = yaml.loadAll(fs.readFileSync(file, "utf8"));
  } catch (e) {
    findings.push(`${file}: not YAML: ${e.reason ?? e.message} (line ${(e.mark?.line ?? -1) + 1})`);
  }
  for (const doc of docs) {
    if (doc === null || doc === undefined) continue;
    if (typeof doc !== "object" || Array.isArray(doc)) {
      findings.push(`${file}: a document that is not an object`);
      continue;
    }
    objects.push({ file, obj: doc });
  }
}
for (const file of files)
  if (!objects.some((o) => o.file === file)) findings.push(`${file}: no object rendered`);

const where = (o) =>
  `${o.file}: ${o.obj.kind ?? "?"}/${o.obj.metadata?.name ?? "?"}`;

// 1. schema
function modelPath(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string") return null;
  const parts = apiVersion.split("/");
  if (parts.length === 1) return `kubernetes-models/${parts[0]}/${kind}`;
  if (parts.length === 2) return `kubernetes-models/${parts[0]}/${parts[1]}/${kind}`;
  return null;
}
for (const o of objects) {
  const { apiVersion, kind } = o.obj;
  const mp = modelPath(apiVersion, kind);
  const file = mp && path.join(nm, mp + ".js");
  if (!file || !fs.existsSync(file) || !/^[A-Z][A-Za-z0-9]*$/.test(kind)) {
    findings.push(`${where(o)}: no Kubernetes model for apiVersion ${apiVersion} kind ${kind}`);
    continue;
  }
  o.modelPath = mp;
  const mod = await load(mp + ".js");
  // A Secret's data are base64; kubectl writes long values over several lines, and
  // the API server's decoder (Go's encoding/base64) skips line breaks, so the check
  // does too.
  let data = o.obj;
  if (kind === "Secret" && o.obj.data && typeof o.obj.data === "object") {
    const d = {};
    for (const [k, v] of Object.entries(o.obj.data))
      d[k] = typeof v === "string" ? v.replace(/[\r\n]/g, "") : v;
    data = { ...o.obj, data: d };
  }
  const Model = mod[kind];
  try {
    new Model(data).validate();
  } catch (e) {
    findings.push(`${where(o)}: schema: ${e.message}`);
  }
  if (!o.obj.metadata?.name) findings.push(`${where(o)}: metadata.name missing`);
  else if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(o.obj.metadata.name))
    findings.push(`${where(o)}: metadata.name is not a DNS-1123 name`);
}

// 2. unknown fields, through the TypeScript compiler
{
  const typed = objects.filter((o) => o.modelPath);
  const lines = [];
  typed.forEach((o, i) => {
    lines.push(`import type { I${o.obj.kind} as T${i} } from "${o.modelPath}";`);
  });
  const first = lines.length;
  typed.forEach((o, i) => lines.push(`export const o${i}: T${i} = ${JSON.stringify(o.obj)};`));
  const dir = fs.mkdtempSync(path.join(path.resolve(tools), "check-"));
  const src = path.join(dir, "manifests.mts");
  fs.writeFileSync(src, lines.join("\n") + "\n");
  try {
    const program = ts.createProgram([src], {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      types: [],
    });
    for (const d of ts.getPreEmitDiagnostics(program)) {
      const msg = ts.flattenDiagnosticMessageText(d.messageText, " ");
      let at = "manifests";
      if (d.file && d.start !== undefined) {
        const line = d.file.getLineAndCharacterOfPosition(d.start).line;
        const o = typed[line - first] ?? typed[line];
        if (o) at = where(o);
      }
      findings.push(`${at}: fields: ${msg}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// 3. references and this project's rules, within each file (one render each)
for (const file of files) {
const inFile = objects.filter((o) => o.file === file);
const byKind = (k) => inFile.filter((o) => o.obj.kind === k);
const workloads = inFile.filter((o) =>
  ["Deployment", "StatefulSet", "DaemonSet"].includes(o.obj.kind),
);
const names = (k) => new Set(byKind(k).map((o) => o.obj.metadata?.name));
const configMaps = names("ConfigMap");
const secrets = names("Secret");
const matches = (sel, labels) =>
  sel && Object.keys(sel).length > 0 &&
  Object.entries(sel).every(([k, v]) => (labels ?? {})[k] === v);

for (const w of workloads) {
  const spec = w.obj.spec ?? {};
  const tpl = spec.template ?? {};
  const labels = tpl.metadata?.labels;
  if (!matches(spec.selector?.matchLabels, labels))
    findings.push(`${where(w)}: spec.selector.matchLabels does not select its pod template`);
  const ann = tpl.metadata?.annotations ?? {};
  if (ann["prometheus.io/scrape"] !== "true" || !ann["prometheus.io/port"] ||
      ann["prometheus.io/path"] !== "/metrics")
    findings.push(`${where(w)}: Prometheus scrape annotations missing`);
  const pod = tpl.spec ?? {};
  const psc = pod.securityContext ?? {};
  const volumes = new Set((pod.volumes ?? []).map((v) => v.name));
  for (const v of spec.volumeClaimTemplates ?? []) volumes.add(v.metadata?.name);
  for (const v of pod.volumes ?? []) {
    const cm = v.configMap?.name;
    if (cm && !configMaps.has(cm)) findings.push(`${where(w)}: volume ${v.name}: no ConfigMap ${cm}`);
    const s = v.secret?.secretName;
    if (s && !secrets.has(s) && !external.has(s))
      findings.push(`${where(w)}: volume ${v.name}: no Secret ${s}`);
  }
  for (const c of [...(pod.initContainers ?? []), ...(pod.containers ?? [])]) {
    const at = `${where(w)}: container ${c.name}`;
    const sc = c.securityContext ?? {};
    // A container's own setting wins over the pod's.
    if ((sc.runAsNonRoot ?? psc.runAsNonRoot) !== true) findings.push(`${at}: runAsNonRoot is not true`);
    if ((sc.runAsUser ?? psc.runAsUser) === 0) findings.push(`${at}: runAsUser is 0`);
    if ((sc.seccompProfile ?? psc.seccompProfile)?.type !== "RuntimeDefault")
      findings.push(`${at}: seccompProfile is not RuntimeDefault`);
    if (sc.readOnlyRootFilesystem !== true) findings.push(`${at}: readOnlyRootFilesystem is not true`);
    if (sc.allowPrivilegeEscalation !== false) findings.push(`${at}: allowPrivilegeEscalation is not false`);
    if (sc.privileged === true) findings.push(`${at}: privileged`);
    if (!(sc.capabilities?.drop ?? []).includes("ALL")) findings.push(`${at}: capabilities do not drop ALL`);
    if ((sc.capabilities?.add ?? []).length > 0) findings.push(`${at}: adds capabilities`);
    for (const k of ["requests", "limits"])
      for (const r of ["cpu", "memory"])
        if (c.resources?.[k]?.[r] === undefined) findings.push(`${at}: resources.${k}.${r} missing`);
    if (c.livenessProbe?.httpGet?.path !== "/health") findings.push(`${at}: liveness probe is not GET /health`);
    if (c.readinessProbe?.httpGet?.path !== "/ready") findings.push(`${at}: readiness probe is not GET /ready`);
    const ports = new Set((c.ports ?? []).map((p) => p.name));
    for (const p of [c.livenessProbe, c.readinessProbe]) {
      const port = p?.httpGet?.port;
      if (typeof port === "string" && !ports.has(port)) findings.push(`${at}: probe port ${port} is not a named port`);
    }
    for (const m of c.volumeMounts ?? [])
      if (!volumes.has(m.name)) findings.push(`${at}: volumeMount ${m.name} has no volume`);
    for (const e of c.envFrom ?? []) {
      if (e.configMapRef && !configMaps.has(e.configMapRef.name) && e.configMapRef.optional !== true)
        findings.push(`${at}: envFrom: no ConfigMap ${e.configMapRef.name}`);
      if (e.secretRef && !secrets.has(e.secretRef.name) && !external.has(e.secretRef.name) &&
          e.secretRef.optional !== true)
        findings.push(`${at}: envFrom: no Secret ${e.secretRef.name}`);
    }
    for (const e of c.env ?? []) {
      const s = e.valueFrom?.secretKeyRef;
      if (s && !secrets.has(s.name) && !external.has(s.name) && s.optional !== true)
        findings.push(`${at}: env ${e.name}: no Secret ${s.name}`);
      const m = e.valueFrom?.configMapKeyRef;
      if (m && !configMaps.has(m.name) && m.optional !== true)
        findings.push(`${at}: env ${e.name}: no ConfigMap ${m.name}`);
    }
  }
  if (w.obj.kind === "StatefulSet" && spec.serviceName && !names("Service").has(spec.serviceName))
    findings.push(`${where(w)}: serviceName ${spec.serviceName}: no such Service`);
}
const podLabels = workloads.map((w) => w.obj.spec?.template?.metadata?.labels ?? {});
for (const s of byKind("Service")) {
  if (!matches(s.obj.spec?.selector, podLabels.find((l) => matches(s.obj.spec?.selector, l))))
    findings.push(`${where(s)}: selector matches no pod template`);
}
for (const p of byKind("PodDisruptionBudget")) {
  const sel = p.obj.spec?.selector?.matchLabels;
  if (!podLabels.some((l) => matches(sel, l)))
    findings.push(`${where(p)}: selector matches no pod template`);
}
for (const h of byKind("HorizontalPodAutoscaler")) {
  const ref = h.obj.spec?.scaleTargetRef ?? {};
  if (!workloads.some((w) => w.obj.kind === ref.kind && w.obj.metadata?.name === ref.name))
    findings.push(`${where(h)}: scaleTargetRef ${ref.kind}/${ref.name} is not in the render`);
}
const seen = new Set();
for (const o of inFile) {
  const key = `${o.obj.kind}/${o.obj.metadata?.namespace ?? ""}/${o.obj.metadata?.name}`;
  if (seen.has(key)) findings.push(`${where(o)}: defined twice`);
  seen.add(key);
}
}

for (const f of findings) console.log(f);
console.log(`${objects.length} objects in ${files.length} file(s): ${findings.length} finding(s)`);
process.exit(findings.length === 0 ? 0 : 1);
