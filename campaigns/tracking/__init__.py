"""Open and click tracking: signed tokens (:mod:`.tokens`), link rewriting at build time
(:mod:`.links`), the ``/t/o/<token>`` and ``/t/c/<token>`` endpoints (:mod:`.views`, served before
the rest of the middleware by :mod:`.middleware`), machine detection (:mod:`.machine`) and the Redis
buffer that stores their events in PostgreSQL in batches (:mod:`.buffer`)."""
