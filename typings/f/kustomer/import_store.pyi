# f/kustomer/import_store as a flow step imports it: the public names (__all__) of
# scripts/kustomer/import_store.py, so that mypy checks every use against the module.
from import_store import *
