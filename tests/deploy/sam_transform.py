"""Print template.yaml as CloudFormation receives it after the SAM transform, as JSON on stdout.

Run with the SAM CLI's own interpreter (tests/.tools/sam/bin/python), which has the translator:
    python tests/deploy/sam_transform.py template.yaml '{"EnableTracing": "true"}'
As `sam deploy` does, local code folders are first replaced by the S3 URI they are uploaded to. The translator
asks IAM for the ARNs of AWS managed policies named in `Policies`; this template names none, so it is given none.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The translator's policy loader, for a template whose functions name no AWS managed policy."""

    def load(self) -> dict[str, str]:
        return {}


def main() -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = yaml_parse(Path(sys.argv[1]).read_text())
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://packaged-artifacts/{name}.zip"
    parameters = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    print(json.dumps(transform(template, parameters, NoManagedPolicies()), indent=1, default=str))


if __name__ == "__main__":
    main()
