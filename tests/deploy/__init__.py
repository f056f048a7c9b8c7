"""What ships: template.yaml, the bundles, the deploy commands (CLIs faked by fake_cli.py), outputs, Python versions."""
