"""HTTP layer: thin routers (parse -> service -> response model), auth deps, problem+json."""
