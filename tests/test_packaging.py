"""Packaging metadata: the license is the Apache-2.0 text the SPDX expression declares, the
build backend understands that expression, every extra an error message or an example tells
users to install exists, and the changelog covers the package's version."""

import hashlib
import re
import tomllib
from pathlib import Path

import sparsetorch
from sparsetorch.experiments.trackers import PACKAGES

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# sha256 of the Apache License 2.0 text as published at apache.org/licenses/LICENSE-2.0.txt
APACHE_2_SHA256 = "c71d239df91726fc519c6eb72d318ec65820627232b2f796219e87dcf35d0ab4"


def test_license_file_is_the_apache_2_text_and_declared_by_spdx_expression():
    text = (ROOT / "LICENSE").read_bytes()
    assert hashlib.sha256(text).hexdigest() == APACHE_2_SHA256
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"  # PEP 639 expression, not the deprecated table
    assert project["license-files"] == ["LICENSE"]
    assert not any(c.startswith("License ::") for c in project["classifiers"])  # PEP 639


def test_the_build_backend_understands_license_expressions():
    requires = PYPROJECT["build-system"]["requires"]
    (setuptools,) = [r for r in requires if r.startswith("setuptools")]
    major = int(re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools).group(1))
    assert major >= 77  # setuptools 77 added PEP 639 (license = "SPDX", license-files)


def test_every_extra_users_are_told_to_install_exists():
    extras = PYPROJECT["project"]["optional-dependencies"]
    told = set(PACKAGES)  # --log tensorboard / wandb / mlflow
    for path in [
        *ROOT.glob("examples/*.py"),
        *ROOT.glob("src/sparsetorch/**/*.py"),
        *ROOT.glob("docs/*.md"),
        ROOT / "README.md",
    ]:
        told |= set(re.findall(r"sparsetorch\[(\w+)\]", path.read_text()))
    assert told and told <= set(extras), told - set(extras)
    for extra, package in PACKAGES.items():
        assert any(
            r.startswith(package) or r.startswith(f"{package}-skinny") for r in extras[extra]
        )


def test_classifiers_agree_with_requires_python_and_typing():
    project = PYPROJECT["project"]
    low = project["requires-python"].removeprefix(">=")
    versions = [
        c.rpartition(" :: ")[2]
        for c in project["classifiers"]
        if re.search(r"Python :: 3\.\d+$", c)
    ]
    assert versions and min(versions, key=lambda v: tuple(map(int, v.split(".")))) == low
    assert ("Typing :: Typed" in project["classifiers"]) == (
        ROOT / "src/sparsetorch/py.typed"
    ).is_file()


def test_changelog_has_a_section_for_this_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert PYPROJECT["project"]["version"] == sparsetorch.__version__
    assert f"\n## {sparsetorch.__version__}\n" in text


def test_make_docs_fails_on_warnings():
    """`make docs` runs mkdocs in strict mode and does not silence its warnings (mkdocs'
    --quiet drops them before strict mode counts them: the build would pass)."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ndocs:", 1)[1].split("\n\n", 1)[0]
    assert "mkdocs build --strict" in recipe and "--quiet" not in recipe and " -q" not in recipe
    config = (ROOT / "mkdocs.yml").read_text()
    assert "\nstrict: true\n" in config
    nav = set(re.findall(r":\s+([\w/]+\.md)\s*$", config, flags=re.M))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages == nav, pages ^ nav  # every page is in the site's navigation
