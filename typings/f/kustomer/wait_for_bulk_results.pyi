# f/kustomer/wait_for_bulk_results as a flow step imports it: the public names (__all__) of
# scripts/kustomer/wait_for_bulk_results.py, so that mypy checks every use against the script.
from wait_for_bulk_results import *
