"""The adapter conformance suite (test_conformance.py) driven through each platform's real objects (drivers.py:
Lambda handler, functions-framework app, Azure HttpRequest, serve), and what each adapter does beyond it."""
