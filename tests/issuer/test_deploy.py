"""deploy/: the systemd units parse (systemd-analyze verify) and name commands and options
that exist; the example settings files name real settings; nginx fronts the workers the
guide enables and keeps /metrics to itself."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

from cardsvc.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").iterdir())
INSTALLED = "/opt/cardsvc/.venv/bin/"
BIN = Path(sys.executable).parent
GUIDE = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")


def exec_lines(unit: Path) -> list[str]:
    return [
        line.partition("=")[2]
        for line in unit.read_text(encoding="utf-8").splitlines()
        if line.startswith(("ExecStart=", "ExecStartPre="))
    ]


def test_units_parse(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is not installed (./dev installs systemd)"
    names = []
    for unit in UNITS:
        text = unit.read_text(encoding="utf-8").replace(INSTALLED, f"{BIN}/")
        name = unit.name.replace("@.service", "@8001.service")
        (tmp_path / name).write_text(text, encoding="utf-8")
        names.append(f"./{name}")
    run = subprocess.run([analyze, "verify", *names], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0 and not run.stderr.strip(), run.stderr
    # The check sees mistakes: a unit naming a missing command fails it.
    broken = tmp_path / "broken.service"
    broken.write_text("[Service]\nExecStart=/nonexistent/cardsvc serve\n", encoding="utf-8")
    refused = subprocess.run([analyze, "verify", "./broken.service"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode != 0


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_commands_and_options_exist(unit: Path) -> None:
    for line in exec_lines(unit):
        words = line.split()
        if not words[0].startswith(INSTALLED):
            assert Path(words[0]).exists(), words[0]
            continue
        program = BIN / words[0].removeprefix(INSTALLED)
        assert program.exists(), program
        command = [w for w in words[1:] if not w.startswith("-")]
        command = [w for w in command if not re.fullmatch(r"[0-9.%i]+", w)]
        wide = {**os.environ, "COLUMNS": "200"}
        help_text = subprocess.run([str(program), *command, "--help"], capture_output=True,
                                   text=True, timeout=60, env=wide)  # fmt: skip
        assert help_text.returncode == 0, (line, help_text.stderr)
        for option in (w for w in words if w.startswith("--")):
            assert option in help_text.stdout, (unit.name, option)


def test_issuer_settings_example_names_real_settings() -> None:
    values = dotenv_values(DEPLOY / "issuer.env.example")
    settings: dict[str, object] = {}
    for name, value in values.items():
        if name == "FORWARDED_ALLOW_IPS":  # uvicorn's own
            continue
        assert name.startswith("CARDSVC_"), name
        field = name.removeprefix("CARDSVC_").lower()
        assert field in Settings.model_fields, name
        settings[field] = json.loads(value) if value and value.startswith("[") else value
    Settings(**settings)  # type: ignore[arg-type]  # every value parses


def test_agent_settings_example_names_real_options() -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "reader_agent").rglob("*.py"))
    for name in dotenv_values(DEPLOY / "agent.env.example"):
        assert f'"{name}"' in source, name


def test_nginx_fronts_the_workers_the_guide_enables() -> None:
    conf = (DEPLOY / "nginx" / "cardsvc.conf").read_text(encoding="utf-8")
    upstream = set(re.findall(r"server 127\.0\.0\.1:(\d+)", conf))
    enabled = set(re.findall(r"cardsvc-issuer@(\d+)", GUIDE))
    assert upstream and upstream == enabled
    assert "location = /metrics { return 404; }" in conf
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf
