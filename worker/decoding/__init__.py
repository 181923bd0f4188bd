"""The decoder child: a poison file costs one scan, never the worker. client.py is the
parent's side (:class:`Decoder`: start, time limits, size checks, crash handling),
child.py the child process and its table of operations, protocol.py the wire format both
speak, sandbox.py the child's environment allow-list and memory limit."""

from worker.decoding.client import Decoder, read_options

__all__ = ["Decoder", "read_options"]
