# f/kustomer/bulk_create_messages as a flow step imports it: the public names (__all__) of
# scripts/kustomer/bulk_create_messages.py, so that mypy checks every use against the script.
from bulk_create_messages import *
