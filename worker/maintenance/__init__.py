"""What a worker does besides jobs: registered periodic chores (`chores`: the outbox relay is one) and
rq's registry maintenance made safe against hostile entries (`registries`)."""
