"""Write the lock: requirements.txt (every package of the tested environment at an exact
version) and envs/moclip.yaml (the runtime part of it, for --sdm conda), both from pip's own
resolver run on pyproject.toml's ranges and the torch pair, in a dry run of a fresh install
(``pip install --dry-run --ignore-installed --report``). Run by ``make lock``.

Versions only, no hashes: pip's report gives the hash of the one file this machine picked,
and a lock with it would refuse every other platform's wheel of the same version and
PyTorch's CPU builds (``make venv TORCH_INDEX=cpu``).

The lock in place constrains the new one (a package added or a range changed moves nothing
else); ``--upgrade`` (``make lock UPGRADE=1``) resolves afresh and takes newer releases.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LOCK_HEADER = """\
# The lock: every package of the tested environment at an exact version. make venv and CI
# install it (torch and torchvision first, in a pip call of their own, then the rest);
# envs/moclip.yaml lists its runtime part. Written by `make lock` (tools/lock.py: pip's
# resolver on pyproject.toml's ranges with every extra, and {pair}):
# change pyproject.toml or the Makefile's TORCH_PAIR, then `make lock`; never edit by hand.
"""

ENV_HEADER = """\
# Per-rule software environment for `snakemake --sdm conda`: Python, then moclip's runtime
# packages at the lock's versions (requirements.txt; written with it by `make lock`). No path
# in it: Snakemake runs the file from its copy under .snakemake/conda/. The workflow's own
# code (moclip/) is not installed here; the jobs import it from the repository through the
# PYTHONPATH the Snakefile sets. Not tried with conda on the project's machines (they have
# none): tests/test_install.py checks the file, not a build of the environment.
channels:
  - conda-forge
  - nodefaults
dependencies:
  - python={python}
  - pip
  - pip:
"""


def resolve(python: str, *requirements: str) -> dict[str, str]:
    """{name: version} that ``pip install requirements`` would install into an empty env."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp, "report.json")
        cmd = [python, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed", "--report", str(report)]
        subprocess.run([*cmd, *requirements], check=True, cwd=ROOT)
        installs = json.loads(report.read_text())["install"]
    return {i["metadata"]["name"]: i["metadata"]["version"] for i in installs if i["metadata"]["name"] != "moclip"}


def key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", nargs=2, required=True, metavar=("TORCH", "TORCHVISION"), help="e.g. torch==2.14.1")
    ap.add_argument("--python", default=sys.executable, help="the interpreter whose pip resolves (markers are its)")
    ap.add_argument("--upgrade", action="store_true", help="resolve afresh, not within the lock in place")
    args = ap.parse_args(argv)
    lock_file, env_file = ROOT / "requirements.txt", ROOT / "envs" / "moclip.yaml"

    keep = [] if args.upgrade or not lock_file.exists() else ["-c", str(lock_file)]
    every = resolve(args.python, *keep, *args.pair, ".[workflow,test]")
    lock_file.write_text(
        LOCK_HEADER.format(pair=" ".join(args.pair))
        + "".join(f"{n}=={v}\n" for n, v in sorted(every.items(), key=lambda nv: key(nv[0])))
    )
    runtime = resolve(args.python, "-c", str(lock_file), *args.pair, ".")  # the lock's versions, runtime only
    py = subprocess.run(
        [args.python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
    )
    env_file.write_text(
        ENV_HEADER.format(python=py.stdout.strip())
        + "".join(f"      - {n}=={v}\n" for n, v in sorted(runtime.items(), key=lambda nv: key(nv[0])))
    )
    print(f"{lock_file.name}: {len(every)} packages; {env_file.relative_to(ROOT)}: {len(runtime)} (runtime)")


if __name__ == "__main__":
    main()
