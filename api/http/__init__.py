"""The HTTP way in: the FastAPI app, its guard, routers, schemas and errors."""
