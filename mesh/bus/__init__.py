"""The event bus: publish = append to a Redis stream (the outbox); subscribe =
a consumer group delivering batches to an async handler.

Handlers see :class:`Message` batches and never a transport type, so the
RocketMQ transport can take the place of Redis Streams without touching them.
"""

from mesh.bus.messages import BatchOutcome, Handler, Message, decode_envelope, encode_fields

__all__ = ["BatchOutcome", "Handler", "Message", "decode_envelope", "encode_fields"]
