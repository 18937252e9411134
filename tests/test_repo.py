"""The repository's promises: CI runs the README's test command; README examples run."""

import re

from .conftest import REPO


def _readme_commands():
    return re.findall(r"```bash\n(.*?)\n```", (REPO / "README.md").read_text(), flags=re.S)


def test_ci_runs_exactly_the_readme_test_command():
    test_command = next(c for c in _readme_commands() if "pytest" in c)
    install_and_test = test_command.split("&& ", 2)[2]  # after venv creation and activation
    ci = (REPO / ".ci" / "run").read_text()
    assert install_and_test in ci.splitlines()


def test_readme_python_examples_run(tmp_path, monkeypatch, shared_data):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    blocks = re.findall(r"```python\n(.*?)\n```", (REPO / "README.md").read_text(), flags=re.S)
    assert len(blocks) >= 3
    for block in blocks:
        code = block.replace("../shared/data", str(shared_data))
        exec(compile(code, "README.md", "exec"), {})
