"""mfa_fsm tests; a package so that helpers import the same way in pytest and in spawned processes."""
