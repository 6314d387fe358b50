"""The proxy's domain logic, free of Litestar: auth, routing, limits, budgets, upstream, usage."""
