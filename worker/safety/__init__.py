"""Crash safety: a lease on every running job (`leases`, `guard`), a worker that stops its own run when
cut off (`fencing`), recovery of dead workers' jobs (`recovery`, `crashes`, `intermediate`), horses
that die with their worker (`orphans`), shutdowns that lose nothing (`shutdown`), and riding out a
Redis outage (`reconnect`)."""
