"""The sandbox's HTTP surface, a module per endpoint family: each `routes(service)` returns its routes.

`guard.py` wraps every Kling endpoint the same way (counters, faults on demand, auth, the
envelope); `tasks.py` serves each task kind's create/get/list from one table.
"""
