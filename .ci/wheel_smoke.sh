#!/usr/bin/env bash
# Packaging check: what a user gets from the wheel works outside this checkout.
#
# 1. `python -m build` makes an sdist, then a wheel from that sdist (so the sdist is complete).
# 2. The wheel, with the `twin` extra, goes into a fresh virtualenv in a temporary directory.
# 3. From another temporary directory (nothing of the checkout importable, no API key):
#    `cartesia-stt demo` must print what README.md says it prints, and the README's quick
#    start (its first Python block under "## Quick start", read from README.md) must print
#    the lines it declares.
# Any failure stops the script with a message and a non-zero status; the temporary
# directories are removed on every exit.
#
# Usage: bash .ci/wheel_smoke.sh   (PYTHON=python3.11 to choose the interpreter; the one
# running it needs the `build` package, in the dev extra)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cartesia-wheel-smoke.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() {
  echo "wheel_smoke: FAILED: $*" >&2
  exit 1
}

echo "== build: sdist, then a wheel from it"
"$PY" -m build --outdir "$WORK/dist" "$ROOT" >"$WORK/build.log" 2>&1 ||
  { cat "$WORK/build.log" >&2; fail "python -m build"; }
shopt -s nullglob
wheels=("$WORK"/dist/*.whl)
sdists=("$WORK"/dist/*.tar.gz)
shopt -u nullglob
[ ${#wheels[@]} -eq 1 ] || fail "expected one wheel, found ${#wheels[@]}"
[ ${#sdists[@]} -eq 1 ] || fail "expected one sdist, found ${#sdists[@]}"
WHEEL=${wheels[0]}
ls -l "$WORK"/dist
"$PY" - "$WHEEL" <<'EOF' || fail "wheel contents"
import sys, zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
for needed in ("cartesia_stt_async/py.typed", "cartesia_stt_async/twin/__init__.py"):
    assert needed in names, f"{needed} is missing from the wheel"
stray = [n for n in names if n.startswith(("tests/", "docs/", "benchmarks/", "examples/"))]
assert not stray, f"the wheel ships files that are not the package: {stray[:5]}"
print(f"wheel: {len(names)} files, py.typed included")
EOF

echo "== install the wheel with the twin extra into a fresh virtualenv"
"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install --quiet --disable-pip-version-check "${WHEEL}[twin]" ||
  fail "pip install ${WHEEL##*/}[twin]"

RUN="$WORK/run"
mkdir "$RUN"
cd "$RUN"
# Nothing from the checkout, and no key: the commands must use the installed package and the
# local twin.
clean_env=(env -u PYTHONPATH -u CARTESIA_API_KEY -u CARTESIA_BASE_URL -u VIRTUAL_ENV)
where=$("${clean_env[@]}" "$VPY" -c "import cartesia_stt_async as m; print(m.__file__)")
case "$where" in
  "$WORK/venv/"*) echo "imports $where" ;;
  *) fail "cartesia_stt_async was imported from $where, not from the fresh virtualenv" ;;
esac

echo "== cartesia-stt demo (from $RUN)"
"${clean_env[@]}" timeout 300 "$WORK/venv/bin/cartesia-stt" demo >"$RUN/demo.out" 2>&1 ||
  { rc=$?; cat "$RUN/demo.out" >&2; fail "cartesia-stt demo exited with status $rc"; }
cat "$RUN/demo.out"

# README.md: the demo's output (the text block after "pip install ... cartesia-stt demo") and
# the quick start (the first Python block under "## Quick start"), with the lines it prints.
"$PY" - "$ROOT/README.md" "$RUN" <<'EOF' || fail "reading README.md"
import re, sys
from pathlib import Path

readme, run = Path(sys.argv[1]).read_text(), Path(sys.argv[2])
demo = re.search(r"cartesia-stt demo\n```\n.*?```text\n(.*?)```", readme, re.DOTALL)
assert demo, "README.md has no ```text block of the demo's output"
(run / "demo.expected").write_text(demo.group(1))
section = readme.split("\n## Quick start\n", 1)
assert len(section) == 2, "README.md has no '## Quick start' section"
block = re.search(r"^```python\n(.*?)^```$", section[1], re.DOTALL | re.MULTILINE)
assert block, "README.md's quick start has no python block"
(run / "quickstart.py").write_text(block.group(1))
expected = [
    line.split("  # ", 1)[1].strip()
    for line in block.group(1).splitlines()
    if line.strip().startswith("print(") and "  # " in line
]
assert expected, "the quick start declares no output"
(run / "quickstart.expected").write_text("\n".join(expected) + "\n")
EOF
port='s#http://127\.0\.0\.1:[0-9]*#http://127.0.0.1:PORT#'
diff <(sed "$port" "$RUN/demo.expected") <(sed "$port" "$RUN/demo.out") ||
  fail "cartesia-stt demo does not print what README.md shows (diff above: < README, > actual)"

echo "== README quick start (from $RUN)"
"${clean_env[@]}" timeout 120 "$VPY" "$RUN/quickstart.py" >"$RUN/quickstart.out" 2>"$RUN/quickstart.err" ||
  { rc=$?; cat "$RUN/quickstart.err" >&2; fail "the README quick start exited with status $rc"; }
cat "$RUN/quickstart.out"
diff "$RUN/quickstart.expected" "$RUN/quickstart.out" ||
  fail "the README quick start does not print what it declares (< declared, > actual)"

echo "wheel_smoke: OK (${WHEEL##*/}, $(basename "${sdists[0]}"))"
