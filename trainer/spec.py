"""The job spec file that ``python -m trainer run --spec`` reads, and parameter resolution."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trainer.catalog import AlgorithmInfo, get_algorithm


class SpecError(ValueError):
    """The spec or its parameters cannot be used; the message says why."""


@dataclass(frozen=True)
class ReportTarget:
    url: str
    token: str
    interval: float = 5.0  # seconds between batches sent
    sample_seconds: float = 15.0  # seconds between resource samples


@dataclass(frozen=True)
class JobSpec:
    job_id: int
    scenario: str
    algorithm: str
    parameters: dict[str, Any]  # resolved: validated, defaults filled
    base_model: str
    train_data: str
    output_dir: str
    validation_data: str | None = None
    test_data: str | None = None
    report: ReportTarget | None = None
    # a checkpoint folder of an earlier run of the same training, to go on from
    resume_from: str | None = None

    @property
    def info(self) -> AlgorithmInfo:
        return get_algorithm(self.algorithm)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.report:  # the token is a secret: never written into the output
            data["report"] = {
                "url": self.report.url,
                "interval": self.report.interval,
                "sample_seconds": self.report.sample_seconds,
            }
        return data


def _is_regex(value: object) -> bool:
    if isinstance(value, str):
        re.compile(value)
    return True


def _formats():
    """`format: regex` as Python compiles it; a pattern too large or too deep is as wrong
    as a malformed one (jsonschema's own check lets those raise)."""
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())
    checker.checks("regex", raises=(re.error, OverflowError, RecursionError, ValueError))(_is_regex)
    return checker


def resolve_parameters(info: AlgorithmInfo, given: dict[str, Any] | None) -> dict[str, Any]:
    """Validate ``given`` against the algorithm's schema and fill in the defaults."""
    import jsonschema

    schema = info.parameters_schema
    resolved = {name: copy.deepcopy(prop["default"]) for name, prop in schema["properties"].items()}
    resolved.update(given or {})
    validator = jsonschema.Draft202012Validator(schema, format_checker=_formats())
    errors = sorted(validator.iter_errors(resolved), key=lambda e: list(e.path))
    if errors:
        details = "; ".join(
            f"{'.'.join(map(str, e.path)) or 'parameters'}: {e.message}" for e in errors
        )
        raise SpecError(f"invalid parameters for {info.code}: {details}")
    for name in missing_required(schema, resolved):
        when = schema["properties"][name]["x-required-when"]
        condition = ", ".join(f"{key}={value}" for key, value in when.items())
        raise SpecError(f"invalid parameters for {info.code}: {name} is required when {condition}")
    return resolved


def missing_required(schema: dict[str, Any], values: dict[str, Any]) -> list[str]:
    """Properties whose `x-required-when` conditions hold but which are left empty."""
    missing = []
    for name, prop in (schema.get("properties") or {}).items():
        when = prop.get("x-required-when")
        holds = when and all(values.get(key) == value for key, value in when.items())
        if holds and values.get(name) in (None, ""):
            missing.append(name)
    return missing


def _require(data: dict, name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in data:
        raise SpecError(f"spec is missing {name!r}")
    value = data[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise SpecError(f"spec field {name!r} has the wrong type: {type(value).__name__}")
    return value


def parse_spec(data: dict[str, Any]) -> JobSpec:
    if not isinstance(data, dict):
        raise SpecError("spec must be a JSON object")
    algorithm = _require(data, "algorithm", str)
    try:
        info = get_algorithm(algorithm)
    except KeyError as exc:
        raise SpecError(str(exc.args[0])) from None
    scenario = _require(data, "scenario", str)
    if scenario != info.scenario:
        raise SpecError(f"algorithm {algorithm!r} belongs to {info.scenario}, not {scenario}")
    optional = {}
    for name in ("validation_data", "test_data", "resume_from"):
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise SpecError(f"spec field {name!r} must be a path or null")
        optional[name] = value or None
    report = data.get("report")
    target = None
    if report is not None:
        if not isinstance(report, dict) or not isinstance(report.get("url"), str):
            raise SpecError('spec field \'report\' must be null or {"url": ..., "token": ...}')
        timing = {}
        for name in ("interval", "sample_seconds"):
            value = report.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise SpecError(f"spec field 'report.{name}' must be a positive number of seconds")
            timing[name] = float(value)
        target = ReportTarget(url=report["url"], token=str(report.get("token") or ""), **timing)
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise SpecError("spec field 'parameters' must be an object")
    return JobSpec(
        job_id=_require(data, "job_id", int),
        scenario=scenario,
        algorithm=algorithm,
        parameters=resolve_parameters(info, parameters),
        base_model=_require(data, "base_model", str),
        train_data=_require(data, "train_data", str),
        output_dir=_require(data, "output_dir", str),
        report=target,
        **optional,
    )


def load_spec(path: str | Path) -> JobSpec:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"spec {path} is not valid JSON: {exc}") from None
    return parse_spec(data)
