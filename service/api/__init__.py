"""Speaking HTTP: routes, request and response schemas, middleware, the page and error bodies.
The top of the import chain: api -> serving -> files."""
