"""hydra_client - talk to hydrad from Python.

    from hydra_client import Client
    c = Client("http://127.0.0.1:8080", token="...")
    job = c.submit({"model": "smollm2", "preset": "hydra", "prompts": [...]})
    job.follow()                      # progress until the job ends
    res = job.results()               # pandas DataFrames
    res.summary, res.variants, res.clean, res.effect_table()

Errors from the server raise HydraError with the server's message and the
field path it names. Plots: hydra_client.plots.
"""
from .client import Client, HydraError, Job, Results  # noqa: F401

__all__ = ["Client", "HydraError", "Job", "Results"]
