"""The `tako` command."""
