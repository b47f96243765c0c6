"""Domain apps of Quantum Fleet; each has the same skeleton (see docs/architecture.md)."""
