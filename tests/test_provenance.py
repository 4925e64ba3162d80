"""code_version describes robustlayers itself, never the repository a copy is installed in."""

import subprocess
from pathlib import Path

import robustlayers
from robustlayers import provenance

PACKAGE = Path(robustlayers.__file__).resolve().parent


def _git_repo(root: Path, files: dict[str, str]) -> str:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    env = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(root), *env, "commit", "-q", "-m", "x"], check=True)
    return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_installed_copy_inside_another_repository_records_no_commit(tmp_path):
    other = tmp_path / "their-project"
    package = other / ".venv" / "lib" / "site-packages" / "robustlayers"
    _git_repo(other, {"pyproject.toml": '[project]\nname = "their-project"\n',
                      ".venv/lib/site-packages/robustlayers/__init__.py": "",
                      "train.py": "print(1)\n"})
    assert provenance.git_commit(package) is None
    assert provenance.code_version(package) == f"robustlayers {robustlayers.__version__}"


def test_a_src_layout_of_another_project_is_not_robustlayers(tmp_path):
    other = tmp_path / "fork"
    _git_repo(other, {"pyproject.toml": '[project]\nname = "notrobust"\n',
                      "src/robustlayers/__init__.py": ""})
    assert provenance.git_commit(other / "src" / "robustlayers") is None


def test_robustlayers_checkout_records_its_commit(tmp_path):
    repo = tmp_path / "robustlayers"
    head = _git_repo(repo, {"pyproject.toml": '[project]\nname = "robustlayers"\n',
                            "src/robustlayers/__init__.py": ""})
    package = repo / "src" / "robustlayers"
    assert provenance.git_commit(package) == head
    assert provenance.code_version(package) == \
        f"robustlayers {robustlayers.__version__} +git {head}"
    (package / "__init__.py").write_text("x = 1\n")
    assert provenance.git_commit(package) == head + "-dirty"


def test_outside_any_repository(tmp_path):
    package = tmp_path / "robustlayers"
    package.mkdir()
    assert provenance.git_commit(package) is None


def test_this_checkout():
    """The tests run from robustlayers' own checkout: its commit is recorded."""
    env = provenance.environment()
    head = subprocess.run(["git", "-C", str(PACKAGE), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert env["git_commit"].removesuffix("-dirty") == head
    assert env["code_version"] == f"robustlayers {robustlayers.__version__} +git {env['git_commit']}"
