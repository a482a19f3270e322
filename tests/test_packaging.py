"""Packaging: a wheel built from the tree installs beside an existing torch and runs offline, and
the README's layout table names every module.

The wheel test is what a user with their own torch (CUDA or CPU) does: ``pip install noiseppo``
into an environment that already has torch and the other dependencies. Its environment is a
fresh venv that sees this test's own site-packages (minus noiseppo itself) as already installed;
pip runs with no index, no configuration and no links but the wheel's folder, so it can install
nothing but the wheel: if the wheel's dependency ranges did not accept what is installed (torch
2.13.0+cpu here), pip would have to fetch something, cannot, and the test fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "noiseppo"
README = ROOT / "README.md"


def _pip_env() -> dict[str, str]:
    """This process's environment without pip's configuration (find-links, extra indexes,
    constraints) and without anything that would put the tree's sources on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update(PYTHONNOUSERSITE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def _run(cmd: list[str | Path], cwd: Path, env: dict[str, str], timeout: int = 180) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _shipped_files(package: Path) -> set[str]:
    """Every file of the package folder ``package``, as the wheel names it (noiseppo/...)."""
    return {
        p.relative_to(package.parent).as_posix()
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def test_wheel_installs_beside_existing_torch_and_samples_offline(tmp_path: Path) -> None:
    env = _pip_env()
    # Build from a copy of what the wheel is made of, so the build writes nothing into the tree.
    tree = tmp_path / "tree"
    shutil.copytree(PACKAGE, tree / "src" / "noiseppo", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", *(p.name for p in ROOT.glob("LICEN[CS]E*"))):
        shutil.copy2(ROOT / name, tree / name)
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, tree]
    _run(build, tmp_path, env)
    (wheel,) = dist.glob("noiseppo-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = [line for line in zf.read(metadata).decode().splitlines() if line.startswith("Requires-Dist:")]
    missing = sorted(_shipped_files(tree / "src" / "noiseppo") - names)  # the copy: others may be editing
    assert not missing, f"files of src/noiseppo missing from the wheel (pyproject package-data?): {missing}"
    torch_req = [r for r in requires if re.match(r"Requires-Dist: torch\b", r)]
    assert torch_req and "==" not in torch_req[0], f"the wheel must not pin torch exactly: {torch_req}"

    # The "existing environment": this test's site-packages, every entry but noiseppo's own
    # (its dist-info and the editable install's .pth, which points at the tree's src/).
    site_packages = Path(sysconfig.get_paths()["purelib"])
    existing = tmp_path / "existing"
    existing.mkdir()
    for entry in site_packages.iterdir():
        if not re.match(r"(__editable__[._]+)?noiseppo(?![a-z])", entry.name, re.IGNORECASE):
            (existing / entry.name).symlink_to(entry)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, env)
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    venv_site = Path(_run([python, "-c", purelib], tmp_path, env).strip())
    (venv_site / "existing.pth").write_text(f"import site; site.addsitedir({str(existing)!r})\n")

    # The existing pip (visible through existing.pth) installs into the new venv. No index, no
    # links but the wheel's folder: the dependencies must be met by what is already installed.
    log = _run([python, "-m", "pip", "install", "--no-index", "--find-links", dist, wheel], tmp_path, env, timeout=300)
    installed = sorted(p.name for p in venv_site.iterdir() if p.name != "existing.pth" and p.name != "__pycache__")
    assert all(n.startswith("noiseppo") for n in installed), f"pip installed more than the wheel: {installed}\n{log}"
    assert "noiseppo-0" in " ".join(installed) and "Successfully installed noiseppo-" in log, log
    assert (venv / "bin" / "noiseppo").exists(), log

    work = tmp_path / "elsewhere"  # outside the repository: the tree's src/ cannot be imported from here
    work.mkdir()
    where = _run([python, "-c", "import noiseppo, torch; print(noiseppo.__file__); print(torch.__file__)"], work, env)
    noiseppo_file, torch_file = where.split()[:2]
    assert Path(noiseppo_file).is_relative_to(venv_site), f"noiseppo imported from {noiseppo_file}, not the wheel"
    assert Path(torch_file).resolve().is_relative_to(site_packages.resolve()), f"torch from {torch_file}"

    out = work / "samples"
    _run(
        [venv / "bin" / "noiseppo", "sample", "--prompt", "a red circle", "--n", "1", "--steps", "4",
         "--policy", "shapes-steps4", "--out", out],
        work, env, timeout=300,
    )  # fmt: skip
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert "images/0000.png" in written and "samples.jsonl" in written, f"noiseppo sample wrote {written}"
    with Image.open(out / "images" / "0000.png") as image:
        assert image.size[0] > 0 and image.mode == "RGB"


# --- the README's layout table -------------------------------------------------------------------


def _layout_rows() -> list[tuple[str, str]]:
    section = README.read_text().split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2 and not set(cells[0]) <= set("- ") and cells[0] != "path":
            rows.append((cells[0], cells[1]))
    return rows


def _covered_modules() -> tuple[set[str], set[str]]:
    """Paths (relative to src/noiseppo) the table names: in first cells, and by bare name.

    A row's first cell names paths: the first in full (``src/noiseppo/configs/train.py``), the rest
    relative to its folder (``dataclass_args.py``, ``templates/``). A row for a folder
    (``src/noiseppo/shapes/``) also names that folder's modules by bare name, backticked, in its
    second cell (``grammar``, ``splits``).
    """
    named: set[str] = set()
    by_name: set[str] = set()
    for paths, description in _layout_rows():
        base: Path | None = None
        for item in re.findall(r"`([^`]+)`", paths):
            if item.startswith("src/noiseppo/"):
                path = Path(item)
                base = path if item.endswith("/") else path.parent
            elif base is not None:
                path = base / item
            else:
                continue
            relative = path.relative_to("src/noiseppo")
            if item.endswith("/"):
                for name in re.findall(r"`(\w+)`", description):
                    by_name.add((relative / f"{name}.py").as_posix())
            else:
                named.add(relative.as_posix())
    return named, by_name


def test_readme_layout_table_names_every_module() -> None:
    modules = sorted(
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py" and "__pycache__" not in p.parts
    )
    named, by_name = _covered_modules()
    missing = [m for m in modules if m not in named | by_name]
    hint = (
        "README.md, '## Layout': name each in a row's first cell (`src/noiseppo/x.py` or, after a first "
        "path, `x.py`), or, for a module in a subpackage, backticked by bare name (`x`) in the second cell "
        "of that folder's row (`src/noiseppo/sub/`)"
    )
    assert not missing, f"modules of src/noiseppo missing from the README's layout table: {missing}\n{hint}"
    stale = sorted(c for c in named if c.endswith(".py") and not (PACKAGE / c).exists())
    assert not stale, f"the README's layout table names modules that do not exist: {stale}"
