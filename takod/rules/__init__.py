"""The rules of runs and approvals: pure functions of the facts, no I/O.

A storage backend fetches the facts, asks these functions, and writes what
they decided, so a second backend never writes the rules again and the rules
are tested directly (tests/unit/test_rules*.py).
"""
