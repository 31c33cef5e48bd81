"""Round-trip shortcuts: bookkeeping strategies (see `worker.bookkeeping`) that send rq's writes in
fewer round trips, `lean` for the forking and simple workers, `prefork_bookkeeping` for the prefork
worker, both with the one-trip dequeue (`dequeue`). Optional: the worker core never imports them."""
