"""Recover callbacks that never arrived: the vendor API's client (`client`) and the sweep that stores what is missing.

Nothing is imported here, so `import tavus_callbacks.reconcile` costs nothing until a sweep runs.
"""
