"""Retries: the policy (`backoff`), what it decides on one failure (`policy`), the history it keeps
(`attempts`), the failure hook (`handler`), precise scheduling and promotion on the Redis clock
(`scheduler`, `promoter`, `rq_scheduler`), and the failed jobs it leaves (`failures`)."""
