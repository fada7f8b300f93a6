"""The global auditor: every invariant of the design, checked across contexts."""
