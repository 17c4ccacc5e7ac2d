"""ATA over Ethernet on the wire, shared by the built-in target and the client.

- ``wire``: frame layouts (``struct.Struct``) and frozen records, ``decode_frame``.
- ``ata``: ATA opcodes, status bits, IDENTIFY DEVICE data.
- ``transport``: raw AF_PACKET sockets (``EthernetTransport``) and an in-memory
  pair for tests (``MemoryTransport``).
"""
