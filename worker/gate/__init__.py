"""The job gate: what a worker agrees to load and run. Allowed functions and callbacks (`gate`),
webhooks (`webhooks`), bounded decoding (`limits`, `results`), ids rq would not accept (`job_ids`),
and failing at once whatever must not run (`loading`)."""
