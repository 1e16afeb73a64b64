"""The provider-independent engine: flow base, snapshot, transport, errors."""
