"""hydra_client - talk to hydrad from Python.

    from hydra_client import Client
    c = Client("http://127.0.0.1:8080", token="...")   # or $HYDRA_URL, $HYDRA_TOKEN
    job = c.submit({"model": "smollm2", "preset": "hydra", "prompts": [...]}, name="capitals")
    job.follow()                      # progress until the job ends (or: await job.wait_async())
    res = job.results()               # pandas frames with flat columns
    res.summary.sort_values("total_effect_mean")
    res.effect_table(method="resample", stat="ci95")
    c.jobs()                          # your jobs as a frame: names, times, counts

Errors from the server raise HydraError with the server's message and the
field path it names. Component names may be given in TransformerLens's
spelling (hydra_client.names). Figures: hydra_client.plots.
"""
from .client import Client, HydraError, Job, JobTimeout
from .names import to_hydra
from .results import Results

__all__ = ["Client", "HydraError", "Job", "JobTimeout", "Results", "to_hydra"]
