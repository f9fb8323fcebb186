"""Pure ASGI middleware: the mesh in front of Starlette, FastAPI, MCP and A2A server apps."""

from __future__ import annotations

from cisora_mesh.asgi.middleware import CisoraMiddleware, MiddlewareStats
from cisora_mesh.asgi.problems import MEDIA_TYPE, ProblemType, problem_for, problem_response

__all__ = ["MEDIA_TYPE", "CisoraMiddleware", "MiddlewareStats", "ProblemType", "problem_for", "problem_response"]
