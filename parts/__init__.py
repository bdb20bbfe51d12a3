"""The sources of the code the scripts and the flow's steps share (see workbench/shared_parts.py)."""
