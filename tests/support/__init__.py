"""Helpers shared by the tests (and by bench/), one module per concern; no tests here.

* ``stateless``: a stateless handler in miniature (every step restores the flow from JSON);
* ``engine``: racing requests through the engine, in threads and in spawned processes;
* ``servers``: real Redis and PostgreSQL servers on loopback;
* ``stores``: snapshots, a movable clock and store builders for the store tests;
* ``footprint``: what stored flows cost, in bytes, as each server counts them;
* ``fault_matrix``: the faults every emulator injects and the checks of one failed step;
* ``vendor_schemas``: every emulator reply checked against the vendor's response schema;
* ``cyberark`` and ``cyberark_strategies``: CyberArk test helpers and Hypothesis strategies;
* ``web``: a person at a browser, played with Flask's test client.

Plain modules, not conftest files: spawned worker processes and bench/ import them by name.
"""
