"""AWS Lambda entry point: template.yaml's `Handler: app.handler`."""

from tavus_callbacks.adapters.aws_lambda import handler

__all__ = ["handler"]
