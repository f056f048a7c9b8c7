"""The Forwarder contract against every bus (test_forwarder_contract.py), and what each bus does beyond it."""
