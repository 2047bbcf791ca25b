"""faas_client: FaaSET's notebook workflow on a faas gateway.

Write a Python function, deploy it with a memory setting, call it like a
local function, run an experiment on it and read every call's figures
as a DataFrame. Standard library only; pandas is used when importable.

>>> from faas_client import Gateway
>>> gw = Gateway("http://127.0.0.1:8080", user="admin", password="s3cr3t")
>>> @gw.function(memory="128m")
... def hello(request, context):
...     return {"message": "Hello " + request["name"]}
>>> hello({"name": "Bob"})
{'message': 'Hello Bob'}
>>> df = gw.run_experiment(hello, {"payloads": [{"name": "Bob"}],
...                                "memorySettings": [128, 256], "runs": 20})
>>> df.groupby("memory")["function_ms"].median()  # doctest: +SKIP
"""

from .errors import FaasError
from .gateway import Function, Gateway

__all__ = ["FaasError", "Function", "Gateway"]
__version__ = "0.1.0"
