"""ATA over Ethernet on the wire, shared by the built-in target and the client.

- ``wire``: frame layouts (``struct.Struct``) and frozen records, ``decode_frame``.
- ``ata``: ATA opcodes, status bits, IDENTIFY DEVICE data.
- ``transport``: ``EthernetTransport``, the raw AoE socket of a target or a client
  (the socket itself, batching and ``recvmmsg``/``sendmmsg`` are in ``aoeprov.link``).
"""
