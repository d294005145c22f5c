"""Matrix steps: the key under which an expanded step's matrix values reach the builder."""

MATRIX_VALUES = "_matrix_values"  # set on an expansion's raw data; becomes Step.matrix
