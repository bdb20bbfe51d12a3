# f/kustomer/create_message as a flow step imports it: the public names (__all__) of
# scripts/kustomer/create_message.py, so that mypy checks every use against the script.
from create_message import *
