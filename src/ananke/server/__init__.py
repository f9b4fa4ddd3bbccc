"""The Ananke inference service: FastAPI app factory and the wire protocol."""
