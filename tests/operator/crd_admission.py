"""What the Kubernetes API server does with a custom resource, offline.

There is no cluster here, so the CRD's schema is exercised the way the API
server would exercise it, in its order: apply the structural defaults, check
the object against the openAPI v3 schema (unknown fields rejected, as
``kubectl apply`` with strict field validation does), then evaluate every
``x-kubernetes-validations`` CEL rule (with cel-python) on the defaulted object.
:func:`structural_problems` checks the rules a CRD schema must follow to be
accepted at all (the parts kubernetes-validate cannot see).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import celpy
import jsonschema

Schema = dict[str, Any]


def crd_schema(crd: dict[str, Any]) -> Schema:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def apply_defaults(schema: Schema, value: Any) -> Any:
    """A copy of ``value`` with the schema's defaults filled in (structural defaulting)."""
    value = copy.deepcopy(value)
    _default(schema, value)
    return value


def _default(schema: Schema, value: Any) -> None:
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _default(sub, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name, item in value.items():
                if name not in (schema.get("properties") or {}):
                    _default(extra, item)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default(schema["items"], item)


def _strict(schema: Schema) -> Schema:
    """The schema as JSON Schema draft 4, closed against unknown fields."""
    out = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if "properties" in out:
        out["properties"] = {k: _strict(v) for k, v in out["properties"].items()}
        if (
            not schema.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in out
        ):
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _strict(out["additionalProperties"])
    if isinstance(out.get("items"), dict):
        out["items"] = _strict(out["items"])
    out.pop("default", None)
    return out


def openapi_errors(schema: Schema, value: Any) -> list[str]:
    validator = jsonschema.Draft4Validator(_strict(schema))
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(value)
    ]


def _rules(schema: Schema, value: Any, path: str) -> Iterator[tuple[str, dict[str, Any], Any]]:
    for rule in schema.get("x-kubernetes-validations") or []:
        yield path, rule, value
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                yield from _rules(sub, value[name], f"{path}.{name}" if path else name)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _rules(schema["items"], item, f"{path}[{index}]")


def cel_errors(schema: Schema, value: Any) -> list[str]:
    environment = celpy.Environment()
    errors = []
    for path, rule, node in _rules(schema, value, ""):
        program = environment.program(environment.compile(rule["rule"]))
        outcome = program.evaluate({"self": celpy.json_to_cel(node)})
        if outcome is not True and outcome != celpy.celtypes.BoolType(True):
            errors.append(f"{path or '<root>'}: {rule.get('message', rule['rule'])}")
    return errors


def admit(crd: dict[str, Any], obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the object as stored, the reasons it would be rejected)."""
    schema = crd_schema(crd)
    defaulted = apply_defaults(schema, obj)
    errors = openapi_errors(schema, defaulted)
    if not errors:  # CEL runs on objects that passed the schema
        errors = cel_errors(schema, defaulted)
    return defaulted, errors


def structural_problems(schema: Schema, path: str = "") -> list[str]:
    """Violations of the structural-schema rules the API server enforces on CRDs."""
    found = []
    here = path or "<root>"
    int_or_string = schema.get("x-kubernetes-int-or-string")
    if (
        "type" not in schema
        and not int_or_string
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        found.append(f"{here}: no type")
    if "properties" in schema and "additionalProperties" in schema:
        found.append(f"{here}: properties and additionalProperties together")
    if "anyOf" in schema and not int_or_string:
        found.append(f"{here}: anyOf outside x-kubernetes-int-or-string")
    if "default" in schema and (
        errors := openapi_errors(schema, apply_defaults(schema, schema["default"]))
    ):
        found.append(f"{here}: default does not validate: {errors}")
    if schema.get("type") == "array" and "items" not in schema:
        found.append(f"{here}: array without items")
    for name, sub in (schema.get("properties") or {}).items():
        found += structural_problems(sub, f"{path}.{name}" if path else name)
    if isinstance(schema.get("additionalProperties"), dict):
        found += structural_problems(schema["additionalProperties"], f"{path}.*")
    if isinstance(schema.get("items"), dict):
        found += structural_problems(schema["items"], f"{path}[]")
    return found
