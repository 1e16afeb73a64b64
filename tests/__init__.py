"""mfa_fsm tests; a package, so helpers import alike in pytest and in spawned workers."""
