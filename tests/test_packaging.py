"""A wheel built from a clean checkout holds every sub-package and metric script and works installed non-editable."""

import os
import shutil
import subprocess
import sys
import zipfile

from .conftest import REPO

PACKAGES = sorted(
    str(p.parent.relative_to(REPO)).replace(os.sep, ".") for p in (REPO / "hf_scratchgpt").rglob("__init__.py")
)

METRIC_SCRIPTS = sorted(
    p.relative_to(REPO).as_posix()
    for p in (REPO / "hf_scratchgpt" / "metrics").glob("*/*.py")
    if p.stem == p.parent.name
)


def _checkout(dest):
    """The files a clone would hold: tracked and not-ignored files, no build outputs or caches."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)


def test_wheel_holds_every_sub_package_and_installs(tmp_path):
    src, dist, site = tmp_path / "src", tmp_path / "dist", tmp_path / "site"
    _checkout(src)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)], capture_output=True, text=True
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = dist.glob("hf_scratchgpt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert len(PACKAGES) >= 7 and "hf_scratchgpt.book" in PACKAGES and "hf_scratchgpt.model" in PACKAGES
    for package in PACKAGES:
        assert package.replace(".", "/") + "/__init__.py" in names, f"{package} is missing from the wheel"
    assert "hf_scratchgpt/model_cards/model.md" in names and "hf_scratchgpt/model_cards/pretrain.md" in names
    assert len(METRIC_SCRIPTS) >= 3 and "hf_scratchgpt/metrics/f1/f1.py" in METRIC_SCRIPTS
    for script in METRIC_SCRIPTS:  # evaluate.load(<folder>) needs <name>/<name>.py
        assert script in names, f"the metric script {script} is missing from the wheel"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "scratchgpt = hf_scratchgpt.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    install = subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], capture_output=True)
    assert install.returncode == 0, install.stderr[-3000:]
    code = (
        "import importlib, hf_scratchgpt, hf_scratchgpt.cli as cli\n"
        f"for name in {PACKAGES!r}: importlib.import_module(name)\n"
        "from huggingface_hub import ModelCardData\n"
        "from hf_scratchgpt.cards import render_card, template_fields\n"
        "fields = dict.fromkeys(template_fields('pretrain'), 'x')\n"
        "assert '| x |' in str(render_card('pretrain', ModelCardData(), **fields))\n"
        "from hf_scratchgpt.metrics import load_metric, metric_path\n"
        "from pathlib import Path\n"
        "assert metric_path('f1').is_relative_to(Path(hf_scratchgpt.__file__).resolve().parent), metric_path('f1')\n"
        "assert load_metric('f1', keep_in_memory=True).compute(predictions=[1], references=[1]) == {'f1': 1.0}\n"
        "print(hf_scratchgpt.__file__)\n"
        "raise SystemExit(cli.main(['--help']))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines()[0].startswith(str(site))  # the installed wheel, not the working tree
    assert "pretrain" in run.stdout
