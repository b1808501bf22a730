"""The candidate fingerprint and the code state it is built from."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from modelops.lineage import (
    candidate_fingerprint,
    code_state,
    source_hash,
)

BASE = {
    "train_sha256": "a" * 64,
    "test_sha256": "b" * 64,
    "model_config": {"class": "x.Y", "kwargs": {"alpha": 1, "beta": 2}, "seed": 42},
    "features": {"numeric": ["t"], "target": "y"},
    "git_commit": "1" * 40,
    "code_sha256": "c" * 64,
}


def test_the_fingerprint_is_a_stable_sha256_of_what_trains_the_model():
    first = candidate_fingerprint(**BASE)
    assert len(first) == 64 and int(first, 16) >= 0
    reordered = {
        **BASE,
        "model_config": {"seed": 42, "kwargs": {"beta": 2, "alpha": 1}, "class": "x.Y"},
    }
    assert candidate_fingerprint(**reordered) == first  # canonical JSON


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("train_sha256", "d" * 64),
        ("test_sha256", "d" * 64),
        ("model_config", {**BASE["model_config"], "seed": 43}),
        ("model_config", {**BASE["model_config"], "kwargs": {"alpha": 1, "beta": 3}}),
        ("features", {"numeric": ["t", "u"], "target": "y"}),
        ("git_commit", "2" * 40),
        ("code_sha256", "e" * 64),
    ],
)
def test_any_difference_gives_another_fingerprint(key, value):
    assert candidate_fingerprint(**{**BASE, key: value}) != candidate_fingerprint(
        **BASE
    )


def test_the_source_hash_follows_every_python_file(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "b.py").write_text("y = 2\n")
    before = source_hash(package)
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "a.cpython-311.py").write_text("junk")
    (package / "notes.txt").write_text("not code")
    assert source_hash(package) == before
    (package / "sub" / "b.py").write_text("y = 3\n")
    assert source_hash(package) != before


def test_code_state_outside_git_still_identifies_the_code(tmp_path):
    state = code_state(tmp_path)
    assert state["git_commit"] == "unknown"
    package = Path(__file__).resolve().parents[1] / "src" / "modelops"
    assert state["code_sha256"] == source_hash(package)


def test_code_state_in_a_checkout_names_the_commit(tmp_path):
    for command in (
        ["git", "init", "-q"],
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "x",
            "--allow-empty",
        ],
    ):
        subprocess.run(command, cwd=tmp_path, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert code_state(tmp_path)["git_commit"] == head
    assert code_state(tmp_path)["git_dirty"] == "false"
