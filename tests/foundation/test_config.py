"""Configuration from the environment: good and bad environments, -h and -c, exit code 2 without traceback."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stator.config import ConfigError, describe_settings, load_settings, redacted_dump
from stator.config.durations import format_duration, parse_duration
from stator.config.env import unknown_variables
from tests.conftest import service_env

GOOD = [
    ({}, lambda s: s.http.port == 8087 and s.http.host == "0.0.0.0" and s.service.name == "stator"),
    ({"STATOR_HTTP_PORT": "0"}, lambda s: s.http.port == 0),
    ({"STATOR_HTTP_PORT": "65535"}, lambda s: s.http.port == 65535),
    ({"STATOR_SHUTDOWN_TIMEOUT": "1m30s"}, lambda s: s.shutdown.timeout == 90.0),
    ({"STATOR_SHUTDOWN_TIMEOUT": "500ms"}, lambda s: s.shutdown.timeout == 0.5),
    ({"STATOR_HTTP_SLOW": "1.5s"}, lambda s: s.http.slow == 1.5),
    ({"STATOR_LOG_FORMAT": "logfmt", "STATOR_LOG_LEVEL": "debug"}, lambda s: s.log.format == "logfmt"),
    ({"STATOR_DISK_PATHS": "/, /tmp ,"}, lambda s: s.disk.paths == ["/", "/tmp"]),
    ({"STATOR_SERVICE_TAGS": ""}, lambda s: s.service.tags == []),
    ({"STATOR_HTTP_BUCKETS": "0.1,1,10"}, lambda s: s.http.buckets == [0.1, 1.0, 10.0]),
    ({"STATOR_WAVE_ENABLED": "false"}, lambda s: s.wave.enabled is False),
    ({"STATOR_OPS_PORT": ""}, lambda s: s.ops.port is None),
    ({"STATOR_OPS_PORT": "9090"}, lambda s: s.ops.port == 9090),
]

BAD = [
    ({"STATOR_HTTP_PORT": "70000"}, "STATOR_HTTP_PORT='70000'", "less than or equal to 65535"),
    ({"STATOR_HTTP_PORT": "-1"}, "STATOR_HTTP_PORT='-1'", "greater than or equal to 0"),
    ({"STATOR_HTTP_PORT": "http"}, "STATOR_HTTP_PORT='http'", "valid integer"),
    ({"STATOR_SHUTDOWN_TIMEOUT": "10"}, "STATOR_SHUTDOWN_TIMEOUT='10'", "expected a number with a unit"),
    ({"STATOR_SHUTDOWN_TIMEOUT": "-5s"}, "STATOR_SHUTDOWN_TIMEOUT='-5s'", "greater than or equal to 0"),
    ({"STATOR_HTTP_SLOW": "fast"}, "STATOR_HTTP_SLOW='fast'", "invalid duration"),
    ({"STATOR_LOG_FORMAT": "xml"}, "STATOR_LOG_FORMAT='xml'", "'json', 'logfmt' or 'console'"),
    ({"STATOR_LOG_LEVEL": "loud"}, "STATOR_LOG_LEVEL='loud'", "'debug', 'info', 'warning' or 'error'"),
    ({"STATOR_SERVICE_NAME": ""}, "STATOR_SERVICE_NAME=''", "at least 1 character"),
    ({"STATOR_SERVICE_ID": "a/b"}, "STATOR_SERVICE_ID='a/b'", "should match pattern"),
    ({"STATOR_WAVE_ENABLED": "perhaps"}, "STATOR_WAVE_ENABLED='perhaps'", "valid boolean"),
]


@pytest.mark.parametrize(("env", "check"), GOOD)
def test_good_environments(env: dict[str, str], check: object) -> None:
    settings = load_settings(env)
    assert callable(check)
    assert check(settings)


@pytest.mark.parametrize(("env", "where", "why"), BAD)
def test_bad_environments_name_the_variable(env: dict[str, str], where: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = str(info.value)
    assert where in message
    assert why in message
    assert "\n" not in message


def test_several_errors_are_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"STATOR_HTTP_PORT": "x", "STATOR_LOG_FORMAT": "xml"})
    assert "STATOR_HTTP_PORT" in str(info.value)
    assert "STATOR_LOG_FORMAT" in str(info.value)


def test_unknown_variables_are_reported() -> None:
    env = {"STATOR_HTTP_PROT": "1", "STATOR_HTTP_PORT": "1", "STATOR_REQUIRE_EXTERNAL": "1", "HOME": "/"}
    assert unknown_variables(env) == ["STATOR_HTTP_PROT"]


def test_every_setting_is_described() -> None:
    described = describe_settings()
    names = [v.name for v in described]
    assert len(names) == len(set(names))
    assert {"STATOR_HTTP_HOST", "STATOR_HTTP_PORT", "STATOR_SERVICE_NAME", "STATOR_LOG_FORMAT"} <= set(names)
    assert {"STATOR_LOG_LEVEL", "STATOR_SHUTDOWN_TIMEOUT"} <= set(names)
    assert all(v.description for v in described), [v.name for v in described if not v.description]
    by_name = {v.name: v for v in described}
    assert by_name["STATOR_SHUTDOWN_TIMEOUT"].type == "duration"
    assert by_name["STATOR_SHUTDOWN_TIMEOUT"].default == "15s"
    assert by_name["STATOR_LOG_FORMAT"].type == "json|logfmt|console"


def test_redacted_dump_hides_secrets() -> None:
    from pydantic import SecretStr

    from stator.config.env import REDACTED, UNSET
    from stator.config.settings import Group

    class WithSecret(Group):
        token: SecretStr = SecretStr("")
        password: SecretStr = SecretStr("hunter2")

    dumped = redacted_dump(WithSecret())
    assert dumped == {"token": UNSET, "password": REDACTED}


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stator", *args],
        env=service_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_lists_every_setting() -> None:
    result = _cli("run", "-h")
    assert result.returncode == 0
    header = result.stdout.splitlines()
    assert any(line.startswith("KEY") and "DESCRIPTION" in line for line in header)
    for var in describe_settings():
        assert var.name in result.stdout


def test_dash_c_prints_loaded_config_as_json() -> None:
    result = _cli("run", "-c", STATOR_HTTP_PORT="9999", STATOR_SHUTDOWN_TIMEOUT="1m30s")
    assert result.returncode == 0, result.stderr
    config = orjson.loads(result.stdout)
    assert config["http"]["port"] == 9999
    assert config["shutdown"]["timeout"] == "1m30s"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"STATOR_HTTP_PORT": "70000"}, "STATOR_HTTP_PORT"),
        ({"STATOR_SHUTDOWN_TIMEOUT": "soon"}, "STATOR_SHUTDOWN_TIMEOUT"),
        ({"STATOR_LOG_FORMAT": "yaml"}, "STATOR_LOG_FORMAT"),
    ],
)
def test_bad_config_exits_2_with_one_readable_line(env: dict[str, str], needle: str) -> None:
    for args in (("run",), ("run", "-c")):
        result = _cli(*args, **env)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        assert needle in lines[0]
        assert result.stdout == ""


def test_unknown_command_exits_2() -> None:
    result = _cli("frobnicate")
    assert result.returncode == 2
    assert "unknown command" in result.stderr


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("1s", 1.0), ("500ms", 0.5), ("1m30s", 90.0), ("1h2m3s", 3723.0), ("1.5h", 5400.0), ("10us", 1e-5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "1x", "s", "1m30", "--1s", "1s 2s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**15))
def test_duration_roundtrip(ns: int) -> None:
    seconds = ns / 1e9
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, rel=1e-9, abs=1e-9)


@given(st.text(max_size=20))
def test_parse_duration_never_crashes(text: str) -> None:
    try:
        value = parse_duration(text)
    except ValueError:
        return
    assert isinstance(value, float)


def test_secret_values_never_appear_in_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"STATOR_OTLP_HEADERS": "leakyvalue"})
    assert "STATOR_OTLP_HEADERS" in str(info.value)
    assert "leakyvalue" not in str(info.value)
