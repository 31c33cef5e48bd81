"""How a job runs: rq's own way (`runner`: a fork per job, or in the worker process) or one
long-lived work horse (`prefork`, with the horse's two sides in `horse`)."""
