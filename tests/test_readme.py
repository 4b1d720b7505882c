"""The README's Python examples run as written (in order, one namespace, like a
reader pasting them into one session), and its first screen keeps the two
set-up commands."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.M | re.S)


def test_the_first_screen_has_exactly_the_two_setup_commands():
    text = README.read_text()
    first_code = text.index("```")
    head = text[first_code:text.index("## ")]
    assert re.findall(r"^```(\w*)\n(.*?)^```", head, re.M | re.S) == [
        ("bash", 'python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/marginkit demo\n'),
        ("bash", 'python3 -m venv .venv && .venv/bin/pip install ".[test]" && '
                 '.venv/bin/python -m pytest\n')]


def test_python_examples_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # examples may write files
    code = blocks("python")
    assert len(code) >= 2
    namespace: dict = {"__name__": "__readme__"}
    for k, block in enumerate(code):
        exec(compile(block, f"README.md python block {k + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "50765.0 2920.92 1465.92 healthy" in out  # the margin the engine example shows
    eng = namespace["eng"]
    assert eng.mode("alice") == "portfolio"
