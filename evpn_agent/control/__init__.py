"""The control edge: the root-only unix socket (``channel``), what a request answers
(``answers``: read-only views of the engine, ``views``) and their text (``show_text``)."""

from evpn_agent.control.channel import ControlError, Handler, request, serve

__all__ = ["ControlError", "Handler", "request", "serve"]
