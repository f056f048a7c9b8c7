"""AWS Lambda entry point: template.yaml's `Handler: app.handler`, the App of the function's settings (its tokens
and API key from Secrets Manager when named) handed to the Lambda adapter."""

from tavus_callbacks.adapters.aws_lambda import lambda_handler
from tavus_callbacks.app import App
from tavus_callbacks.platforms import aws

callbacks = App.from_env(tokens=aws.secret_tokens, api_key=aws.secret_api_key)
handler = lambda_handler(callbacks)

__all__ = ["callbacks", "handler"]
