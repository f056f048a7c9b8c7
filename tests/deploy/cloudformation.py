"""template.yaml read as CloudFormation does: the short tags (!Ref, !Sub, ...) as their long forms, and a template
(transformed by SAM or not) with its parameters applied: conditions decided, intrinsic functions evaluated."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, !If, ...) read as their long JSON forms."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


CfnLoader.add_multi_constructor("!", _tag)


PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012",
          "AWS::StackName": "tavus-callbacks", "AWS::URLSuffix": "amazonaws.com"}
NO_VALUE = object()


class Rendered:
    """A transformed template with its parameters applied: conditions decided, intrinsics evaluated."""

    def __init__(self, transformed: dict[str, Any], parameters: dict[str, str]) -> None:
        defaults = {name: str(p.get("Default", "")) for name, p in transformed["Parameters"].items()}
        self.parameters = {**defaults, **parameters}
        self.raw = transformed
        self.conditions: dict[str, bool] = {}
        for name in transformed.get("Conditions", {}):
            self.condition(name)
        self.resources = {name: self.value(r) for name, r in transformed["Resources"].items()
                          if "Condition" not in r or self.condition(r["Condition"])}

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.value(self.raw["Conditions"][name]))
        return self.conditions[name]

    def value(self, node: Any) -> Any:
        """`node` with its intrinsic functions evaluated and AWS::NoValue dropped from its lists and mappings."""
        if isinstance(node, list):
            return [v for v in (self.value(n) for n in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key in self.INTRINSICS:
                return self.INTRINSICS[key](self, arg)
        return {k: v for k, v in ((k, self.value(v)) for k, v in node.items()) if v is not NO_VALUE}

    def _if(self, arg: list[Any]) -> Any:
        return self.value(arg[1] if self.condition(arg[0]) else arg[2])

    def _equals(self, arg: list[Any]) -> bool:
        left, right = (self.value(a) for a in arg)
        return str(left) == str(right)

    def _not(self, arg: list[Any]) -> bool:
        return not self.value(arg[0])

    def _and(self, arg: list[Any]) -> bool:
        return all(self.value(a) for a in arg)

    def _or(self, arg: list[Any]) -> bool:
        return any(self.value(a) for a in arg)

    def _get_att(self, arg: list[str] | str) -> str:
        resource, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
        return f"<{resource}.{attribute}>"

    def _sub(self, arg: list[Any] | str) -> str:
        text, names = (arg, {}) if isinstance(arg, str) else (arg[0], self.value(arg[1]))
        return re.sub(r"\$\{([^}!]+)\}", lambda m: str(names[m[1]] if m[1] in names else self.sub(m[1])), text)

    def _split(self, arg: list[Any]) -> list[str]:
        return str(self.value(arg[1])).split(arg[0])

    def _select(self, arg: list[Any]) -> Any:
        return self.value(arg[1])[int(arg[0])]

    def _join(self, arg: list[Any]) -> Any:
        return arg[0].join(str(v) for v in self.value(arg[1]))

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        assert name in self.raw["Resources"], f"Ref to an unknown name {name}"
        return f"<{name}>"

    def sub(self, name: str) -> str:
        if "." in name:
            return str(self.value({"Fn::GetAtt": name.split(".", 1)}))
        return str(self.ref(name))

    INTRINSICS: dict[str, Callable[[Rendered, Any], Any]] = {
        "Ref": ref, "Condition": condition, "Fn::If": _if, "Fn::Equals": _equals, "Fn::Not": _not, "Fn::And": _and,
        "Fn::Or": _or, "Fn::GetAtt": _get_att, "Fn::Sub": _sub, "Fn::Split": _split, "Fn::Select": _select,
        "Fn::Join": _join}
    """Each intrinsic function CloudFormation evaluates here, by its long name, and how."""

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: r for name, r in self.resources.items() if r["Type"] == kind}

    def function_statements(self) -> dict[str, dict[str, Any]]:
        (policy,) = self.resources["CallbackFunctionRole"]["Properties"]["Policies"]
        return {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}

    def bucket(self) -> str:
        create = self.parameters["CreateBucket"] == "true"
        return "<RecordingBucket>" if create else self.parameters["BucketName"]


def raw_template() -> dict[str, Any]:
    """template.yaml as written (before the SAM transform)."""
    data: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)
    return data


def derive_rule_pattern(bucket: str, **parameters: str) -> dict[str, Any]:
    """The event pattern of the rule that sends the bucket's notifications to the function, for `parameters`,
    naming `bucket` (the created bucket's name, or BucketName's)."""
    rendered = Rendered(raw_template(), parameters)
    events = rendered.resources["CallbackFunction"]["Properties"]["Events"]
    pattern: dict[str, Any] = events["DeriveEvents"]["Properties"]["Pattern"]
    pattern["detail"]["bucket"]["name"] = [bucket]
    return pattern
