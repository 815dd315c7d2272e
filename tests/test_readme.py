"""The README's commands are the ones CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    command = [line for line in ci.splitlines() if line and not line.startswith(("#", "set ", "cd ", "export "))]
    assert len(command) == 1, command
    assert f"```bash\n{command[0]}\n```" in (ROOT / "README.md").read_text()


def test_ci_runs_offline():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "HF_HUB_OFFLINE=1" in ci and "HF_DATASETS_OFFLINE=1" in ci


def test_readme_first_command_runs_the_demo():
    readme = (ROOT / "README.md").read_text()
    first = readme.split("```bash\n", 1)[1].split("\n", 1)[0]
    assert first == "pip install -e . && vtde-bench demo"
