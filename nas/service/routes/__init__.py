"""The HTTP API's routers, one per resource (each route parses, calls one core function in
nas.core and returns what it returns, typed by a model of nas.service.schemas)."""

from nas.service.routes import catalog, exports, page, searches

ROUTERS = [searches.router, exports.router, catalog.router, page.router]
