"""The normative .gsc format (bitstream/SPEC.md): constants, container, layer parameters
and symbols, the entropy model and range coding, and splats <-> bytes.

Imports numpy and constriction only (no torch, no encoder): a decoder needs nothing else.
"""
