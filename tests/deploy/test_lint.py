#!/usr/bin/env python3
"""`make lint` is clean (issue 17): scripts/lint.sh runs cppcheck and clang-tidy (the
checks in .clang-tidy) over src/ and exits 0. And the linters are live: a file with a
null dereference and one with an uninitialised read, checked with the same settings,
are refused (so a clean result is not an empty check set)."""
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("EP_TEST_BUILD", os.path.join(ROOT, "build"))


def main():
    failed = []
    with tempfile.TemporaryDirectory() as d:
        bad = os.path.join(d, "bad.c")
        with open(bad, "w") as f:
            f.write("#include <stddef.h>\n"
                    "int deref(int *p) { if (p == NULL) { return *p; } return 0; }\n"
                    "int uninit(int c) { int x; if (c) { x = 1; } return x; }\n")
        r = subprocess.run(["clang-tidy", "--quiet", "--config-file=" + os.path.join(ROOT, ".clang-tidy"),
                            bad, "--", "-std=c17"], capture_output=True, text=True, timeout=300)
        if r.returncode == 0 or "clang-analyzer-core.NullDereference" not in r.stdout:
            failed.append("clang-tidy with .clang-tidy passed a null dereference:\n" + r.stdout + r.stderr)
        r = subprocess.run(["cppcheck", "--quiet", "--enable=warning,portability,performance",
                            "--error-exitcode=1", bad], capture_output=True, text=True, timeout=300)
        if r.returncode == 0:
            failed.append("cppcheck passed an uninitialised read:\n" + r.stdout + r.stderr)

    env = dict(os.environ, LINT_BUILD=os.path.join(BUILD, "lint"), JOBS="2")
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "lint.sh")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=3000)
    sys.stdout.write(r.stdout[-20000:])
    sys.stdout.write(r.stderr[-5000:])
    if r.returncode != 0 or "lint: clean" not in r.stderr:
        failed.append("make lint is not clean")
    for f in failed:
        print("FAIL:", f)
    print("%d passed, %d failed" % (3 - len(failed), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
