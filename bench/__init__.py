"""The benchmark suite: what mediation costs, always measured against bare execution.

``python -m bench`` runs every scenario and writes ``bench/results.json``; the smoke test runs
the same code with tiny sizes. Nothing here is imported by the wrapper or the fake agent.
"""
