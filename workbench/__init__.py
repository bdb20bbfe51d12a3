"""The workbench: tools to run, try, check and ship the Kustomer scripts. Not deployed to Windmill."""
