"""pydantic-core's answer for plainly valid input, computed in Python: a cold start need not import pydantic-core.

`compile_plain(schema)` turns the generated pydantic-core schema of a payload shape (_core_schemas.json)
into a function that returns what pydantic-core's validator returns when every value already has its
field's exact type (a str for str, a finite float for float, a list for a list, ...). For any other input
it returns NOT_PLAIN and the caller asks pydantic-core, which also words every error. It reads the same
schema, so no shape is defined twice; a schema part it does not know makes it decline the whole shape.

Like dataclasses, it writes the source of each object check with the field tests inline and compiles it
once: as fast as pydantic-core's own validator on these small shapes, without loading it.
"""

from __future__ import annotations

from collections.abc import Callable
from math import isfinite
from typing import Any

NOT_PLAIN: Any = object()  # "ask pydantic-core": not plainly valid, or not provably what it would return
_MISSING: Any = object()

Check = Callable[[Any], Any]


class _Unsupported(Exception):
    """A schema part whose result this module cannot promise to match."""


def compile_plain(schema: dict[str, Any]) -> Check | None:
    """The plain-case validator of a core schema, or None when the schema uses anything not handled here."""
    try:
        return _Compiler().check(schema)
    except _Unsupported:
        return None


# A value of the exact type is returned as it is; pydantic-core turns an int into a float for a float field,
# exactly for ints of at most 53 bits (beyond, the plain check leaves it to pydantic-core).
_EXACT_TYPES = {"str": str, "int": int, "float": float, "bool": bool}
_CONTAINER_TYPES = {"list": list, "dict": dict}
_EXACT_INT = 2**53


def _only(node: dict[str, Any], *allowed: str) -> None:
    """No key but these (and `type`): any other (strict, constraints, custom errors...) may change the result."""
    extra = set(node) - {"type", *allowed}
    if extra:
        raise _Unsupported(sorted(extra))


class _Compiler:
    """Writes and compiles the checks of one schema; nested checks are names in the generated code's namespace."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"NOT_PLAIN": NOT_PLAIN, "_MISSING": _MISSING, "isfinite": isfinite}

    def name(self, value: Any) -> str:
        """A name in the generated code for `value` (a nested check or a default)."""
        key = f"_{len(self.namespace)}"
        self.namespace[key] = value
        return key

    def test(self, node: dict[str, Any], var: str) -> str | None:
        """Source of a condition true when `var` is not plainly valid for `node`, "" when any value is; None
        when `node` is not that simple (a float, which may convert, or a container)."""
        kind = node.get("type")
        if kind == "any":
            _only(node)
            return ""
        if kind in ("str", "int", "bool"):
            _only(node)
            return f"type({var}) is not {kind}"
        if kind == "nullable":
            _only(node, "schema")
            inner = self.test(node["schema"], var)
            if inner is None:
                return None
            return f"({var} is not None and {inner})" if inner else ""
        return None

    def value(self, node: dict[str, Any], var: str, indent: str) -> list[str]:
        """Lines that check `var` against `node`, replacing it by its validated value; NOT_PLAIN returns."""
        test = self.test(node, var)
        if test == "":
            return []
        if test is not None:
            return [f"{indent}if {test}:", f"{indent}    return NOT_PLAIN"]
        kind = node["type"]
        if kind == "nullable":
            return [f"{indent}if {var} is not None:", *self.value(node["schema"], var, indent + "    ")]
        if kind == "float":
            _only(node)
            return [f"{indent}if type({var}) is not float:",
                    f"{indent}    if type({var}) is not int or not -{_EXACT_INT} <= {var} <= {_EXACT_INT}:",
                    f"{indent}        return NOT_PLAIN",
                    f"{indent}    {var} = float({var})",
                    f"{indent}elif not isfinite({var}):",
                    f"{indent}    return NOT_PLAIN"]
        check = self.name(self.check(node))
        return [f"{indent}{var} = {check}({var})", f"{indent}if {var} is NOT_PLAIN:", f"{indent}    return NOT_PLAIN"]

    def check(self, node: dict[str, Any]) -> Check:
        """A function returning the validated value or NOT_PLAIN."""
        kind = node.get("type")
        if kind == "typed-dict":
            return self.typed_dict(node)
        if kind == "list":
            _only(node, "items_schema")
            return self.list_of(node["items_schema"])
        if kind == "dict":
            _only(node, "keys_schema", "values_schema")
            return self.dict_of(node.get("keys_schema", {"type": "any"}), node.get("values_schema", {"type": "any"}))
        if kind == "union":
            return self.union(node)
        if kind in ("any", "nullable", *_EXACT_TYPES):
            return self.compile("leaf", ["def leaf(v):", *self.value(node, "v", "    "), "    return v"])
        raise _Unsupported(kind)

    def typed_dict(self, node: dict[str, Any]) -> Check:
        _only(node, "fields", "computed_fields", "extra_behavior", "config")
        config = node.get("config", {})
        if (node.get("computed_fields") or not set(config) <= {"extra_fields_behavior", "allow_inf_nan", "title"}
                or node.get("extra_behavior", config.get("extra_fields_behavior", "ignore")) != "ignore"):
            raise _Unsupported("typed-dict options")
        lines = ["def typed_dict(v):", "    if type(v) is not dict:", "        return NOT_PLAIN", "    get = v.get"]
        out = []
        for i, (field, spec) in enumerate(node["fields"].items()):
            _only(spec, "schema", "required")
            schema, var, key = spec["schema"], f"x{i}", repr(field)
            if spec.get("required") is not (schema["type"] != "default"):
                raise _Unsupported("a field neither required nor defaulted")
            if schema["type"] == "default":
                _only(schema, "schema", "default")
                default, schema = schema["default"], schema["schema"]
                if not isinstance(default, str | int | float | bool | None):
                    raise _Unsupported("a mutable default")
                test = self.test(schema, var)
                if test == "":  # any value
                    lines.append(f"    {var} = get({key}, {self.name(default)})")
                elif default is None and schema["type"] == "nullable":  # missing is None, which passes
                    lines += [f"    {var} = get({key})", *self.value(schema, var, "    ")]
                else:
                    checks = self.value(schema, var, "        ")
                    lines += [f"    {var} = get({key}, _MISSING)", f"    if {var} is _MISSING:",
                              f"        {var} = {self.name(default)}", "    else:", *checks]
            else:  # required: every check but any's fails on _MISSING
                lines.append(f"    {var} = get({key}, _MISSING)")
                checks = self.value(schema, var, "    ")
                lines += checks or [f"    if {var} is _MISSING:", "        return NOT_PLAIN"]
            out.append(f"{key}: {var}")
        lines.append(f"    return {{{', '.join(out)}}}")
        return self.compile("typed_dict", lines)

    def list_of(self, items: dict[str, Any]) -> Check:
        lines = ["def plain_list(v):", "    if type(v) is not list:", "        return NOT_PLAIN"]
        test = self.test(items, "x")
        if test == "":
            lines.append("    return list(v)")
        elif test is not None:
            lines += ["    for x in v:", f"        if {test}:", "            return NOT_PLAIN", "    return list(v)"]
        else:
            lines += ["    out = []", "    for x in v:", *self.value(items, "x", "        "), "        out.append(x)",
                      "    return out"]
        return self.compile("plain_list", lines)

    def dict_of(self, keys: dict[str, Any], values: dict[str, Any]) -> Check:
        key_test, value_test = self.test(keys, "k"), self.test(values, "x")
        if key_test not in ("", "type(k) is not str") or value_test != "":
            raise _Unsupported("a dict of other than str -> any")
        lines = ["def plain_dict(v):", "    if type(v) is not dict:", "        return NOT_PLAIN"]
        if key_test:
            lines += ["    for k in v:", f"        if {key_test}:", "            return NOT_PLAIN"]
        return self.compile("plain_dict", [*lines, "    return dict(v)"])

    def union(self, node: dict[str, Any]) -> Check:
        """Smart mode, members of distinct exact types: the value's type picks the one member that can match."""
        _only(node, "choices")
        by_type: dict[type, Check] = {}
        for choice in node["choices"]:
            member = choice[0] if isinstance(choice, list) else choice
            exact = {**_EXACT_TYPES, **_CONTAINER_TYPES}.get(member.get("type"))
            if exact is None or exact in by_type:
                raise _Unsupported("a union of other than distinct plain types")
            by_type[exact] = self.check(member)
        if bool in by_type and int in by_type:
            raise _Unsupported("bool and int in one union")
        members = self.name(by_type)
        return self.compile("union", ["def union(v):", f"    check = {members}.get(type(v))",
                                      "    return NOT_PLAIN if check is None else check(v)"])

    def compile(self, name: str, lines: list[str]) -> Check:
        code = compile("\n".join(lines) + "\n", f"<plain check {name}>", "exec")
        scope: dict[str, Any] = {}
        exec(code, self.namespace, scope)
        check: Check = scope[name]
        return check
